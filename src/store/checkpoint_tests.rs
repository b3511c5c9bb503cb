//! Tests of the checkpoint format and directory: bit-exact round trips,
//! corruption, retention, failed saves, and real crashes at every point of
//! the commit protocol.

use super::*;
use crate::exit::ExitStatus;
use crate::store::checkpoint_file::{read_file, DIGEST_LEN};
use crate::store::fault::CHECKPOINT_POINTS;
use crate::store::testutil;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind};

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

#[test]
fn round_trip_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(&tmp.path().join("ckpt"), 3).unwrap();

    let f32_special = [
        f32::from_bits(0x7fc0_0001), // quiet NaN with a payload
        f32::from_bits(0xffc1_2345), // negative NaN with a payload
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::from_bits(1), // smallest subnormal
        1.5,
    ];
    let f64_special = [
        f64::from_bits(0x7ff8_0000_0000_0abc),
        f64::NEG_INFINITY,
        -0.0,
        1e-310,
    ];
    let half_bits: [u8; 6] = [0x01, 0x7e, 0x00, 0x7c, 0x00, 0x80]; // NaN payload, inf, -0
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = nn::batch_norm2d(vs.root() / "bn", 3, Default::default());
    let x = Tensor::from_slice(&(0..48).map(|i| i as f32 * 0.37 - 4.0).collect::<Vec<f32>>())
        .reshape([2, 3, 2, 4]);
    let _ = bn.forward_t(&x, true); // moves the running stats off their initial values
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        vars.iter().any(|(n, _)| n.contains("running_mean")),
        "bn buffers present: {vars:?}"
    );
    assert!(vars.iter().any(|(_, t)| t.requires_grad()));

    let mut tensors: Vec<(String, Tensor)> = vec![
        (
            "f32/special".into(),
            Tensor::from_slice(&f32_special).reshape([2, 4]),
        ),
        ("f64/special".into(), Tensor::from_slice(&f64_special)),
        (
            "i64".into(),
            Tensor::from_slice(&[i64::MIN, -1, 0, i64::MAX]),
        ),
        ("i32".into(), Tensor::from_slice(&[i32::MIN, 7, i32::MAX])),
        ("i16".into(), Tensor::from_slice(&[i16::MIN, i16::MAX])),
        ("i8".into(), Tensor::from_slice(&[i8::MIN, 0, i8::MAX])),
        ("u8".into(), Tensor::from_slice(&[0u8, 128, 255])),
        ("bool".into(), Tensor::from_slice(&[true, false, true])),
        (
            "f16".into(),
            Tensor::from_data_size(&half_bits, &[3], Kind::Half),
        ),
        (
            "bf16".into(),
            Tensor::from_data_size(&half_bits, &[3], Kind::BFloat16),
        ),
        (
            "empty/f32".into(),
            Tensor::zeros([0], (Kind::Float, Device::Cpu)),
        ),
        (
            "empty/i64 3x0".into(),
            Tensor::zeros([3, 0], (Kind::Int64, Device::Cpu)),
        ),
        ("scalar".into(), Tensor::from_slice(&[2.5f32]).reshape([])),
        (
            "bn/num_batches_tracked".into(),
            Tensor::from_slice(&[1i64]).reshape([]),
        ),
        (
            "transposed".into(),
            Tensor::arange(12, (Kind::Float, Device::Cpu))
                .reshape([3, 4])
                .transpose(0, 1),
        ),
    ];
    tensors.extend(vars);
    let m = json!({"format": 1, "spec": {"layers": [784, 128, 10]}, "seed": u64::MAX});
    let path = d.save(42, Some(0.875), &m, &tensors).unwrap();
    assert_eq!(path, d.path_for(42));
    assert_eq!(path.file_name().unwrap(), "ckpt-000000000042.tch");

    let back = d.load_newest_valid().unwrap().expect("a checkpoint");
    assert_eq!(back.step, 42);
    assert_eq!(back.score, Some(0.875));
    assert_eq!(back.meta, m);
    assert_eq!(back.path, path);
    assert_same(&tensors, &back.tensors);
    let again = read_file(&path).unwrap();
    assert_same(&tensors, &again.tensors);
}

#[test]
fn rejects_unsupported_kinds_and_duplicate_names() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    let complex = Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu));
    let err = d
        .save(1, None, &json!({}), &[("c".into(), complex)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Encode { step: 1, .. }), "{err:?}");
    let t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let err = d
        .save(
            1,
            None,
            &json!({}),
            &[("a".into(), t.shallow_clone()), ("a".into(), t)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    assert!(
        ckpt_files(tmp.path()).is_empty(),
        "nothing written: {:?}",
        ckpt_files(tmp.path())
    );
}

/// Rewrites a file's version field and fixes its checksum, as a file from
/// a newer trainerd would look.
#[test]
fn other_format_version_is_refused_and_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    d.save(1, None, &meta(1), &sample(1, 16)).unwrap();
    let path = d.save(2, None, &meta(2), &sample(2, 16)).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let n = bytes.len() - DIGEST_LEN;
    let digest = Sha256::digest(&bytes[..n]);
    bytes[n..].copy_from_slice(&digest);
    fs::write(&path, &bytes).unwrap();

    let err = read_file(&path).unwrap_err();
    assert!(err.to_string().contains("format version 2"), "{err}");
    assert_eq!(err.exit_code(), 74);
    let back = d.load_newest_valid().unwrap().unwrap();
    assert_eq!(back.step, 1);
    let q = tmp.path().join(QUARANTINE_DIR);
    assert_eq!(
        fs::read(q.join("ckpt-000000000002.tch")).unwrap(),
        bytes,
        "kept byte for byte"
    );
    let reason = fs::read_to_string(q.join("ckpt-000000000002.tch.reason")).unwrap();
    assert!(reason.contains("format version 2"), "{reason}");
}

#[test]
fn file_named_for_another_step_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    d.save(1, None, &meta(1), &sample(1, 8)).unwrap();
    let p2 = d.save(2, None, &meta(2), &sample(2, 8)).unwrap();
    fs::copy(&p2, d.path_for(9)).unwrap();
    assert_eq!(d.load_newest_valid().unwrap().unwrap().step, 2);
    let reason =
        fs::read_to_string(tmp.path().join("quarantine/ckpt-000000000009.tch.reason")).unwrap();
    assert!(reason.contains("step 2"), "{reason}");
}

/// 150 trials: flip a random bit pattern in a random byte (anywhere, or in
/// the first bytes where the framing lives), or truncate at a random
/// offset. Every one must be detected, the bad file quarantined byte for
/// byte, and the previous checkpoint loaded.
#[test]
fn corruption_is_always_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 1000).unwrap();
    let good = sample(1, 2000);
    d.save(1, Some(0.1), &meta(1), &good).unwrap();
    let mut rng = Rng(0x5EED_2024_0000_0003);
    let qdir = tmp.path().join(QUARANTINE_DIR);
    let trials = 150;
    for trial in 0..trials {
        let path = d.save(2, None, &meta(2), &sample(2, 2000)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let len = bytes.len();
        let what = match trial % 3 {
            0 => {
                let at = rng.below(len);
                bytes[at] ^= 1 + rng.below(255) as u8;
                format!("flip byte {at} of {len}")
            }
            1 => {
                let at = rng.below(256.min(len));
                bytes[at] ^= 1 + rng.below(255) as u8;
                format!("flip framing byte {at}")
            }
            _ => {
                let at = rng.below(len);
                bytes.truncate(at);
                format!("truncate at {at} of {len}")
            }
        };
        fs::write(&path, &bytes).unwrap();
        let back = d
            .load_newest_valid()
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: nothing loaded"));
        assert_eq!(back.step, 1, "{what}: corruption not detected");
        assert_same(&good, &back.tensors);
        assert!(!path.exists(), "{what}: bad file left in place");
        let moved = if trial == 0 {
            qdir.join("ckpt-000000000002.tch")
        } else {
            qdir.join(format!("ckpt-000000000002.tch.{trial}"))
        };
        assert_eq!(
            fs::read(&moved).unwrap(),
            bytes,
            "{what}: quarantined copy differs"
        );
    }
    let quarantined = fs::read_dir(&qdir).unwrap().count();
    assert_eq!(quarantined, 2 * trials, "each bad file and its reason kept");
}

#[test]
fn all_corrupt_gives_none_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    for step in 1..=3 {
        let p = d.save(step, None, &meta(step), &sample(step, 8)).unwrap();
        fs::write(&p, b"garbage").unwrap();
    }
    assert!(d.load_newest_valid().unwrap().is_none());
    assert_eq!(
        fs::read_dir(tmp.path().join(QUARANTINE_DIR))
            .unwrap()
            .count(),
        6
    );
    assert!(steps_on_disk(&d).is_empty());
}

#[test]
fn retention_keeps_last_k_plus_best_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    for step in 1..=10u64 {
        let score = match step {
            4 => Some(0.99),
            s if s % 2 == 0 => Some(0.1 * (s % 5) as f64),
            _ => None,
        };
        d.save(step, score, &meta(step), &sample(step, 8)).unwrap();
        assert!(
            steps_on_disk(&d).len() <= 4,
            "step {step}: {:?}",
            steps_on_disk(&d)
        );
    }
    assert_eq!(steps_on_disk(&d), vec![4, 8, 9, 10]);

    // A new process learns the scores from the files' headers.
    drop(d);
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    for step in 11..=13 {
        d.save(step, None, &meta(step), &sample(step, 8)).unwrap();
    }
    assert_eq!(steps_on_disk(&d), vec![4, 11, 12, 13]);
    // A new best among the newest K: only K files remain.
    d.save(14, Some(0.999), &meta(14), &sample(14, 8)).unwrap();
    assert_eq!(steps_on_disk(&d), vec![12, 13, 14]);
    let best = read_file(&d.path_for(14)).unwrap();
    assert_eq!(best.score, Some(0.999));
}

/// A sink that fails like a disk: after `budget` bytes (ENOSPC), or at
/// fsync (EIO). It can also record how many checkpoints were on disk when
/// the temp file was opened.
struct FailingSink {
    inner: File,
    budget: Option<usize>,
    fail_sync: bool,
}

impl Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.budget {
            Some(0) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Some(left) => {
                let n = self.inner.write(&buf[..buf.len().min(left)])?;
                self.budget = Some(left - n);
                Ok(n)
            }
            None => self.inner.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Sink for FailingSink {
    fn sync(&mut self) -> io::Result<()> {
        if self.fail_sync {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_all()
    }
}

fn failing(budget: Option<usize>, fail_sync: bool) -> SinkFactory {
    Box::new(move |p: &Path| {
        let inner = File::create(p)?;
        Ok(Box::new(FailingSink {
            inner,
            budget,
            fail_sync,
        }) as Box<dyn Sink>)
    })
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ckpt_files(dir)
        .into_iter()
        .map(|n| (n.clone(), fs::read(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn failed_save_keeps_previous_checkpoints() {
    for (case, budget, fail_sync, errno) in [
        ("no space at first byte", Some(0), false, libc::ENOSPC),
        ("no space mid-file", Some(5000), false, libc::ENOSPC),
        ("EIO at fsync", None, true, libc::EIO),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
        d.save(1, Some(0.5), &meta(1), &sample(1, 4000)).unwrap();
        d.save(2, None, &meta(2), &sample(2, 4000)).unwrap();
        let before = snapshot(tmp.path());

        d.sink = failing(budget, fail_sync);
        let err = d.save(3, None, &meta(3), &sample(3, 4000)).unwrap_err();
        assert_eq!(err.exit_code(), 74, "{case}");
        match &err {
            StoreError::Save {
                step: 3,
                source,
                path,
            } => {
                assert_eq!(source.raw_os_error(), Some(errno), "{case}");
                assert_eq!(path, &d.path_for(3));
            }
            other => panic!("{case}: {other:?}"),
        }
        assert!(err.to_string().contains("step 3"), "{case}: {err}");
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "{case}: previous checkpoints changed or temp left"
        );
        assert_eq!(d.load_newest_valid().unwrap().unwrap().step, 2, "{case}");

        d.sink = Box::new(file_sink);
        d.save(3, None, &meta(3), &sample(3, 4000)).unwrap();
        assert_eq!(d.load_newest_valid().unwrap().unwrap().step, 3, "{case}");
    }
}

#[test]
fn disk_use_stays_within_k_plus_one_while_writing() {
    for k in [2usize, 3, 5] {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = CheckpointDir::open(tmp.path(), k).unwrap();
        let peak = Arc::new(Mutex::new(0usize));
        let seen = peak.clone();
        let dir = tmp.path().to_path_buf();
        d.sink = Box::new(move |p: &Path| {
            let on_disk = ckpt_files(&dir).len() + 1; // + the temp file being opened
            let mut m = seen.lock().unwrap();
            *m = (*m).max(on_disk);
            Ok(Box::new(File::create(p)?) as Box<dyn Sink>)
        });
        for step in 1..=20u64 {
            let score = (step == 3).then_some(0.9);
            d.save(step, score, &meta(step), &sample(step, 8)).unwrap();
            assert!(steps_on_disk(&d).len() <= k + 1);
        }
        assert_eq!(*peak.lock().unwrap(), k + 1, "k={k}");
        assert!(steps_on_disk(&d).contains(&3), "best kept");
    }
}

#[test]
fn open_removes_temp_leftovers_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    d.save(5, None, &meta(5), &sample(5, 8)).unwrap();
    fs::write(
        tmp.path().join("ckpt-000000000006.tch.tmp"),
        b"half a checkpoint",
    )
    .unwrap();
    fs::write(tmp.path().join("other.tmp"), b"x").unwrap();
    fs::write(tmp.path().join("notes.txt"), b"keep me").unwrap();
    let d = CheckpointDir::open(tmp.path(), 3).unwrap();
    assert_eq!(
        ckpt_files(tmp.path()),
        vec!["ckpt-000000000005.tch", "notes.txt"]
    );
    assert_eq!(d.load_newest_valid().unwrap().unwrap().step, 5);
}

#[test]
fn open_creates_nested_dir_and_empty_dir_loads_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trials/7/checkpoints");
    let d = CheckpointDir::open(&dir, 0).unwrap();
    assert!(dir.is_dir());
    assert_eq!(d.keep_last, 1);
    assert!(d.load_newest_valid().unwrap().is_none());
}

#[test]
fn saving_an_older_step_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 2).unwrap();
    for step in [10, 20, 30] {
        d.save(step, None, &meta(step), &sample(step, 8)).unwrap();
    }
    d.save(5, None, &meta(5), &sample(5, 8)).unwrap();
    assert!(steps_on_disk(&d).contains(&5));
    assert!(steps_on_disk(&d).contains(&30));
}

/// A real full disk: a small tmpfs filled up, then a save.
#[test]
fn full_tmpfs_keeps_previous_checkpoints() {
    let Some(mnt) =
        testutil::TmpfsMount::new("size=1m", false, "full_tmpfs_keeps_previous_checkpoints")
    else {
        return;
    };
    let dir = mnt.path().join("ckpt");
    let mut d = CheckpointDir::open(&dir, 3).unwrap();
    let n = 50_000; // ~200 KB a checkpoint
    d.save(1, None, &meta(1), &sample(1, n)).unwrap();
    d.save(2, None, &meta(2), &sample(2, n)).unwrap();
    let before = snapshot(&dir);

    let filler = mnt.path().join("filler");
    {
        let mut f = File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
                break;
            }
        }
    }
    let err = d.save(3, None, &meta(3), &sample(3, n)).unwrap_err();
    assert_eq!(err.exit_code(), 74, "{err}");
    let StoreError::Save { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(
        snapshot(&dir),
        before,
        "previous checkpoints changed or temp left"
    );
    let back = d.load_newest_valid().unwrap().unwrap();
    assert_eq!(back.step, 2);
    assert_same(&sample(2, n), &back.tensors);

    fs::remove_file(&filler).unwrap();
    d.save(3, None, &meta(3), &sample(3, n)).unwrap();
    assert_eq!(d.load_newest_valid().unwrap().unwrap().step, 3);
}

/// Run in a child by the crash tests: resumes from the newest checkpoint
/// and saves the following steps (up to 10_000) until killed.
#[test]
#[ignore = "helper run in a child process"]
fn saver_child() {
    let Some(dir) = testutil::helper_arg() else {
        return;
    };
    let mut d = CheckpointDir::open(Path::new(&dir), 3).unwrap();
    let start = d.load_newest_valid().unwrap().map_or(1, |c| c.step + 1);
    println!("READY {start}");
    for step in start..start + 10_000 {
        d.save(step, None, &meta(step), &sample(step, 1000))
            .unwrap();
    }
    println!("NOT KILLED");
}

/// A kill at each point of the commit protocol (via the fault points):
/// the directory always holds either the old set or the old set plus the
/// new checkpoint, and nothing is ever corrupt.
#[test]
fn kill_at_each_commit_point_leaves_a_valid_checkpoint() {
    for (i, point) in CHECKPOINT_POINTS.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ckpt");
        let abort = format!("{point}:2"); // the second save, step 2
        let mut child = testutil::spawn_helper_with(
            "store::checkpoint::tests::saver_child",
            &dir,
            &[("TRAINERD_FAULT_ABORT", &abort)],
        );
        child.wait_for("READY");
        let status = child.wait();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {status:?}");

        let renamed = i >= 3; // after_rename, after_dir_fsync
        let tmp_file = dir.join("ckpt-000000000002.tch.tmp");
        assert_eq!(tmp_file.exists(), !renamed, "{point}: temp file");
        assert_eq!(
            dir.join("ckpt-000000000002.tch").exists(),
            renamed,
            "{point}"
        );

        let d = CheckpointDir::open(&dir, 3).unwrap();
        assert!(!tmp_file.exists(), "{point}: temp file not cleaned");
        let back = d.load_newest_valid().unwrap().expect("a checkpoint");
        let want = if renamed { 2 } else { 1 };
        assert_eq!(back.step, want, "{point}");
        assert_same(&sample(want, 1000), &back.tensors);
        assert!(
            !dir.join(QUARANTINE_DIR).exists(),
            "{point}: something was corrupt"
        );
    }
}

/// SIGKILLs at random moments while a child saves continuously with a
/// delay at every fault point: every restart finds a valid checkpoint, the
/// step never goes back, nothing is ever corrupt.
#[test]
fn random_kills_never_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let mut last = 0u64;
    let mut inside_save = 0;
    let kills = 12;
    for _ in 0..kills {
        let mut child = testutil::spawn_helper_with(
            "store::checkpoint::tests::saver_child",
            &dir,
            &[("TRAINERD_FAULT_DELAY_MS", "3")],
        );
        child.wait_for("READY");
        std::thread::sleep(std::time::Duration::from_millis(rng.below(80) as u64));
        let status = child.kill();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        if fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        {
            inside_save += 1;
        }
        let d = CheckpointDir::open(&dir, 3).unwrap();
        if let Some(back) = d.load_newest_valid().unwrap() {
            assert!(back.step >= last, "went back from {last} to {}", back.step);
            assert_same(&sample(back.step, 1000), &back.tensors);
            last = back.step;
        }
        assert!(
            !dir.join(QUARANTINE_DIR).exists(),
            "corrupt checkpoint after a kill"
        );
        assert!(steps_on_disk(&d).len() <= 4);
    }
    assert!(last > 0, "no checkpoint was ever committed");
    eprintln!("random_kills_never_corrupt: {kills} kills, {inside_save} inside a save, reached step {last}");
}
