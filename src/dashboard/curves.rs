//! A trial's curves for the page: its TensorBoard scalars (mid-epoch
//! training loss at checkpoints and every epoch's values, growing while it
//! trains) or, without event files, the epoch records its journal entry
//! holds (what `best/report.html` draws). Each series is downsampled to
//! [`MAX_POINTS`]; at most [`MAX_BYTES`] of a trial's event files are read.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use crate::tensorboard::{event_files, read_next, Event, Next, What, MAX_RECORD};
use crate::train::EpochRecord;

/// Points of one series sent at most.
pub const MAX_POINTS: usize = 500;
/// Bytes of one trial's event files read at most.
pub const MAX_BYTES: u64 = 16 << 20;
/// Tags of one trial kept at most.
const MAX_TAGS: usize = 16;
/// Trials whose curves are cached.
const MAX_CACHED: usize = 512;

/// `(step, value)` points of one tag, by step.
pub type Series = Vec<(i64, f64)>;
/// A trial's series by tag (`train/loss`, `val/accuracy`, …).
pub type Curves = BTreeMap<String, Series>;

/// Curves already read, by trial folder and the size of its files.
#[derive(Default)]
pub struct CurveCache {
    by_dir: HashMap<PathBuf, (u64, Arc<Curves>)>,
}

impl CurveCache {
    /// The curves of the TensorBoard folder `dir`, downsampled; `None`
    /// when it holds no event files.
    pub fn of_dir(&mut self, dir: &Path) -> Option<Arc<Curves>> {
        let files = event_files(dir).ok().filter(|f| !f.is_empty())?;
        let size = files_size(&files);
        if let Some((s, c)) = self.by_dir.get(dir) {
            if *s == size {
                return Some(c.clone());
            }
        }
        let curves = Arc::new(downsampled(read_files(&files)));
        if self.by_dir.len() >= MAX_CACHED {
            self.by_dir.clear();
        }
        self.by_dir
            .insert(dir.to_path_buf(), (size, curves.clone()));
        Some(curves)
    }
}

/// Bytes of the event files in `dir` (0 without any): changes as a trial writes.
pub fn dir_size(dir: &Path) -> u64 {
    event_files(dir).map_or(0, |f| files_size(&f))
}

fn files_size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// Every scalar of `files` (each read to its first bad record, all within
/// [`MAX_BYTES`]), by tag, sorted by step, the last value of a step kept.
fn read_files(files: &[PathBuf]) -> Curves {
    let mut curves = Curves::new();
    let mut budget = MAX_BYTES;
    for path in files {
        let Ok(file) = File::open(path) else { continue };
        let mut r = BufReader::new(file);
        while let Ok(Next::Record(data)) = read_next(&mut r, MAX_RECORD) {
            budget = budget.saturating_sub(data.len() as u64 + 16);
            if budget == 0 {
                break;
            }
            let Ok(event) = Event::decode(data.as_slice()) else {
                break;
            };
            let Some(What::Summary(s)) = event.what else {
                continue;
            };
            for v in s.value {
                let Some(x) = v.simple_value.filter(|x| x.is_finite()) else {
                    continue;
                };
                if curves.len() < MAX_TAGS || curves.contains_key(&v.tag) {
                    let tag = super::clip(&v.tag, 64);
                    curves
                        .entry(tag)
                        .or_default()
                        .push((event.step, f64::from(x)));
                }
            }
        }
    }
    for s in curves.values_mut() {
        s.sort_by_key(|p| p.0);
        // A step written twice (an older build's resume): its last value.
        let mut dedup: Series = Vec::with_capacity(s.len());
        for p in s.drain(..) {
            match dedup.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => dedup.push(p),
            }
        }
        *s = dedup;
    }
    curves
}

/// The series of a journaled trial's epoch records.
pub fn from_history(history: &[EpochRecord]) -> Curves {
    let mut c = Curves::new();
    let step = |r: &EpochRecord| i64::try_from(r.step).unwrap_or(i64::MAX);
    for (tag, get) in [
        (
            "train/loss",
            (|r: &EpochRecord| r.train_loss) as fn(&EpochRecord) -> f64,
        ),
        ("val/accuracy", |r| r.val_accuracy),
        ("val/loss", |r| r.val_loss),
        ("train/learning_rate", |r| r.lr),
    ] {
        let s: Series = history
            .iter()
            .map(|r| (step(r), get(r)))
            .filter(|p| p.1.is_finite())
            .collect();
        if !s.is_empty() {
            c.insert(tag.into(), s);
        }
    }
    downsampled(c)
}

fn downsampled(c: Curves) -> Curves {
    c.into_iter()
        .map(|(k, s)| (k, downsample(&s, MAX_POINTS)))
        .collect()
}

/// At most `max` points of `s`, evenly spaced by index, first and last kept.
pub fn downsample(s: &[(i64, f64)], max: usize) -> Series {
    if s.len() <= max || max < 2 {
        return s.iter().take(max.max(s.len().min(1))).copied().collect();
    }
    let last = s.len() - 1;
    (0..max).map(|i| s[i * last / (max - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::frame;

    fn write(dir: &Path, name: &str, events: &[Event], tail: &[u8]) {
        let mut bytes = Vec::new();
        for e in events {
            bytes.extend(frame(&e.encode_to_vec()));
        }
        bytes.extend_from_slice(tail);
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn event_files_read_by_tag_to_the_first_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = CurveCache::default();
        assert!(cache.of_dir(dir.path()).is_none());
        let evs = [
            Event::header(0.0),
            Event::scalar(1.0, 10, "train/loss", 2.0),
            Event::scalar(1.0, 20, "train/loss", 1.0),
            Event::scalar(1.0, 20, "val/accuracy", 0.5),
        ];
        write(dir.path(), "events.out.tfevents.1.h.1.0", &evs, b"\x05\0\0");
        let c = cache.of_dir(dir.path()).unwrap();
        assert_eq!(c["train/loss"], vec![(10, 2.0), (20, 1.0)]);
        assert_eq!(c["val/accuracy"], vec![(20, 0.5)]);
        let more = [Event::scalar(1.0, 30, "train/loss", 0.5)];
        write(dir.path(), "events.out.tfevents.2.h.1.0", &more, b"");
        assert_eq!(cache.of_dir(dir.path()).unwrap()["train/loss"].len(), 3);
    }

    #[test]
    fn long_series_are_downsampled_keeping_both_ends() {
        let s: Series = (0..10_000).map(|i| (i, i as f64)).collect();
        let d = downsample(&s, MAX_POINTS);
        assert_eq!(d.len(), MAX_POINTS);
        assert_eq!((d[0], d[MAX_POINTS - 1]), (s[0], s[9_999]));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(downsample(&s[..3], MAX_POINTS), s[..3].to_vec());
    }

    #[test]
    fn journal_history_gives_epoch_curves_without_nan() {
        let rec = |epoch: u32, acc: f64| EpochRecord {
            epoch,
            step: u64::from(epoch) * 10,
            train_loss: 1.0 / f64::from(epoch),
            val_accuracy: acc,
            val_loss: 0.5,
            lr: 0.1,
            train_seconds: 1.0,
        };
        let c = from_history(&[rec(1, 0.5), rec(2, f64::NAN)]);
        assert_eq!(c["val/accuracy"], vec![(10, 0.5)]);
        assert_eq!(c["train/loss"].len(), 2);
    }
}
