//! The validation split: how many training records are held out and which.
//!
//! - **How many**: `--val-size N` when given (it must leave every class a
//!   training record, else exit 78 naming the key); by default what
//!   certifying the study's target takes
//!   ([`crate::confidence::val_size_for`]): the split on which a model a
//!   quarter of the target's error better than the target has a 95% Wilson
//!   lower bound at the target, but at least a tenth of the set (up to
//!   5,000), at most a quarter, at least 5 per class, never more than half:
//!   a 600-image set trains with every default (and says it cannot certify
//!   0.99), MNIST at 0.99 holds out about 6,000.
//! - **Which**: stratified by class: each class gives its share of the
//!   held-out records (largest remainders settle the rounding), taken in the
//!   order of a permutation keyed by the seed, so the split is a function of
//!   the seed and the labels alone.

use std::path::Path;

use super::{rng, DataError};

/// Stream id under which the seed picks the validation split.
const STREAM_VAL_SPLIT: u64 = u64::from_be_bytes(*b"valsplit");

/// The default validation size for `n_train` records of `classes` classes
/// and the study's `target` (see [`crate::confidence::val_size_for`]).
pub fn auto_size(n_train: usize, classes: usize, target: f64) -> usize {
    crate::confidence::val_size_for(n_train, classes, target)
}

/// Why a requested size does not fit (the caller names file and key).
#[derive(Debug, PartialEq, Eq)]
pub struct DoesNotFit {
    /// The largest size that leaves every class a training record.
    pub largest: usize,
}

impl DoesNotFit {
    /// The error for `--val-size size` on the `n` training `records` (what
    /// they are: "records", "images") of `source`: exit 78, naming the key
    /// and the largest size that fits.
    pub fn error(&self, size: usize, n: usize, records: &str, source: &Path) -> DataError {
        let largest = self.largest;
        let one = records.strip_suffix('s').unwrap_or(records);
        DataError::Option {
            key: "val_size",
            what: format!(
                "{size} does not fit the {n} training {records} of {}: it must be between 1 \
                 and {largest}, so that every class keeps a training {one}; lower --val-size, \
                 or leave it unset for the default size",
                source.display()
            ),
        }
    }
}

/// The records held out for validation ([`pick`]) and those left for
/// training, as indices `(validation, training)`, each in record order.
pub fn partition(
    labels: &[u8],
    classes: usize,
    size: usize,
    seed: u64,
) -> Result<(Vec<i64>, Vec<i64>), DoesNotFit> {
    let marked = pick(labels, classes, size, seed)?;
    Ok((0..labels.len() as i64).partition(|&i| marked[i as usize]))
}

/// Marks `size` of the records (labels `labels`, classes `0..classes`) as
/// validation, stratified by class. Every class keeps at least one training
/// record; a `size` that cannot allow it is refused.
pub fn pick(
    labels: &[u8],
    classes: usize,
    size: usize,
    seed: u64,
) -> Result<Vec<bool>, DoesNotFit> {
    let mut count = vec![0usize; classes.max(1)];
    for &l in labels {
        if let Some(c) = count.get_mut(usize::from(l)) {
            *c += 1;
        }
    }
    let present = count.iter().filter(|&&c| c > 0).count();
    let largest = labels.len().saturating_sub(present);
    if size == 0 || size > largest {
        return Err(DoesNotFit { largest });
    }
    let quota = quotas(&count, size);
    let mut taken = vec![0usize; count.len()];
    let mut is_val = vec![false; labels.len()];
    for i in rng::permutation(labels.len(), rng::mix(seed, STREAM_VAL_SPLIT)) {
        let i = i as usize;
        let c = usize::from(labels[i]);
        if taken[c] < quota[c] {
            taken[c] += 1;
            is_val[i] = true;
        }
    }
    Ok(is_val)
}

/// Per-class shares of `size` proportional to `count`, summing to `size`,
/// each below its class's count (one record stays for training).
fn quotas(count: &[usize], size: usize) -> Vec<usize> {
    let n: usize = count.iter().sum();
    let room = |c: usize| count[c].saturating_sub(1);
    let mut quota: Vec<usize> = (0..count.len())
        .map(|c| (size * count[c] / n).min(room(c)))
        .collect();
    // Hand out what rounding left, largest remainder first (ties: lower class).
    let mut order: Vec<usize> = (0..count.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse((size * count[c]) % n));
    let mut left = size - quota.iter().sum::<usize>();
    while left > 0 {
        let before = left;
        for &c in &order {
            if left > 0 && quota[c] < room(c) {
                quota[c] += 1;
                left -= 1;
            }
        }
        if left == before {
            break; // cannot happen: size <= n - classes present
        }
    }
    quota
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_sizes_fit_small_and_full_data_sets() {
        assert_eq!(auto_size(60_000, 10, 0.92), 5000);
        assert!(auto_size(60_000, 10, 0.99) > 5000, "0.99 takes more");
        assert_eq!(auto_size(3000, 10, 0.99), 750, "a quarter at most");
        assert_eq!(auto_size(3000, 10, 0.5), 300, "a tenth when that certifies");
        assert_eq!(auto_size(600, 10, 0.99), 150);
        assert_eq!(auto_size(200, 10, 0.5), 50, "five per class");
        assert_eq!(auto_size(40, 10, 0.99), 20, "never more than half");
        assert_eq!(auto_size(1, 1, 0.99), 1);
    }

    #[test]
    fn the_split_is_stratified_and_keyed_by_the_seed() {
        // 900 of class 0, 100 of class 1.
        let labels: Vec<u8> = (0..1000).map(|i| u8::from(i % 10 == 0)).collect();
        let a = pick(&labels, 2, 100, 7).unwrap();
        let val_of = |c: u8| (0..1000).filter(|&i| a[i] && labels[i] == c).count();
        assert_eq!((val_of(0), val_of(1)), (90, 10));
        assert_eq!(a, pick(&labels, 2, 100, 7).unwrap());
        assert_ne!(a, pick(&labels, 2, 100, 8).unwrap());
    }

    #[test]
    fn every_class_keeps_a_training_record() {
        let labels = [0u8, 0, 0, 1, 2, 2];
        assert_eq!(pick(&labels, 3, 4, 0), Err(DoesNotFit { largest: 3 }));
        let v = pick(&labels, 3, 3, 0).unwrap();
        for c in 0..3u8 {
            assert!((0..6).any(|i| !v[i] && labels[i] == c), "class {c}: {v:?}");
        }
        assert_eq!(pick(&labels, 3, 0, 0), Err(DoesNotFit { largest: 3 }));
    }

    proptest! {
        #[test]
        fn exactly_size_records_are_held_out(
            labels in proptest::collection::vec(0u8..5, 2..300),
            size in 1usize..300,
            seed in any::<u64>(),
        ) {
            match pick(&labels, 5, size, seed) {
                Ok(v) => {
                    prop_assert_eq!(v.iter().filter(|&&x| x).count(), size);
                    for c in 0..5u8 {
                        let n = labels.iter().filter(|&&l| l == c).count();
                        let held = (0..labels.len()).filter(|&i| v[i] && labels[i] == c).count();
                        prop_assert!(n == 0 || held < n);
                    }
                }
                Err(DoesNotFit { largest }) => prop_assert!(size > largest),
            }
        }
    }
}
