//! Tests of the checkpoint format and directory, by topic: bit-exact round
//! trips and corruption (`format`), retention and the directory's upkeep
//! (`retention`), failed saves (`failures`), and real crashes at every point
//! of the commit protocol (`crashes`). The fixtures they share are here.

mod crashes;
mod failures;
mod format;
mod retention;

use super::*;
use serde_json::json;

fn bytes_of(t: &Tensor) -> Vec<u8> {
    let n = t.numel();
    let mut b = vec![0u8; n * t.kind().elt_size_in_bytes()];
    if n > 0 {
        t.copy_data_u8(&mut b, n);
    }
    b
}

fn assert_same(saved: &[(String, Tensor)], loaded: &[(String, Tensor)]) {
    assert_eq!(saved.len(), loaded.len());
    for ((na, ta), (nb, tb)) in saved.iter().zip(loaded) {
        assert_eq!(na, nb, "order of names");
        assert_eq!(ta.kind(), tb.kind(), "kind of {na}");
        assert_eq!(ta.size(), tb.size(), "shape of {na}");
        assert_eq!(bytes_of(ta), bytes_of(tb), "bytes of {na}");
    }
}

/// Tensors whose values depend on `step`, so a load can be checked against
/// the step it claims.
fn sample(step: u64, n: usize) -> Vec<(String, Tensor)> {
    let w: Vec<f32> = (0..n)
        .map(|i| (i as f32 * 0.001 + step as f32).sin())
        .collect();
    vec![
        ("model/w".to_string(), Tensor::from_slice(&w)),
        (
            "optim/step".to_string(),
            Tensor::from_slice(&[step as i64]).reshape([]),
        ),
    ]
}

fn meta(step: u64) -> serde_json::Value {
    json!({"trial": 3, "step": step, "history": [0.5, 0.25]})
}

fn ckpt_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn steps_on_disk(d: &CheckpointDir) -> Vec<u64> {
    d.list().unwrap().into_iter().map(|(s, _)| s).collect()
}

/// xorshift64*, for reproducible random offsets without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ckpt_files(dir)
        .into_iter()
        .map(|n| (n.clone(), fs::read(dir.join(&n)).unwrap()))
        .collect()
}
