//! Retention policy: which checkpoints to delete, as a pure function of
//! (step, score) pairs. The writer in `checkpoint.rs` carries it out.
//!
//! Kept: the newest `keep_last` by step, plus the one with the best score
//! (when it is older). So at rest a directory holds at most `keep_last + 1`
//! checkpoints, and only `keep_last` when the best is among the newest.
//! Because the best is always kept, the best among the files on disk is the
//! best ever written: a score that was deleted was never the maximum.

/// One checkpoint as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub step: u64,
    /// Validation score (higher is better); `None` when not evaluated at
    /// this step. Non-finite scores count as `None`.
    pub score: Option<f64>,
}

/// What to delete around one save, split so that the directory never holds
/// more than `keep_last + 1` files even while the new one is being written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Safe to delete before the new checkpoint is written: each would be
    /// deleted after the commit anyway, and none is the newest on disk.
    pub before: Vec<u64>,
    /// To delete only once the new checkpoint is committed.
    pub after: Vec<u64>,
}

fn usable(score: Option<f64>) -> Option<f64> {
    score.filter(|s| s.is_finite())
}

/// The step of the best-scored entry; ties go to the newer step.
pub fn best(entries: &[Entry]) -> Option<u64> {
    entries
        .iter()
        .filter_map(|e| usable(e.score).map(|s| (s, e.step)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, step)| step)
}

/// Steps to delete so that only the newest `keep_last` (at least 1) and the
/// best remain. Sorted ascending.
pub fn to_delete(entries: &[Entry], keep_last: usize) -> Vec<u64> {
    let keep_last = keep_last.max(1);
    let mut steps: Vec<u64> = entries.iter().map(|e| e.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let cut = steps.len().saturating_sub(keep_last);
    let best = best(entries);
    steps[..cut]
        .iter()
        .copied()
        .filter(|s| Some(*s) != best)
        .collect()
}

/// Plans the deletions around saving `new` into a directory holding
/// `existing`. The new checkpoint is always kept (even if its step is not
/// the highest), and the newest existing one is never deleted before the
/// new one is committed.
pub fn plan(existing: &[Entry], keep_last: usize, new: Entry) -> Plan {
    // A save at an existing step replaces that file by rename.
    let mut all: Vec<Entry> = existing
        .iter()
        .copied()
        .filter(|e| e.step != new.step)
        .collect();
    let newest_existing = all.iter().map(|e| e.step).max();
    all.push(new);
    let doomed: Vec<u64> = to_delete(&all, keep_last)
        .into_iter()
        .filter(|s| *s != new.step)
        .collect();
    let (after, before) = doomed
        .into_iter()
        .partition(|s| Some(*s) == newest_existing);
    Plan { before, after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(step: u64, score: Option<f64>) -> Entry {
        Entry { step, score }
    }

    fn unscored(steps: &[u64]) -> Vec<Entry> {
        steps.iter().map(|s| e(*s, None)).collect()
    }

    #[test]
    fn keeps_newest_k_without_scores() {
        assert_eq!(to_delete(&unscored(&[10, 20, 30, 40, 50]), 3), vec![10, 20]);
        assert_eq!(to_delete(&unscored(&[50, 10, 40, 20, 30]), 3), vec![10, 20]);
        assert!(to_delete(&unscored(&[10, 20]), 3).is_empty());
        assert!(to_delete(&[], 3).is_empty());
    }

    #[test]
    fn keeps_best_outside_newest_k() {
        let entries = vec![
            e(10, Some(0.5)),
            e(20, Some(0.9)),
            e(30, Some(0.7)),
            e(40, None),
            e(50, Some(0.8)),
        ];
        assert_eq!(to_delete(&entries, 2), vec![10, 30]);
        assert_eq!(best(&entries), Some(20));
    }

    #[test]
    fn best_inside_newest_k_keeps_only_k() {
        let entries = vec![
            e(10, Some(0.5)),
            e(20, Some(0.6)),
            e(30, Some(0.7)),
            e(40, Some(0.95)),
            e(50, None),
        ];
        assert_eq!(to_delete(&entries, 3), vec![10, 20]);
    }

    #[test]
    fn keep_last_zero_still_keeps_newest() {
        assert_eq!(to_delete(&unscored(&[1, 2, 3]), 0), vec![1, 2]);
    }

    #[test]
    fn non_finite_scores_are_ignored_and_ties_prefer_newer() {
        let entries = vec![
            e(1, Some(f64::NAN)),
            e(2, Some(f64::INFINITY)),
            e(3, Some(0.4)),
            e(4, Some(0.4)),
        ];
        assert_eq!(best(&entries), Some(4));
        assert_eq!(best(&[e(1, Some(f64::NAN))]), None);
        assert_eq!(to_delete(&[e(1, Some(f64::NAN)), e(2, None)], 1), vec![1]);
    }

    #[test]
    fn plan_deletes_before_only_what_goes_anyway() {
        // K=3, best old: the oldest non-best goes before the write.
        let existing = vec![e(10, Some(0.9)), e(20, Some(0.1)), e(30, None), e(40, None)];
        let p = plan(&existing, 3, e(50, None));
        assert_eq!(
            p,
            Plan {
                before: vec![20],
                after: vec![]
            }
        );
    }

    #[test]
    fn plan_with_k1_keeps_newest_until_commit() {
        let p = plan(&unscored(&[10]), 1, e(20, None));
        assert_eq!(
            p,
            Plan {
                before: vec![],
                after: vec![10]
            }
        );
    }

    #[test]
    fn plan_new_best_frees_old_best_before() {
        let existing = vec![e(10, Some(0.9)), e(20, None), e(30, None)];
        let p = plan(&existing, 2, e(40, Some(0.95)));
        assert_eq!(
            p,
            Plan {
                before: vec![10, 20],
                after: vec![]
            }
        );
    }

    #[test]
    fn plan_same_step_is_a_replacement() {
        let p = plan(&unscored(&[10, 20, 30]), 3, e(30, None));
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn plan_never_deletes_new_even_if_older() {
        let p = plan(&unscored(&[10, 20, 30]), 2, e(5, None));
        assert!(!p.before.contains(&5) && !p.after.contains(&5));
        assert!(
            !p.before.contains(&30),
            "newest existing must survive until commit"
        );
    }

    /// Replays many saves and checks the invariants after each one: at most
    /// K+1 files at rest, at most K+1 while writing (K >= 2), the newest K
    /// and the best ever written always kept.
    #[test]
    fn invariants_over_a_long_run() {
        for k in 1..=4usize {
            let mut disk: Vec<Entry> = Vec::new();
            let mut best_ever: Option<(f64, u64)> = None;
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ k as u64;
            for step in 1..=200u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let score = (x % 3 == 0).then(|| (x % 1000) as f64 / 1000.0);
                let new = e(step, score);
                let p = plan(&disk, k, new);
                disk.retain(|d| !p.before.contains(&d.step));
                let peak = disk.len() + 1;
                if k >= 2 {
                    assert!(
                        peak <= k + 1,
                        "k={k} step={step}: {peak} files while writing"
                    );
                }
                assert!(
                    disk.iter().any(|d| d.step == step - 1) || step == 1,
                    "newest deleted before commit"
                );
                disk.push(new);
                disk.retain(|d| !p.after.contains(&d.step));
                assert!(
                    disk.len() <= k + 1,
                    "k={k} step={step}: {} files at rest",
                    disk.len()
                );
                if let Some(s) = score {
                    if best_ever.is_none_or(|(b, _)| s >= b) {
                        best_ever = Some((s, step));
                    }
                }
                if let Some((_, b)) = best_ever {
                    assert!(
                        disk.iter().any(|d| d.step == b),
                        "k={k}: best step {b} deleted"
                    );
                }
                let lo = step.saturating_sub(k as u64 - 1).max(1);
                for s in lo..=step {
                    assert!(
                        disk.iter().any(|d| d.step == s),
                        "k={k}: recent step {s} deleted"
                    );
                }
            }
        }
    }
}
