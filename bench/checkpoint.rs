//! Checkpoint write/load time and size for a model of about 100k f32
//! parameters plus AdamW state (two moments: 2x the parameters).
//!
//! `cargo run --release --example checkpoint -- [DIR] [SAVES]`
//! (DIR defaults to a temp dir under $TMPDIR; pass a path on the volume you
//! care about, since fsync cost depends on the disk.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};
use trainerd::store::CheckpointDir;

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{name:>6}: median {:7.2} ms  mean {:7.2} ms  min {:7.2} ms  max {:7.2} ms  (n={})",
        ms(times[times.len() / 2]),
        mean,
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tmp = tempfile::tempdir()?;
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("ckpt"));
    let saves: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(30);

    // An MLP 784-128-10 (101,770 parameters) and its AdamW moments.
    tch::manual_seed(0);
    let shapes: [(&str, &[i64]); 4] = [
        ("fc1.weight", &[128, 784]),
        ("fc1.bias", &[128]),
        ("fc2.weight", &[10, 128]),
        ("fc2.bias", &[10]),
    ];
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut params = 0;
    for (name, shape) in shapes {
        let t = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        params += t.numel();
        tensors.push((format!("model/{name}"), t));
        for moment in ["m", "v"] {
            tensors.push((
                format!("optim/{moment}/{name}"),
                Tensor::randn(shape, (Kind::Float, Device::Cpu)),
            ));
        }
    }
    tensors.push(("optim/step".into(), Tensor::from_slice(&[0i64]).reshape([])));
    let meta = serde_json::json!({"trial": 0, "seed": 1, "spec": {"preset": "mlp"}});

    let mut ckpts = CheckpointDir::open(&dir, 3)?;
    let mut save_times = Vec::new();
    let mut last = None;
    for step in 1..=saves {
        let t0 = Instant::now();
        last = Some(ckpts.save(step, None, &meta, &tensors)?);
        save_times.push(t0.elapsed());
    }
    let mut load_times = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let c = ckpts.load_newest_valid()?.ok_or("no checkpoint")?;
        load_times.push(t0.elapsed());
        assert_eq!(c.tensors.len(), tensors.len());
    }
    let size = match &last {
        Some(p) => std::fs::metadata(p)?.len(),
        None => 0,
    };
    println!("dir: {}", dir.display());
    println!(
        "parameters: {params}, tensors in checkpoint: {} (params + 2 moments)",
        tensors.len()
    );
    println!(
        "file size: {size} bytes ({:.2} MiB); on disk: {} files",
        size as f64 / 1048576.0,
        ckpts.list()?.len()
    );
    summary("save", save_times);
    summary("load", load_times);
    Ok(())
}
