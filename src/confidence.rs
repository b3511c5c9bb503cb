//! How sure an accuracy is: the Wilson score interval of `k` correct out of
//! `n`, and the rules built on it. Pure arithmetic, no I/O.
//!
//! - [`Interval::wilson`]: the two-sided 95% interval of a measured accuracy
//!   (`z` = 1.959964). The study decides "target reached" on its lower
//!   bound ([`certifies`]), never on the point value: a model measured at
//!   0.9218 on 5,000 images is, with 95% confidence, only above 0.914.
//! - [`val_size_for`]: how many validation records make that decision
//!   possible for a model a little better than the target (see its docs for
//!   the rule), so the split follows from the target and the data's size.

use serde::{Deserialize, Serialize};

/// The normal quantile for a two-sided 95% interval.
pub const Z95: f64 = 1.959964;
/// The confidence level the intervals are stated at.
pub const LEVEL: f64 = 0.95;

/// An accuracy measured on `n` records, with its 95% Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    /// Records it was measured on.
    pub n: usize,
}

impl Interval {
    /// The Wilson score interval of `k` successes in `n` trials at `z`;
    /// `[0, 1]` for `n == 0` (nothing is known).
    pub fn wilson_z(k: usize, n: usize, z: f64) -> Interval {
        if n == 0 {
            return Interval {
                lo: 0.0,
                hi: 1.0,
                n,
            };
        }
        let (nf, p) = (n as f64, k.min(n) as f64 / n as f64);
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
        let half = z / (1.0 + z2 / nf) * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
        Interval {
            lo: (centre - half).max(0.0),
            hi: (centre + half).min(1.0),
            n,
        }
    }

    /// The 95% interval of `k` correct out of `n`.
    pub fn wilson(k: usize, n: usize) -> Interval {
        Interval::wilson_z(k, n, Z95)
    }

    /// The 95% interval of an accuracy `acc` measured on `n` records (the
    /// count of correct ones is recovered by rounding `acc * n`).
    pub fn of_accuracy(acc: f64, n: usize) -> Interval {
        let k = if acc.is_finite() {
            (acc.clamp(0.0, 1.0) * n as f64).round() as usize
        } else {
            0
        };
        Interval::wilson(k, n)
    }

    /// `[lo, hi]` with three decimals, as status and the card print it.
    pub fn brackets(&self) -> String {
        format!("[{:.3}, {:.3}]", self.lo, self.hi)
    }
}

/// `0.921 [0.914, 0.928]`: an accuracy with its interval.
pub fn show(acc: f64, n: usize) -> String {
    format!("{acc:.3} {}", Interval::of_accuracy(acc, n).brackets())
}

/// Whether an accuracy `acc` measured on `n` records shows, with 95%
/// confidence, that the model meets `target`: the interval's lower bound is
/// at or above it. `n == 0` (a split size unknown, as in journals written
/// before it was kept) falls back to the point value.
pub fn certifies(acc: f64, n: usize, target: f64) -> bool {
    if n == 0 {
        return acc >= target;
    }
    Interval::of_accuracy(acc, n).lo >= target
}

/// A study's goal: `target`, judged on a validation split of `val_n`
/// records ([`certifies`]; `val_n == 0` judges the point value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub target: f64,
    pub val_n: usize,
}

impl Goal {
    /// Whether a validation accuracy `acc` certifies the target.
    pub fn reached(&self, acc: f64) -> bool {
        certifies(acc, self.val_n, self.target)
    }
}

impl From<f64> for Goal {
    /// The point-value goal (no split size known).
    fn from(target: f64) -> Goal {
        Goal { target, val_n: 0 }
    }
}

/// How much better than the target, as a share of the target's error, a
/// model must be for the default validation split to certify it: a quarter
/// (0.99 -> 0.9925, 0.92 -> 0.94).
pub const MARGIN_SHARE: f64 = 0.25;
/// The validation size never exceeds this share of the training set by default.
pub const MAX_SHARE: usize = 4;

/// The smallest `n` on which a model of accuracy `target + margin` has a
/// Wilson lower bound at or above `target` (`None` past `limit`).
pub fn needed(target: f64, margin: f64, limit: usize) -> Option<usize> {
    let p = (target + margin).min(1.0);
    let ok = |n: usize| Interval::wilson_z((p * n as f64).floor() as usize, n, Z95).lo >= target;
    if !ok(limit) {
        return None;
    }
    // The bound grows with n (up to rounding of k): bisect, then step to the first that holds.
    let (mut lo, mut hi) = (1usize, limit);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// The default validation size for `n_train` records of `classes` classes
/// and a study whose target is `target`:
///
/// `max(needed, min(n_train / 10, 5000))`, where `needed` is the smallest
/// split on which a model [`MARGIN_SHARE`] of the target's error better
/// than the target is certified ([`needed`]); at most a quarter of the
/// training set (more would cost the model its training data: a set too
/// small to certify the target then trains and says so), at least
/// `5 * classes`, never more than half, never 0.
pub fn val_size_for(n_train: usize, classes: usize, target: f64) -> usize {
    let usual = (n_train / 10).min(5000);
    let margin = (1.0 - target).max(0.0) * MARGIN_SHARE;
    let cap = n_train / MAX_SHARE;
    let want = needed(target, margin, cap.max(1)).unwrap_or(cap);
    want.max(usual)
        .min(cap)
        .max(5usize.saturating_mul(classes))
        .min(n_train / 2)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_known_values() {
        // 81 of 263 (Wilson 1927 / Newcombe 1998): [0.2553, 0.3662].
        let i = Interval::wilson(81, 263);
        assert!(close(i.lo, 0.2553) && close(i.hi, 0.3662), "{i:?}");
        // 15 of 148 (Newcombe 1998, example): [0.0624, 0.1605].
        let i = Interval::wilson(15, 148);
        assert!(close(i.lo, 0.0624) && close(i.hi, 0.1605), "{i:?}");
        // 0 of 10 and 10 of 10: the closed forms z²/(n+z²) and n/(n+z²).
        let z2 = Z95 * Z95;
        let i = Interval::wilson(0, 10);
        assert!(close(i.lo, 0.0) && close(i.hi, z2 / (10.0 + z2)), "{i:?}");
        let i = Interval::wilson(10, 10);
        assert!(close(i.lo, 10.0 / (10.0 + z2)) && close(i.hi, 1.0), "{i:?}");
        // The case: 0.9218 of 5,000.
        let i = Interval::of_accuracy(0.9218, 5000);
        assert!(
            (i.lo - 0.9140).abs() < 1e-4 && (i.hi - 0.9289).abs() < 1e-4,
            "{i:?}"
        );
        assert_eq!(show(0.9218, 5000), "0.922 [0.914, 0.929]");
        assert_eq!(
            Interval::wilson(3, 0),
            Interval {
                lo: 0.0,
                hi: 1.0,
                n: 0
            }
        );
    }

    #[test]
    fn the_decision_is_on_the_lower_bound() {
        assert!(!certifies(0.9218, 5000, 0.92), "point above, bound below");
        assert!(certifies(0.93, 5000, 0.92));
        assert!(
            !certifies(0.995, 200, 0.99),
            "a small split certifies little"
        );
        assert!(certifies(0.995, 20000, 0.99));
        assert!(!certifies(1.0, 300, 0.99), "300 of 300 is only above 0.987");
        assert!(certifies(0.99, 0, 0.99), "unknown n: the point value");
        assert!(!certifies(f64::NAN, 100, 0.5));
    }

    #[test]
    fn needed_is_the_first_size_that_certifies() {
        let n = needed(0.99, 0.0025, 30_000).unwrap();
        assert!(
            certifies(0.9925, n, 0.99) && !certifies(0.9925, n / 2, 0.99),
            "{n}"
        );
        assert!((5500..7000).contains(&n), "about 6,100: {n}");
        let f = needed(0.92, 0.02, 30_000).unwrap();
        assert!((600..800).contains(&f), "about 720: {f}");
        assert_eq!(needed(0.99, 0.0025, 300), None);
    }

    #[test]
    fn the_val_size_rule() {
        let mnist = val_size_for(60_000, 10, 0.99);
        assert!(mnist > 5000 && mnist <= 15_000, "{mnist}");
        assert_eq!(
            val_size_for(60_000, 10, 0.92),
            5000,
            "the usual tenth, capped"
        );
        let big = val_size_for(1_000_000, 10, 0.999);
        assert!(
            (50_000..80_000).contains(&big),
            "large data: past 5,000: {big}"
        );
        assert_eq!(
            val_size_for(100_000, 10, 0.999),
            25_000,
            "a quarter at most"
        );
        // Small sets: a quarter, at least 5 per class, at most half.
        assert_eq!(val_size_for(500, 10, 0.99), 125);
        assert_eq!(
            val_size_for(600, 10, 0.5),
            64,
            "what 0.5 needs, over the tenth"
        );
        assert_eq!(val_size_for(60, 10, 0.99), 30);
        assert_eq!(val_size_for(1, 10, 0.99), 1);
    }
}
