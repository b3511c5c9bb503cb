//! The writer against its own reader: torn tails, resume cuts, duplicate steps.

use super::*;

/// Every (tag, step, value) in `dir`'s files, in file order.
fn read_all(dir: &Path) -> Vec<(String, i64, f32)> {
    let mut out = Vec::new();
    for path in event_files(dir).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        let mut r = bytes.as_slice();
        let mut first = true;
        while let Next::Record(data) = read_next(&mut r, MAX_RECORD).unwrap() {
            let e = Event::decode(data.as_slice()).unwrap();
            if first {
                assert_eq!(e.what, Some(What::FileVersion(FILE_VERSION.into())));
                first = false;
            }
            if let Some(What::Summary(s)) = e.what {
                for v in s.value {
                    out.push((v.tag, e.step, v.simple_value.unwrap()));
                }
            }
        }
        assert!(
            r.is_empty(),
            "{} has bytes after its last record",
            path.display()
        );
    }
    out
}

fn steps(dir: &Path, tag: &str) -> Vec<i64> {
    read_all(dir)
        .into_iter()
        .filter(|(t, ..)| t == tag)
        .map(|(_, s, _)| s)
        .collect()
}

#[test]
fn writes_one_file_with_a_header_and_the_scalars() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Scalars::open(dir.path(), 0, 0);
    w.scalar("train/loss", 10, 0.5);
    w.scalar("val/accuracy", 10, 0.0);
    w.sync();
    assert!(w.is_on());
    let files = event_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let parts: Vec<&str> = name.trim_start_matches(FILE_PREFIX).split('.').collect();
    assert_eq!(parts.len(), 4, "{name}");
    assert_eq!(parts[2], std::process::id().to_string());
    assert_eq!(
        read_all(dir.path()),
        vec![
            ("train/loss".into(), 10, 0.5),
            ("val/accuracy".into(), 10, 0.0)
        ]
    );
}

#[test]
fn a_resume_cuts_steps_after_the_checkpoint_and_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Scalars::open(dir.path(), 0, 0);
    for step in [10, 20, 30] {
        w.scalar("train/loss", step, step as f64);
    }
    drop(w);
    let path = &event_files(dir.path()).unwrap()[0];
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    let torn = frame(&Event::scalar(0.0, 40, "train/loss", 4.0).encode_to_vec());
    f.write_all(&torn[..torn.len() - 3]).unwrap();
    drop(f);
    // Resumed from the checkpoint at step 20: 30 and the torn 40 go, 30 comes again.
    let mut w = Scalars::open(dir.path(), 0, 20);
    for step in [20, 30, 40] {
        w.scalar("train/loss", step, step as f64);
    }
    assert_eq!(steps(dir.path(), "train/loss"), vec![10, 20, 30, 40]);
    assert_eq!(event_files(dir.path()).unwrap().len(), 1);
}

#[test]
fn a_value_at_a_step_on_file_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Scalars::open(dir.path(), 0, 0);
    w.scalar("test/accuracy", 50, 0.9);
    w.scalar("test/accuracy", 50, 0.9);
    drop(w);
    // A crash after the final evaluation: the trial resumes at its last step.
    let mut w = Scalars::open(dir.path(), 0, 50);
    w.scalar("test/accuracy", 50, 0.9);
    w.scalar("train/loss", 50, 0.1);
    assert_eq!(steps(dir.path(), "test/accuracy"), vec![50]);
    assert_eq!(steps(dir.path(), "train/loss"), vec![50]);
}

#[test]
fn a_file_torn_inside_its_header_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(Scalars::open(dir.path(), 0, 0));
    let path = event_files(dir.path()).unwrap().remove(0);
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let mut w = Scalars::open(dir.path(), 0, 0);
    w.scalar("train/loss", 1, 1.0);
    assert_eq!(steps(dir.path(), "train/loss"), vec![1]);
}

#[test]
fn an_unwritable_dir_turns_the_writer_off_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let mut w = Scalars::open(&blocker.join("trial"), 3, 0);
    assert!(!w.is_on());
    w.scalar("train/loss", 1, 1.0);
    w.sync();
}

#[test]
fn too_many_bytes_to_read_back_are_refused_uncut() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Scalars::open(dir.path(), 0, 0);
    w.scalar("train/loss", 10, 1.0);
    drop(w);
    let files = event_files(dir.path()).unwrap();
    assert!(cut_after(&files, 0, 8).is_err());
    assert_eq!(steps(dir.path(), "train/loss"), vec![10]);
}
