#!/usr/bin/env python3
"""Offline check of a Katib Experiment (kubeflow.org/v1beta1) for trainerd.

Katib's Experiment is a CRD, so no bundled Kubernetes schema covers it. This
checks what Katib's admission webhook and controller would reject, plus the
contract with `trainerd trial`:

- the known fields only, at every level we use (a typo is an error);
- objective, algorithm, counts, metrics collector and parameters are valid;
- every ${trialParameters.X} in the trial spec is declared, every declared one
  is used, and each references a search parameter;
- the primary container exists and runs `trainerd trial` with an explicit
  command that passes every flag a trial needs;
- the trial spec (a batch/v1 Job) validates against the Kubernetes schema.

Usage: katib_experiment.py [--kubernetes-version V]... FILE...
Needs PyYAML and kubernetes-validate (scripts/lint-deploy.sh installs both).
Exit 0 when every file passes, 1 otherwise.
"""

import argparse
import re
import sys

import yaml
from kubernetes_validate import utils as kv

EXPERIMENT_KEYS = {"apiVersion", "kind", "metadata", "spec"}
SPEC_KEYS = {
    "objective", "algorithm", "earlyStopping", "parallelTrialCount",
    "maxTrialCount", "maxFailedTrialCount", "metricsCollectorSpec",
    "parameters", "trialTemplate", "resumePolicy", "nasConfig",
}
OBJECTIVE_KEYS = {
    "type", "goal", "objectiveMetricName", "additionalMetricNames",
    "metricStrategies",
}
ALGORITHMS = {
    "random", "grid", "hyperband", "bayesianoptimization", "tpe",
    "multivariate-tpe", "cmaes", "sobol", "enas", "darts", "pbt",
}
COLLECTOR_KINDS = {
    "StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None",
}
PARAMETER_TYPES = {"int", "double", "categorical", "discrete"}
TRIAL_TEMPLATE_KEYS = {
    "retain", "primaryPodLabels", "primaryContainerName", "successCondition",
    "failureCondition", "trialParameters", "trialSpec", "configMap",
}
# The flags `trainerd trial` needs for one fully specified trial.
TRIAL_FLAGS = [
    "--arch", "--lr", "--batch-size", "--epochs", "--optimizer",
    "--data-dir", "--state-dir",
]
PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")


class Problems:
    def __init__(self, path):
        self.path = path
        self.items = []

    def add(self, where, what):
        self.items.append(f"{self.path}: {where}: {what}")

    def unknown_keys(self, where, value, allowed):
        if not isinstance(value, dict):
            self.add(where, f"must be a mapping, found {type(value).__name__}")
            return False
        for key in sorted(set(value) - allowed):
            self.add(where, f"unknown field {key!r} (known: {', '.join(sorted(allowed))})")
        return True


def placeholders(node):
    """Every ${trialParameters.X} name used anywhere below node."""
    found = set()
    if isinstance(node, dict):
        for value in node.values():
            found |= placeholders(value)
    elif isinstance(node, list):
        for value in node:
            found |= placeholders(value)
    elif isinstance(node, str):
        found |= set(PLACEHOLDER.findall(node))
    return found


def check_objective(p, objective):
    if not p.unknown_keys("spec.objective", objective, OBJECTIVE_KEYS):
        return
    if objective.get("type") not in ("maximize", "minimize"):
        p.add("spec.objective.type", "must be maximize or minimize")
    name = objective.get("objectiveMetricName")
    if not isinstance(name, str) or not name:
        p.add("spec.objective.objectiveMetricName", "required")
    goal = objective.get("goal")
    if goal is not None and not isinstance(goal, (int, float)):
        p.add("spec.objective.goal", "must be a number")
    extra = objective.get("additionalMetricNames", [])
    if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
        p.add("spec.objective.additionalMetricNames", "must be a list of names")
    elif name in extra:
        p.add("spec.objective.additionalMetricNames", "must not repeat the objective metric")
    names = {name, *extra} if isinstance(extra, list) else {name}
    for i, strategy in enumerate(objective.get("metricStrategies", [])):
        where = f"spec.objective.metricStrategies[{i}]"
        if not p.unknown_keys(where, strategy, {"name", "value"}):
            continue
        if strategy.get("name") not in names:
            p.add(where, f"metric {strategy.get('name')!r} is not collected")
        if strategy.get("value") not in ("min", "max", "latest"):
            p.add(where, "value must be min, max or latest")


def check_collector(p, spec):
    collector_spec = spec.get("metricsCollectorSpec", {"collector": {"kind": "StdOut"}})
    if not p.unknown_keys("spec.metricsCollectorSpec", collector_spec, {"source", "collector"}):
        return
    collector = collector_spec.get("collector", {})
    if not p.unknown_keys("spec.metricsCollectorSpec.collector", collector, {"kind", "customCollector"}):
        return
    kind = collector.get("kind")
    if kind not in COLLECTOR_KINDS:
        p.add("spec.metricsCollectorSpec.collector.kind", f"{kind!r} is not one of {sorted(COLLECTOR_KINDS)}")
    source = collector_spec.get("source", {})
    if not p.unknown_keys("spec.metricsCollectorSpec.source", source, {"fileSystemPath", "filter", "httpGet"}):
        return
    fs_path = source.get("fileSystemPath")
    if kind == "File":
        if not isinstance(fs_path, dict):
            p.add("spec.metricsCollectorSpec.source.fileSystemPath", "required by the File collector")
            return
        p.unknown_keys("spec.metricsCollectorSpec.source.fileSystemPath", fs_path, {"path", "kind", "format"})
        if not str(fs_path.get("path", "")).startswith("/"):
            p.add("spec.metricsCollectorSpec.source.fileSystemPath.path", "must be an absolute path")
        if fs_path.get("kind") != "File":
            p.add("spec.metricsCollectorSpec.source.fileSystemPath.kind", "must be File")
        if fs_path.get("format", "TEXT") not in ("TEXT", "JSON"):
            p.add("spec.metricsCollectorSpec.source.fileSystemPath.format", "must be TEXT or JSON")
    elif fs_path is not None and kind == "StdOut":
        p.add("spec.metricsCollectorSpec.source.fileSystemPath", "the StdOut collector takes no path")
    filt = source.get("filter")
    if filt is not None:
        p.unknown_keys("spec.metricsCollectorSpec.source.filter", filt, {"metricsFormat"})
        for i, fmt in enumerate(filt.get("metricsFormat", [])):
            try:
                compiled = re.compile(fmt)
            except re.error as err:
                p.add(f"spec.metricsCollectorSpec.source.filter.metricsFormat[{i}]", f"bad regex: {err}")
                continue
            if compiled.groups < 2:
                p.add(f"spec.metricsCollectorSpec.source.filter.metricsFormat[{i}]",
                      "needs two groups: name and value")


def check_parameters(p, parameters):
    names = set()
    if not isinstance(parameters, list) or not parameters:
        p.add("spec.parameters", "needs at least one parameter")
        return names
    for i, param in enumerate(parameters):
        where = f"spec.parameters[{i}]"
        if not p.unknown_keys(where, param, {"name", "parameterType", "feasibleSpace"}):
            continue
        name = param.get("name")
        if not isinstance(name, str) or not name:
            p.add(where, "name required")
        elif name in names:
            p.add(where, f"duplicate parameter {name!r}")
        names.add(name)
        ptype = param.get("parameterType")
        if ptype not in PARAMETER_TYPES:
            p.add(where, f"parameterType {ptype!r} is not one of {sorted(PARAMETER_TYPES)}")
        space = param.get("feasibleSpace")
        if not p.unknown_keys(f"{where}.feasibleSpace", space, {"min", "max", "list", "step", "distribution"}):
            continue
        # Katib's API types every bound and list item as a string.
        for key in ("min", "max", "step"):
            if key in space and not isinstance(space[key], str):
                p.add(f"{where}.feasibleSpace.{key}", "must be a quoted string, e.g. \"0.01\"")
        if ptype in ("int", "double"):
            if "min" not in space or "max" not in space:
                p.add(f"{where}.feasibleSpace", f"{ptype} needs min and max")
            else:
                try:
                    if float(space["min"]) >= float(space["max"]):
                        p.add(f"{where}.feasibleSpace", "min must be below max")
                except ValueError:
                    p.add(f"{where}.feasibleSpace", "min and max must be numbers")
        if ptype in ("categorical", "discrete"):
            items = space.get("list")
            if not isinstance(items, list) or not items:
                p.add(f"{where}.feasibleSpace.list", f"{ptype} needs a non-empty list")
            elif not all(isinstance(item, str) for item in items):
                p.add(f"{where}.feasibleSpace.list", "every item must be a quoted string")
            elif len(set(items)) != len(items):
                p.add(f"{where}.feasibleSpace.list", "items must be unique")
    return names


def check_trial_template(p, template, parameter_names, k8s_versions):
    if not p.unknown_keys("spec.trialTemplate", template, TRIAL_TEMPLATE_KEYS):
        return
    declared = {}
    for i, tp in enumerate(template.get("trialParameters", [])):
        where = f"spec.trialTemplate.trialParameters[{i}]"
        if not p.unknown_keys(where, tp, {"name", "description", "reference"}):
            continue
        declared[tp.get("name")] = tp
        ref = tp.get("reference", tp.get("name"))
        if ref not in parameter_names and not str(ref).startswith("${trialSpec."):
            p.add(where, f"reference {ref!r} is not a search parameter")
    trial_spec = template.get("trialSpec")
    if not isinstance(trial_spec, dict):
        p.add("spec.trialTemplate.trialSpec", "required (this check does not follow configMap)")
        return
    used = placeholders(trial_spec)
    for name in sorted(used - set(declared)):
        p.add("spec.trialTemplate.trialSpec", f"${{trialParameters.{name}}} is not declared in trialParameters")
    for name in sorted(set(declared) - used):
        p.add("spec.trialTemplate.trialParameters", f"{name!r} is never used in trialSpec")
    for name in sorted(parameter_names - {tp.get("reference", n) for n, tp in declared.items()}):
        p.add("spec.parameters", f"{name!r} is searched but no trial parameter references it")

    if trial_spec.get("apiVersion") != "batch/v1" or trial_spec.get("kind") != "Job":
        p.add("spec.trialTemplate.trialSpec", "this check expects a batch/v1 Job")
        return
    for version in k8s_versions:
        try:
            kv.validate(trial_spec, version, strict=True)
        except kv.ValidationError as err:
            where = ".".join(str(x) for x in err.path)
            p.add(f"spec.trialTemplate.trialSpec.{where}", f"Kubernetes {version} schema: {err.message}")
        except (kv.SchemaNotFoundError, kv.VersionNotSupportedError) as err:
            p.add("spec.trialTemplate.trialSpec", err.message)

    pod = trial_spec.get("spec", {}).get("template", {}).get("spec", {})
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        p.add("spec.trialTemplate.trialSpec", "the pod's restartPolicy must be Never or OnFailure")
    primary = template.get("primaryContainerName")
    containers = {c.get("name"): c for c in pod.get("containers", []) if isinstance(c, dict)}
    if primary not in containers:
        p.add("spec.trialTemplate.primaryContainerName", f"no container named {primary!r} in the trial pod")
        return
    command = containers[primary].get("command")
    where = f"spec.trialTemplate.trialSpec container {primary!r}"
    if not isinstance(command, list) or command[:2] != ["trainerd", "trial"]:
        p.add(where, "needs an explicit command starting with trainerd, trial "
                     "(the StdOut collector wraps the command; it cannot see an image entrypoint)")
        return
    args = command[2:] + list(containers[primary].get("args", []))
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    for flag in TRIAL_FLAGS:
        if flag not in given:
            p.add(where, f"command lacks {flag}")


def check_file(path, k8s_versions):
    p = Problems(path)
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as err:
        p.add("file", f"cannot read YAML: {err}")
        return p.items
    if len(docs) != 1:
        p.add("file", f"expected one document, found {len(docs)}")
        return p.items
    exp = docs[0]
    if not p.unknown_keys("(top)", exp, EXPERIMENT_KEYS):
        return p.items
    if exp.get("apiVersion") != "kubeflow.org/v1beta1":
        p.add("apiVersion", f"{exp.get('apiVersion')!r}, expected kubeflow.org/v1beta1")
    if exp.get("kind") != "Experiment":
        p.add("kind", f"{exp.get('kind')!r}, expected Experiment")
    name = (exp.get("metadata") or {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", str(name)) or len(str(name)) > 63:
        p.add("metadata.name", f"{name!r} is not a DNS-1123 label")
    spec = exp.get("spec")
    if not p.unknown_keys("spec", spec, SPEC_KEYS):
        return p.items
    check_objective(p, spec.get("objective"))
    algorithm = spec.get("algorithm")
    if p.unknown_keys("spec.algorithm", algorithm, {"algorithmName", "algorithmSettings"}):
        if algorithm.get("algorithmName") not in ALGORITHMS:
            p.add("spec.algorithm.algorithmName", f"{algorithm.get('algorithmName')!r} is not a Katib algorithm")
    counts = {}
    for key in ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            p.add(f"spec.{key}", "must be a non-negative integer")
        counts[key] = value
    if isinstance(counts["parallelTrialCount"], int) and isinstance(counts["maxTrialCount"], int):
        if counts["parallelTrialCount"] > counts["maxTrialCount"]:
            p.add("spec.parallelTrialCount", "exceeds maxTrialCount")
    check_collector(p, spec)
    names = check_parameters(p, spec.get("parameters"))
    check_trial_template(p, spec.get("trialTemplate"), names, k8s_versions)
    return p.items


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", action="append", dest="versions",
                        help="validate the trial Job against this Kubernetes version (repeatable)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    versions = args.versions or [kv.latest_version()]
    failed = False
    for path in args.files:
        problems = check_file(path, versions)
        for line in problems:
            print(f"ERROR {line}")
        if problems:
            failed = True
        else:
            print(f"INFO {path} passed (Katib Experiment; trial Job against Kubernetes {', '.join(versions)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
