//! The newest lines of `events.jsonl`, read as the file grows: each line's
//! number is its `seq` (the `since=` of `/api/v1/events`). Only what was
//! appended since the last look is read (at most [`MAX_READ`] bytes a
//! refresh), the newest [`KEEP`] events are kept, and a line longer than
//! [`MAX_LINE`] counts but is not kept whole.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};

use super::clip;

/// Events kept in memory (older ones are counted, not served).
pub const KEEP: usize = 1000;
/// A line longer than this is shown as an unreadable event.
pub const MAX_LINE: usize = 64 << 10;
/// Bytes read from the log at one refresh (the rest at the next ones).
pub const MAX_READ: usize = 8 << 20;
/// Events in one answer at most.
pub const MAX_LIMIT: usize = 500;

/// What has been read of the log.
#[derive(Debug, Default)]
pub struct EventTail {
    /// The file read (device, inode): another file restarts the count.
    file: Option<(u64, u64)>,
    /// Bytes consumed: through the last newline seen.
    read_to: u64,
    /// Lines seen so far: the seq of the newest.
    lines: u64,
    /// Inside a line longer than [`MAX_READ`]: skip to its end.
    skipping: bool,
    kept: VecDeque<Value>,
}

impl EventTail {
    /// Reads what was appended to `path` since the last call.
    pub fn refresh(&mut self, path: &Path) {
        let Ok(mut f) = File::open(path) else {
            if self.file.is_some() {
                *self = EventTail::default();
            }
            return;
        };
        let Ok(meta) = f.metadata() else { return };
        let id = (meta.dev(), meta.ino());
        if self.file != Some(id) || meta.len() < self.read_to {
            *self = EventTail {
                file: Some(id),
                ..EventTail::default()
            };
        }
        let want = (meta.len() - self.read_to).min(MAX_READ as u64) as usize;
        if want == 0 || f.seek(SeekFrom::Start(self.read_to)).is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(want);
        if f.take(want as u64).read_to_end(&mut buf).is_err() {
            return;
        }
        self.consume(&buf);
    }

    /// Takes the complete lines at the start of `buf`.
    fn consume(&mut self, buf: &[u8]) {
        let mut at = 0;
        while let Some(n) = buf[at..].iter().position(|&b| b == b'\n') {
            let line = &buf[at..at + n];
            at += n + 1;
            self.lines += 1;
            if std::mem::take(&mut self.skipping) {
                self.push(unreadable(self.lines, "longer than the page reads"));
                continue;
            }
            self.push(summary(self.lines, line));
        }
        if at == 0 && buf.len() >= MAX_READ {
            // One line fills a whole read: skip to its end.
            self.skipping = true;
            at = buf.len();
        }
        self.read_to += at as u64;
    }

    fn push(&mut self, event: Value) {
        if self.kept.len() == KEEP {
            self.kept.pop_front();
        }
        self.kept.push_back(event);
    }

    /// The seq of the newest event read (0: none).
    pub fn last_seq(&self) -> u64 {
        self.lines
    }

    /// Up to `limit` events after `since` (oldest first), or the newest
    /// `limit` without it; `missed` counts events after `since` that are
    /// no longer kept.
    pub fn since(&self, since: Option<u64>, limit: usize) -> Value {
        let limit = limit.clamp(1, MAX_LIMIT);
        let first = self.lines + 1 - self.kept.len() as u64;
        let (skip, missed) = match since {
            Some(s) if s >= self.lines => (self.kept.len(), 0),
            Some(s) if s + 1 >= first => ((s + 1 - first) as usize, 0),
            Some(s) => (0, first - s - 1),
            None => (self.kept.len().saturating_sub(limit), 0),
        };
        let events: Vec<&Value> = self.kept.iter().skip(skip).take(limit).collect();
        let next = events
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(since.unwrap_or(self.lines).min(self.lines));
        json!({"events": events, "next": next, "last": self.lines, "missed": missed})
    }
}

/// One line as the page shows it: its seq and the event's fields, texts clipped.
fn summary(seq: u64, line: &[u8]) -> Value {
    if line.len() > MAX_LINE {
        return unreadable(seq, "too long");
    }
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return unreadable(seq, "not JSON");
    };
    let text = |k: &str, max: usize| v[k].as_str().map(|s| clip(s, max));
    let data = v.get("data").filter(|d| d.to_string().len() <= 4096);
    json!({
        "seq": seq,
        "id": text("id", 200),
        "kind": text("kind", 64),
        "study": text("study", 64),
        "trial": v["trial"].as_u64(),
        "time": text("time", 64),
        "message": text("message", 2000),
        "data": data,
    })
}

fn unreadable(seq: u64, why: &str) -> Value {
    json!({"seq": seq, "kind": "unreadable", "message": format!("line {seq} of events.jsonl: {why}")})
}

/// A `since=` (or other count) parameter: digits only; more digits than
/// fit count as beyond every event. Anything else names the parameter.
pub fn parse_seq(name: &str, raw: &str) -> Result<u64, String> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name}: expected a whole number (the seq of an event this API sent), got {:?}",
            clip(raw, 40)
        ));
    }
    Ok(raw.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: u32) -> String {
        format!(
            "{{\"kind\":\"trial_started\",\"study\":\"s\",\"trial\":{i},\"message\":\"t{i}\"}}\n"
        )
    }

    #[test]
    fn appended_lines_are_read_once_and_numbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut tail = EventTail::default();
        tail.refresh(&path);
        assert_eq!(tail.last_seq(), 0);
        std::fs::write(&path, line(0) + &line(1) + "{\"torn").unwrap();
        tail.refresh(&path);
        assert_eq!(tail.last_seq(), 2, "the torn line waits for its newline");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"\":1}\nnot json\n").unwrap();
        tail.refresh(&path);
        let all = tail.since(Some(0), 10);
        let kinds: Vec<&str> = all["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(kinds, ["trial_started", "trial_started", "-", "unreadable"]);
        assert_eq!(all["next"], 4);
        assert_eq!(tail.since(Some(2), 10)["events"][0]["seq"], 3);
        assert_eq!(tail.since(Some(u64::MAX), 10)["events"], json!([]));
        assert_eq!(tail.since(None, 1)["events"][0]["seq"], 4);
    }

    #[test]
    fn only_the_newest_are_kept_and_the_rest_counted_as_missed() {
        let mut tail = EventTail::default();
        let text: String = (0..KEEP as u32 + 5).map(line).collect();
        tail.consume(text.as_bytes());
        let v = tail.since(Some(0), 3);
        assert_eq!(v["missed"], 5);
        assert_eq!(v["events"][0]["seq"], 6);
        assert_eq!(v["events"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_line_longer_than_a_read_is_skipped_and_counted() {
        let mut tail = EventTail::default();
        tail.consume(&vec![b'x'; MAX_READ]);
        assert!(tail.skipping);
        tail.consume(format!("xxx\n{}", line(7)).as_bytes());
        assert_eq!(tail.last_seq(), 2);
        let v = tail.since(None, 10);
        assert_eq!(v["events"][0]["kind"], "unreadable");
        assert_eq!(v["events"][1]["message"], "t7");
    }

    #[test]
    fn since_takes_digits_only() {
        assert_eq!(parse_seq("since", "12"), Ok(12));
        assert_eq!(parse_seq("since", &"9".repeat(400)), Ok(u64::MAX));
        for bad in ["", "-1", "1e3", "garbage", " 1", "0x10"] {
            let e = parse_seq("since", bad).unwrap_err();
            assert!(e.starts_with("since: expected a whole number"), "{e}");
        }
    }
}
