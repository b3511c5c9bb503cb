//! onnxruntime for the served forward pass: finds its shared library (the
//! one the `onnxruntime` PyPI wheel ships, dlopen-ed, never linked, nothing
//! downloaded), loads it once per process, and builds sessions from a
//! champion's verified `model.onnx` bytes.
//!
//! The library is looked for in this order: `TRAINERD_ONNXRUNTIME` (a file
//! path) when set; `libonnxruntime.so*` in `$ORIGIN/../lib/trainerd` (the
//! Docker image); the path scripts/setup.sh recorded at build time.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::onnx_graph::{INPUT_NAME, OUTPUT_NAME};

/// The variable naming the library file, ahead of every other place.
pub const ENV_VAR: &str = "TRAINERD_ONNXRUNTIME";
/// The library scripts/setup.sh found in the venv (development builds).
const BUILT: Option<&str> = option_env!("TRAINERD_ORT_LIB");
/// Where the Docker image installs libraries, relative to the binary.
const STAGED: &str = "../lib/trainerd";
/// File names the library may have (`libonnxruntime.so.1.31.1` in the wheel).
const PREFIX: &str = "libonnxruntime.so";

#[derive(Debug, Clone, thiserror::Error)]
pub enum OrtError {
    #[error(
        "no onnxruntime library found (looked in {tried}); set {ENV_VAR} to libonnxruntime.so's path"
    )]
    NotFound { tried: String },
    #[error("{path}: cannot load onnxruntime: {what}")]
    Load { path: PathBuf, what: String },
    #[error("onnxruntime cannot run {path}: {what}")]
    Session { path: PathBuf, what: String },
    #[error("the onnxruntime forward pass failed: {0}")]
    Run(String),
}

/// The library file to load: `env` (the variable's value) when set, else the
/// first `libonnxruntime.so*` in `exe_dir/../lib/trainerd`, else `built`
/// when that file exists.
pub fn locate(
    env: Option<OsString>,
    exe_dir: Option<&Path>,
    built: Option<&Path>,
) -> Result<PathBuf, OrtError> {
    if let Some(path) = env.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let mut tried = Vec::new();
    if let Some(dir) = exe_dir.map(|d| d.join(STAGED)) {
        if let Some(found) = staged_library(&dir) {
            return Ok(found);
        }
        tried.push(format!("{}/{PREFIX}*", dir.display()));
    }
    if let Some(path) = built {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        tried.push(path.display().to_string());
    }
    tried.push(format!("${ENV_VAR} (unset)"));
    Err(OrtError::NotFound {
        tried: tried.join(", "),
    })
}

/// The first (by name) `libonnxruntime.so*` file in `dir`.
fn staged_library(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The loaded library and its environment (one per process).
pub struct Runtime {
    pub path: PathBuf,
    env: Environment,
}

static RUNTIME: OnceLock<Result<Runtime, OrtError>> = OnceLock::new();

/// Loads the library on first use; later calls give the same answer.
pub fn runtime() -> Result<&'static Runtime, OrtError> {
    RUNTIME.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Runtime, OrtError> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let path = locate(
        std::env::var_os(ENV_VAR),
        exe_dir.as_deref(),
        BUILT.map(Path::new),
    )?;
    let path = std::path::absolute(&path).unwrap_or(path);
    let err = |what: String| OrtError::Load {
        path: path.clone(),
        what: what.replace('\n', " "),
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    // ort expects a well-formed library; one that is not must not take the server down.
    let env = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ort::init_from(&path)
            .map_err(|e| match e {
                ort::LoadDynamicError::Dlopen { error, .. } => {
                    format!("not a shared library that can be loaded ({error})")
                }
                other => other.to_string(),
            })?
            .with_name("trainerd")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    }))
    .map_err(|_| err("the file does not behave as onnxruntime".into()))?
    .map_err(err)?;
    Ok(Runtime { path, env })
}

/// A session on one champion's `model.onnx`.
pub struct OrtModel {
    session: Session,
    input: [i64; 3],
}

impl OrtModel {
    /// A session on `bytes` (the model file `path`, already verified), taking
    /// `[N, ...input]` pixels: `threads` intra-op threads, inter-op 1, every
    /// graph optimisation on.
    pub fn new(
        rt: &Runtime,
        bytes: &[u8],
        path: &Path,
        input: [i64; 3],
        threads: usize,
    ) -> Result<OrtModel, OrtError> {
        let err = |what: String| OrtError::Session {
            path: path.to_path_buf(),
            what: what.replace('\n', " "),
        };
        let session = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Session::builder(&rt.env)
                .map_err(|e| e.to_string())?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| e.to_string())?
                .with_intra_threads(threads.max(1))
                .map_err(|e| e.to_string())?
                .with_inter_threads(1)
                .map_err(|e| e.to_string())?
                .commit_from_memory(bytes)
                .map_err(|e| e.to_string())
        }))
        .map_err(|_| err("onnxruntime failed while loading it".into()))?
        .map_err(err)?;
        let names = |o: &[ort::value::Outlet]| o.iter().any(|x| x.name() == INPUT_NAME);
        if !names(session.inputs()) || !session.outputs().iter().any(|x| x.name() == OUTPUT_NAME) {
            return Err(err(format!(
                "the graph does not take {INPUT_NAME:?} and give {OUTPUT_NAME:?}"
            )));
        }
        Ok(OrtModel { session, input })
    }

    /// Logits, row-major `[n, classes]`, of `n` images given as values in [0, 1].
    pub fn logits01(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>, OrtError> {
        let run = |e: ort::Error| OrtError::Run(e.to_string().replace('\n', " "));
        let [c, h, w] = self.input;
        let x = TensorRef::from_array_view(([n as i64, c, h, w], pixels)).map_err(run)?;
        let out = self
            .session
            .run(ort::inputs![INPUT_NAME => x])
            .map_err(run)?;
        let logits = out
            .get(OUTPUT_NAME)
            .ok_or_else(|| OrtError::Run(format!("no {OUTPUT_NAME:?} output")))?;
        let (_, data) = logits.try_extract_tensor::<f32>().map_err(run)?;
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn the_variable_comes_first_even_when_the_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        touch(&dir.path().join("lib/trainerd/libonnxruntime.so.1.31.1"));
        let built = dir.path().join("built.so");
        touch(&built);
        let got = locate(Some("/nowhere/libort.so".into()), Some(&bin), Some(&built)).unwrap();
        assert_eq!(got, Path::new("/nowhere/libort.so"));
    }

    #[test]
    fn next_the_library_beside_the_binary_then_the_built_path() {
        let dir = tempfile::tempdir().unwrap();
        // The binary's directory exists (`bin/..` resolves through it).
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let built = dir.path().join("venv/libonnxruntime.so.1.31.1");
        touch(&built);
        // Nothing staged yet: the path recorded at build time.
        assert_eq!(locate(None, Some(&bin), Some(&built)).unwrap(), built);
        // An empty variable counts as unset.
        assert_eq!(
            locate(Some("".into()), Some(&bin), Some(&built)).unwrap(),
            built
        );
        let staged = dir.path().join("lib/trainerd/libonnxruntime.so.1.31.1");
        touch(&dir.path().join("lib/trainerd/libtorch.so"));
        touch(&staged);
        let got = locate(None, Some(&bin), Some(&built)).unwrap();
        assert_eq!(
            std::fs::canonicalize(got).unwrap(),
            std::fs::canonicalize(&staged).unwrap()
        );
    }

    #[test]
    fn nothing_found_names_every_place_looked_in() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let built = dir.path().join("gone/libonnxruntime.so.1");
        let err = locate(None, Some(&bin), Some(&built))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lib/trainerd/libonnxruntime.so*"), "{err}");
        assert!(err.contains("gone/libonnxruntime.so.1"), "{err}");
        assert!(err.contains(ENV_VAR), "{err}");
    }
}
