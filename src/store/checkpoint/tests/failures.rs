//! Tests of failed saves (no space, EIO at fsync, a real full tmpfs): each
//! is a clear error and leaves the previous checkpoints as they were.

use super::*;
use crate::exit::ExitStatus;
use crate::store::testutil;

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
