"""Reads back what trainerd logged to an MLflow server with MLflow's own
client, and prints it as one JSON object for tests/mlflow.rs to judge:
every run of the `trainerd` experiment (status, tags, params, each metric's
history as [step, value] pairs, the files under its `champion/` artifacts),
every version of the registered model (with its tags), and the version
the alias `champion` points to (with its tags, `trainerd.version` among them).

usage: check_mlflow.py TRACKING_URI MODEL_NAME
"""

import json
import sys

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def artifact_files(client, run_id, path):
    out = []
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.extend(artifact_files(client, run_id, f.path))
        else:
            out.append({"path": f.path, "size": f.file_size})
    return out


def main():
    uri, model = sys.argv[1], sys.argv[2]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("trainerd")
    runs = []
    if exp is not None:
        for r in client.search_runs([exp.experiment_id], max_results=1000):
            metrics = {
                key: sorted([m.step, m.value] for m in client.get_metric_history(r.info.run_id, key))
                for key in r.data.metrics
            }
            runs.append({
                "run_id": r.info.run_id,
                "name": r.info.run_name,
                "status": r.info.status,
                "tags": {k: v for k, v in r.data.tags.items() if k.startswith("trainerd.")},
                "params": r.data.params,
                "metrics": metrics,
                "artifacts": artifact_files(client, r.info.run_id, "champion"),
            })
    versions, champion = [], None
    try:
        for v in client.search_model_versions(f"name = '{model}'"):
            versions.append({"version": int(v.version), "run_id": v.run_id,
                             "source": v.source, "tags": v.tags})
        mv = client.get_model_version_by_alias(model, "champion")
        champion = {"version": int(mv.version), "run_id": mv.run_id, "tags": mv.tags}
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    versions.sort(key=lambda v: v["version"])
    print(json.dumps({"runs": runs, "versions": versions, "champion": champion}))


if __name__ == "__main__":
    main()
