//! Tests of the checkpoint file format: bit-exact round trips, kinds and
//! names refused, other versions and misnamed files quarantined, and every
//! corruption detected.

use super::*;
use crate::exit::ExitStatus;
use crate::store::checkpoint_file::{read_file, DIGEST_LEN};
use sha2::{Digest, Sha256};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind};

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
