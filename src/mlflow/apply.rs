//! Carrying out one queued operation against the server, idempotently: a
//! run is looked up by its `trainerd.key` tag before one is created, a model
//! version by its run before one is created, so an operation sent again
//! after a crash (sent, not yet recorded) changes nothing twice. Metric
//! points carry the event's time, so a point sent twice is the same point
//! (MLflow keeps one).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::client::{CallError, Client};
use super::ops::{run_key, Op, Point, KEY_TAG, VERSION_TAG};

/// The experiment every run goes to.
pub const EXPERIMENT: &str = "trainerd";
/// The alias that follows the champion.
pub const ALIAS: &str = "champion";
/// Where a promoted champion's files go among its run's artifacts.
const ARTIFACT_DIR: &str = "champion";
/// MLflow's limits per `runs/log-batch` call.
const BATCH_PARAMS: usize = 100;
const BATCH_METRICS: usize = 1000;

/// A run on the server.
#[derive(Debug, Clone)]
struct RunRef {
    id: String,
    artifact_uri: String,
}

/// The sink's side of the server: the client and what it learnt.
pub struct Applier {
    pub client: Client,
    state_dir: PathBuf,
    experiment: Option<String>,
    runs: HashMap<String, RunRef>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn tag_list(tags: &BTreeMap<String, String>) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

impl Applier {
    pub fn new(client: Client, state_dir: PathBuf) -> Applier {
        Applier {
            client,
            state_dir,
            experiment: None,
            runs: HashMap::new(),
        }
    }

    /// Carries out `op`; `Ok` with a short note of what it did.
    pub fn apply(&mut self, op: &Op) -> Result<String, CallError> {
        match op {
            Op::StartRun {
                study,
                trial,
                time_ms,
                tags,
                params,
            } => {
                let run = self.run(study, *trial, *time_ms, tags)?;
                let params: Vec<Value> = params
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                for chunk in params.chunks(BATCH_PARAMS) {
                    self.client.post(
                        "runs/log-batch",
                        &json!({"run_id": run.id, "params": chunk}),
                    )?;
                }
                Ok(format!("run {}", run.id))
            }
            Op::EndRun {
                study,
                trial,
                time_ms,
                status,
                tags,
                metrics,
            } => self.end_run(study, *trial, *time_ms, status, tags, metrics),
            Op::Register {
                study,
                trial,
                time_ms,
            } => self.register(study, *trial, *time_ms),
            Op::Alias { study, trial } => {
                let run = self.run(study, *trial, 0, &BTreeMap::new())?;
                match self.version_of(&run)? {
                    Some(v) => self.set_alias(&v).map(|()| format!("alias {ALIAS} -> {v}")),
                    None => Err(CallError::Refused(
                        404,
                        "RESOURCE_DOES_NOT_EXIST".into(),
                        format!("no model version of run {} to move {ALIAS} to", run.id),
                    )),
                }
            }
        }
    }

    fn experiment(&mut self) -> Result<String, CallError> {
        if let Some(id) = &self.experiment {
            return Ok(id.clone());
        }
        let q = [("experiment_name", EXPERIMENT)];
        let id = match self.client.get("experiments/get-by-name", &q) {
            Ok(v) => str_at(&v, &["experiment", "experiment_id"]).map(str::to_string),
            Err(e) if e.is("RESOURCE_DOES_NOT_EXIST") => {
                match self
                    .client
                    .post("experiments/create", &json!({"name": EXPERIMENT}))
                {
                    Ok(v) => str_at(&v, &["experiment_id"]).map(str::to_string),
                    // Created by someone else in between.
                    Err(e) if e.is("RESOURCE_ALREADY_EXISTS") => {
                        let v = self.client.get("experiments/get-by-name", &q)?;
                        str_at(&v, &["experiment", "experiment_id"]).map(str::to_string)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let id = id.ok_or_else(|| CallError::Retry("experiment answer without an id".into()))?;
        self.experiment = Some(id.clone());
        Ok(id)
    }

    /// The trial's run: remembered, found by its key tag, or created.
    fn run(
        &mut self,
        study: &str,
        trial: u32,
        time_ms: i64,
        tags: &BTreeMap<String, String>,
    ) -> Result<RunRef, CallError> {
        let key = run_key(study, trial);
        if let Some(r) = self.runs.get(&key) {
            return Ok(r.clone());
        }
        let exp = self.experiment()?;
        let found = self.client.post(
            "runs/search",
            &json!({"experiment_ids": [exp], "max_results": 1,
                    "filter": format!("tags.`{KEY_TAG}` = '{}'", key.replace('\'', "\\'"))}),
        )?;
        let info = match found.get("runs").and_then(|r| r.get(0)) {
            Some(run) => run.get("info").cloned().unwrap_or_default(),
            None => {
                let mut tags = tags.clone();
                tags.insert(KEY_TAG.into(), key.clone());
                let short: String = study.chars().take(12).collect();
                let made = self.client.post(
                    "runs/create",
                    &json!({"experiment_id": exp, "run_name": format!("{short}-t{trial}"),
                            "start_time": time_ms, "tags": tag_list(&tags)}),
                )?;
                made.get("run")
                    .and_then(|r| r.get("info"))
                    .cloned()
                    .unwrap_or_default()
            }
        };
        let run = RunRef {
            id: str_at(&info, &["run_id"])
                .ok_or_else(|| CallError::Retry("run answer without a run_id".into()))?
                .to_string(),
            artifact_uri: str_at(&info, &["artifact_uri"]).unwrap_or("").to_string(),
        };
        self.runs.insert(key, run.clone());
        Ok(run)
    }

    fn end_run(
        &mut self,
        study: &str,
        trial: u32,
        time_ms: i64,
        status: &str,
        tags: &BTreeMap<String, String>,
        metrics: &[Point],
    ) -> Result<String, CallError> {
        let run = self.run(study, trial, time_ms, &BTreeMap::new())?;
        let points: Vec<Value> = metrics
            .iter()
            .filter(|p| p.value.is_finite())
            .map(|p| json!({"key": p.key, "value": p.value, "step": p.step, "timestamp": time_ms}))
            .collect();
        let first = json!({"run_id": run.id, "tags": tag_list(tags)});
        self.client.post("runs/log-batch", &first)?;
        for chunk in points.chunks(BATCH_METRICS) {
            self.client.post(
                "runs/log-batch",
                &json!({"run_id": run.id, "metrics": chunk}),
            )?;
        }
        self.client.post(
            "runs/update",
            &json!({"run_id": run.id, "status": status, "end_time": time_ms}),
        )?;
        Ok(format!(
            "run {} {status} with {} points",
            run.id,
            points.len()
        ))
    }

    /// A promotion: artifacts, the registered model, its version, the alias.
    fn register(&mut self, study: &str, trial: u32, time_ms: i64) -> Result<String, CallError> {
        let run = self.run(study, trial, time_ms, &BTreeMap::new())?;
        let model = self.client.model().to_string();
        match self
            .client
            .post("registered-models/create", &json!({"name": model}))
        {
            Ok(_) => {}
            Err(e) if e.is("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(e),
        }
        let version = match self.version_of(&run)? {
            Some(v) => v,
            None => {
                let (uploaded, kept) = self.upload_champion(study, trial, &run)?;
                let mut tags = BTreeMap::from([(KEY_TAG.to_string(), run_key(study, trial))]);
                if let Some(n) = kept {
                    tags.insert(VERSION_TAG.into(), n.to_string());
                }
                let made = self.client.post(
                    "model-versions/create",
                    &json!({"name": model, "run_id": run.id,
                            "source": format!("{}/{ARTIFACT_DIR}", run.artifact_uri),
                            "description": format!("trainerd trial {trial} of study {study} ({uploaded} files)"),
                            "tags": tag_list(&tags)}),
                )?;
                str_at(&made, &["model_version", "version"])
                    .ok_or_else(|| {
                        CallError::Retry("model version answer without a version".into())
                    })?
                    .to_string()
            }
        };
        self.set_alias(&version)?;
        Ok(format!("{model} version {version}, alias {ALIAS}"))
    }

    /// The model version registered from `run`, if any.
    fn version_of(&self, run: &RunRef) -> Result<Option<String>, CallError> {
        let filter = format!(
            "name = '{}' and run_id = '{}'",
            self.client.model().replace('\'', "\\'"),
            run.id
        );
        let found = self
            .client
            .get("model-versions/search", &[("filter", filter.as_str())])?;
        Ok(found
            .get("model_versions")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .filter_map(|v| str_at(v, &["version"]))
                    .max_by_key(|v| v.parse::<u64>().unwrap_or(0))
            })
            .map(str::to_string))
    }

    fn set_alias(&self, version: &str) -> Result<(), CallError> {
        self.client
            .post(
                "registered-models/alias",
                &json!({"name": self.client.model(), "alias": ALIAS, "version": version}),
            )
            .map(|_| ())
    }

    /// Uploads the champion's verified files, from the version this promotion
    /// kept (else `best/` or `best.previous/`, see [`super::files`]); returns
    /// how many (0, with a warning, when none holds this trial any more) and
    /// the kept version's number N when they came from `versions/N/`.
    fn upload_champion(
        &mut self,
        study: &str,
        trial: u32,
        run: &RunRef,
    ) -> Result<(usize, Option<u64>), CallError> {
        let Some(champion) = super::files::champion_files(&self.state_dir, study, trial) else {
            return Ok((0, None));
        };
        let files = champion.files;
        let exp = self.experiment()?;
        let mut sent = 0;
        for (rel, path) in &files {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "champion file not uploaded to MLflow: {e}");
                    continue;
                }
            };
            self.client
                .put_artifact(&exp, &run.id, &format!("{ARTIFACT_DIR}/{rel}"), &bytes)?;
            sent += 1;
        }
        Ok((sent, champion.version))
    }
}
