//! `trainerd export --format onnx|torchscript|repository|all --out DIR
//! [--trial N]`: writes the champion (or a trial's newest checkpoint) in the
//! chosen form, with its model card and a `model.json` listing every file's
//! SHA-256, and prints one line per file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{source, write_formats, ExportError};

/// Refuses an `--out` inside the state dir's champion directories: files
/// written there would not match the manifest in their `model.json`.
fn check_out(state_dir: &Path, out: &Path) -> Result<(), ExportError> {
    let resolve = |p: &Path| -> PathBuf {
        p.canonicalize()
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let out_abs = resolve(out);
    for name in ["best", "best.previous", "best.staging", "best.rollback"] {
        if out_abs.starts_with(resolve(&state_dir.join(name))) {
            return Err(ExportError::Usage {
                path: out.to_path_buf(),
                what: format!(
                    "is inside the state dir's {name}/, which promotion owns; pass another --out"
                ),
            });
        }
    }
    Ok(())
}

/// What `trainerd export` writes, and from where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub state_dir: PathBuf,
    pub format: super::Format,
    /// Directory to write into (not inside the state dir's best/).
    pub out: PathBuf,
    /// This trial's newest checkpoint instead of the champion.
    pub trial: Option<u32>,
    /// The study of `trial` (default: the newest that started it).
    pub study: Option<String>,
}

/// Runs `trainerd export`.
pub fn run(args: &ExportRequest) -> anyhow::Result<()> {
    check_out(&args.state_dir, &args.out)?;
    let src = match args.trial {
        Some(n) => source::trial(&args.state_dir, n, args.study.as_deref())?,
        None => source::champion(&args.state_dir)?,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| super::io_err(&args.out, e))?;
    let manifest = write_formats(&args.out, &src.card, &src.weights, args.format)?;
    let mut card = src.card;
    card.files = manifest.files.clone();
    let json = serde_json::to_vec_pretty(&card).map_err(|e| super::io_err(&args.out, e))?;
    super::manifest::write_file(&args.out, "model.json", &json)?;
    let mut out = std::io::stdout().lock();
    for f in &manifest.files {
        writeln!(
            out,
            "{}\t{}\t{}",
            f.sha256,
            f.bytes,
            args.out.join(&f.path).display()
        )?;
    }
    eprintln!(
        "exported trial {} ({}) from {} to {}",
        card.trial,
        card.preset,
        src.from.display(),
        args.out.display()
    );
    Ok(())
}
