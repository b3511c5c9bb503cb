//! Which engine runs a served champion's forward pass: onnxruntime on its
//! checksum-verified `model.onnx` when the library loads (`--engine auto`,
//! the default, or `onnxruntime`), else libtorch on its weights
//! (`Champion::logits01`). A champion onnxruntime cannot run is served with
//! libtorch, with one warning: serving never fails for the engine.

use std::io::Read as _;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, EngineChoice};
// A forward pass keeps no state between calls that a panic could leave half-written.
use crate::lock::lock;
use crate::model::card::ModelCard;
use crate::onnxruntime::{self, OrtModel, Runtime};
use crate::predict::Champion;

/// The ONNX file in `best/`, as `model.json` lists it.
const ONNX_FILE: &str = "model.onnx";

/// The engine `choice` asks for: the onnxruntime library, or `None` for
/// libtorch. `auto` falls back to libtorch with a warning when the library
/// cannot be loaded; `onnxruntime` then fails (exit 78 naming `engine`).
pub fn choose(choice: EngineChoice) -> Result<Option<&'static Runtime>, ConfigError> {
    match (choice, onnxruntime_if(choice)) {
        (_, None) => Ok(None),
        (_, Some(Ok(rt))) => {
            tracing::info!(library = %rt.path.display(), "onnxruntime loaded");
            Ok(Some(rt))
        }
        (EngineChoice::Onnxruntime, Some(Err(e))) => Err(ConfigError::Invalid {
            key: "engine".into(),
            what: format!("onnxruntime was asked for but {e}"),
        }),
        (_, Some(Err(e))) => {
            tracing::warn!("serving with libtorch: {e}");
            Ok(None)
        }
    }
}

fn onnxruntime_if(choice: EngineChoice) -> Option<Result<&'static Runtime, onnxruntime::OrtError>> {
    (choice != EngineChoice::Libtorch).then(onnxruntime::runtime)
}

/// How the engine is set up for each champion.
#[derive(Clone, Copy)]
pub struct EngineSetup {
    /// The loaded onnxruntime, or `None`: libtorch.
    pub runtime: Option<&'static Runtime>,
    /// onnxruntime's intra-op threads in each instance.
    pub threads: usize,
    /// onnxruntime sessions on the model, one per inference thread, so
    /// batches run side by side (libtorch runs one at a time).
    pub instances: usize,
    /// The most a model file may take in memory.
    pub memory_budget: u64,
}

enum Engine {
    /// One session per instance; inference thread `i` uses entry `i`.
    Onnxruntime(Vec<Mutex<OrtModel>>),
    Libtorch(Box<Mutex<Champion>>),
}

/// A champion with the engine that runs it, shared by the inference threads.
pub struct Served {
    pub card: ModelCard,
    engine: Engine,
}

impl Served {
    /// Sets up `champion` (loaded from `best`) for `setup`'s engine; on the
    /// swap thread, so the inference threads only install it.
    pub fn new(champion: Champion, best: &Path, setup: EngineSetup) -> Served {
        let card = champion.card.clone();
        let engine = match setup.runtime {
            None => Engine::Libtorch(Box::new(Mutex::new(champion))),
            Some(rt) => match ort_models(rt, &champion, best, setup) {
                Ok(m) => Engine::Onnxruntime(m),
                Err(e) => {
                    tracing::warn!(version = card.version, "serving with libtorch: {e}");
                    Engine::Libtorch(Box::new(Mutex::new(champion)))
                }
            },
        };
        Served { card, engine }
    }

    /// The model metadata's `platform`: which engine serves.
    pub fn platform(&self) -> &'static str {
        match self.engine {
            Engine::Onnxruntime(_) => "onnxruntime_onnx",
            Engine::Libtorch(_) => "trainerd_libtorch",
        }
    }

    /// Logits, row-major `[n, classes]`, of `n` images of values in [0, 1],
    /// computed by instance `lane` (any number: taken modulo the instances);
    /// `None` if the forward pass fails (the message is logged).
    pub fn logits01(&self, lane: usize, pixels: &[f32], n: usize) -> Option<Vec<f32>> {
        match &self.engine {
            Engine::Onnxruntime(models) => lock(&models[lane % models.len()])
                .logits01(pixels, n)
                .map_err(|e| tracing::error!("{e}"))
                .ok(),
            Engine::Libtorch(champion) => lock(champion).logits01(pixels, n),
        }
    }
}

/// `setup.instances` sessions on the champion's verified `model.onnx`.
fn ort_models(
    rt: &Runtime,
    champion: &Champion,
    best: &Path,
    setup: EngineSetup,
) -> Result<Vec<Mutex<OrtModel>>, String> {
    let path = best.join(ONNX_FILE);
    let bytes = verified_bytes(&path, &champion.card.files, setup.memory_budget)?;
    (0..setup.instances.max(1))
        .map(|_| {
            OrtModel::new(rt, &bytes, &path, champion.card.input_shape, setup.threads)
                .map(Mutex::new)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `path`'s bytes, read once and checked against the size and SHA-256
/// `files` (model.json's list) gives it; onnxruntime gets these same bytes.
fn verified_bytes(
    path: &Path,
    files: &[crate::model::card::FileEntry],
    budget: u64,
) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let want = files
        .iter()
        .find(|f| f.path == ONNX_FILE)
        .ok_or_else(|| format!("model.json lists no {ONNX_FILE} (an older champion)"))?;
    if want.bytes > budget {
        return Err(format!(
            "{shown} is {} bytes, more than the memory budget",
            want.bytes
        ));
    }
    let mut bytes = Vec::with_capacity(want.bytes as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(want.bytes + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() as u64 != want.bytes {
        return Err(format!(
            "{shown} is not the {} bytes model.json says (it changed after the champion was checked)",
            want.bytes
        ));
    }
    if hex::encode(Sha256::digest(&bytes)) != want.sha256 {
        return Err(format!(
            "{shown}: SHA-256 differs from model.json's (it changed after the champion was checked)"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card::FileEntry;

    fn entry(bytes: &[u8]) -> FileEntry {
        FileEntry {
            path: ONNX_FILE.into(),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        }
    }

    #[test]
    fn only_the_bytes_model_json_names_are_handed_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ONNX_FILE);
        std::fs::write(&path, b"onnx graph").unwrap();
        let good = [entry(b"onnx graph")];
        assert_eq!(
            verified_bytes(&path, &good, 1 << 20).unwrap(),
            b"onnx graph"
        );
        let err = verified_bytes(&path, &[entry(b"onnx grapH")], 1 << 20).unwrap_err();
        assert!(err.contains("SHA-256"), "{err}");
        let err = verified_bytes(&path, &[entry(b"onnx")], 1 << 20).unwrap_err();
        assert!(err.contains("4 bytes"), "{err}");
        let err = verified_bytes(&path, &good, 4).unwrap_err();
        assert!(err.contains("memory budget"), "{err}");
        let err = verified_bytes(&path, &[], 1 << 20).unwrap_err();
        assert!(err.contains("lists no model.onnx"), "{err}");
    }
}
