//! Tests of the read-only side of versions: which names are versions,
//! [`open_version`]'s verdicts, and `trainerd models`' listing. The model
//! folders are written here by hand (a card, its listed files), so these
//! tests need nothing from the pipeline that writes real ones.

use std::fs;
use std::path::Path;

use super::*;
use crate::exit::ExitStatus;
use crate::export::Manifest;

/// A model folder `rel` of trial `trial` as promotion `n` writes one: a few
/// files listed with their checksums in `model.json`, and a report.
pub(crate) fn model_dir(d: &Path, rel: &str, trial: u32, n: u64) {
    let dir = d.join(rel);
    fs::create_dir_all(dir.join("repository/trainerd/1")).unwrap();
    let listed = [
        "model.safetensors",
        "model.onnx",
        "README.md",
        "repository/trainerd/1/model.onnx",
    ];
    for name in listed {
        fs::write(dir.join(name), format!("{name} of trial {trial}")).unwrap();
    }
    fs::write(dir.join("report.html"), b"<html>").unwrap();
    let mut card = crate::export::card::tests::sample_card();
    (card.trial, card.version) = (trial, n);
    card.files = Manifest::collect(&dir, &listed.map(String::from))
        .unwrap()
        .files;
    fs::write(dir.join(CARD), serde_json::to_vec(&card).unwrap()).unwrap();
}

/// Promotions 1..=k kept, the last the champion, the one before previous.
fn promoted(d: &Path, k: u64) {
    for n in 1..=k {
        model_dir(d, &format!("versions/{n}"), n as u32, n);
    }
    model_dir(d, "best", k as u32, k);
    if k > 1 {
        model_dir(d, "best.previous", k as u32 - 1, k - 1);
    }
}

#[test]
fn only_plain_numbers_are_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(numbers(d).unwrap().is_empty(), "no versions/ yet");
    for name in [
        "3",
        "12",
        "1",
        "7.staging",
        "2.deleting",
        "007",
        "0",
        "x",
        "-1",
    ] {
        fs::create_dir_all(d.join("versions").join(name)).unwrap();
    }
    assert_eq!(numbers(d).unwrap(), [1, 3, 12]);
    assert_eq!(newest(d), 12);
}

#[test]
fn open_version_verifies_the_card_and_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    promoted(d, 2);
    let (path, card) = open_version(d, 1).unwrap();
    assert_eq!(
        (path, card.version, card.trial),
        (d.join("versions/1"), 1, 1)
    );
    // A truncated weights file, then a missing one.
    let weights = d.join("versions/2/model.safetensors");
    let bytes = fs::read(&weights).unwrap();
    fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_version(d, 2).unwrap_err();
    assert_eq!(err.exit_code(), crate::exit::DATA);
    let text = err.to_string();
    assert!(
        text.contains("version 2 is damaged") && text.contains("model.safetensors"),
        "{text}"
    );
    fs::remove_file(&weights).unwrap();
    assert!(open_version(d, 2)
        .unwrap_err()
        .to_string()
        .contains("model.safetensors"));
    // A card that does not parse.
    fs::write(d.join("versions/1/model.json"), b"{\"format\": 1,").unwrap();
    let text = open_version(d, 1).unwrap_err().to_string();
    assert!(text.contains("versions/1/model.json"), "{text}");
    // Never given out, and given out but deleted since.
    let err = open_version(d, 9).unwrap_err();
    assert!(
        matches!(err, VersionError::NeverExisted { newest: 2, .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), crate::exit::NO_INPUT);
    fs::remove_dir_all(d.join("versions/1")).unwrap();
    let err = open_version(d, 1).unwrap_err().to_string();
    assert!(
        err.contains("version 1 is gone") && err.contains("kept: 2"),
        "{err}"
    );
    // A file where a version folder should be.
    fs::write(d.join("versions/5"), b"").unwrap();
    let text = open_version(d, 5).unwrap_err().to_string();
    assert!(text.contains("not a directory"), "{text}");
}

#[test]
fn models_lists_every_version_newest_first_naming_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = command::collect(d).unwrap();
    assert!(command::render_table(&empty).contains("no versions kept yet"));
    promoted(d, 3);
    fs::write(d.join("versions/1/README.md"), b"edited").unwrap();
    let v = command::collect(d).unwrap();
    let rows = v["versions"].as_array().unwrap();
    let numbers: Vec<u64> = rows
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(
        (rows[0]["champion"].as_bool(), rows[1]["previous"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(rows[2]["champion"], false);
    assert!(rows[0]["damaged"].is_null() && rows[0]["data_fingerprint"] == "0123456789abcdef");
    let damage = rows[2]["damaged"].as_str().unwrap();
    assert!(damage.contains("versions/1/README.md"), "{damage}");
    assert_eq!(
        rows[2]["trial"], 1,
        "a damaged version still shows its card"
    );
    let table = command::render_table(&v);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[1].trim_start().starts_with("3  champion"), "{table}");
    assert!(
        lines[2].contains("previous") && lines[3].contains("DAMAGED"),
        "{table}"
    );
}
