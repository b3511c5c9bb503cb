//! Deterministic random streams outside libtorch: word mixing, splitmix64, seeded permutations.
//!
//! Every random choice trainerd makes in Rust (the validation split, each
//! epoch's order) is a pure function of a 64-bit key, so a resumed run makes
//! exactly the choices the interrupted one made. The algorithms are part of
//! that contract: changing them changes every split and shuffle, and a
//! checkpoint written before the change no longer resumes bit-for-bit.

/// 2^64 / golden ratio: splitmix64's increment (odd, so the walk visits every word).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// An odd multiplier, so that `b * ODD` is a bijection of `b`.
const ODD: u64 = 0xD605_BBB5_8C8A_BBB5;

/// splitmix64's output function: a bijection of `u64` in which every input bit
/// flips about half of the output bits.
pub fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes two words into a well-spread key, e.g. `mix(seed, trial)`.
///
/// Order matters (`mix(a, b) != mix(b, a)` in general), and for a fixed `a`
/// distinct `b`s give distinct keys (and vice versa), so streams derived
/// as `mix(key, stream_id)` never collide for one key.
pub fn mix(a: u64, b: u64) -> u64 {
    finalize(finalize(a.wrapping_add(GOLDEN)) ^ b.wrapping_mul(ODD))
}

/// The splitmix64 generator: tiny, fast, and good enough for shuffling.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        finalize(self.state)
    }

    /// A number in `0..n` (`n > 0`), by Lemire's multiply-shift; its bias,
    /// at most `n / 2^64`, is far below anything a shuffle could show.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A permutation of `0..n` determined by `key` (Fisher–Yates over splitmix64).
///
/// `i64` because the result becomes an index tensor.
pub fn permutation(n: usize, key: u64) -> Vec<i64> {
    let mut v: Vec<i64> = (0..n as i64).collect();
    let mut rng = SplitMix64::new(key);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn permutation_is_a_permutation() {
        for n in [0, 1, 2, 3, 10, 1000] {
            let mut p = permutation(n, 7);
            assert_eq!(p.len(), n);
            p.sort_unstable();
            assert_eq!(p, (0..n as i64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn permutation_depends_only_on_key() {
        assert_eq!(permutation(500, 42), permutation(500, 42));
        assert_ne!(permutation(500, 42), permutation(500, 43));
    }

    #[test]
    fn permutation_positions_are_roughly_uniform() {
        // Where element 0 lands over many keys: each of 4 slots about 1/4 of the time.
        let mut counts = [0u32; 4];
        for key in 0..4000u64 {
            let p = permutation(4, mix(key, 99));
            let pos = p.iter().position(|&x| x == 0).unwrap_or(0);
            counts[pos] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn mix_is_order_sensitive_and_injective_per_argument() {
        assert_ne!(mix(1, 2), mix(2, 1));
        let by_b: HashSet<u64> = (0..10_000).map(|b| mix(5, b)).collect();
        assert_eq!(by_b.len(), 10_000);
        let by_a: HashSet<u64> = (0..10_000).map(|a| mix(a, 5)).collect();
        assert_eq!(by_a.len(), 10_000);
    }

    #[test]
    fn mix_spreads_bits() {
        // Flipping one input bit flips about half the output bits on average.
        let mut total = 0u32;
        let trials = 64 * 50;
        for k in 0..50u64 {
            for bit in 0..64 {
                total += (mix(k, 3) ^ mix(k ^ (1 << bit), 3)).count_ones();
            }
        }
        let avg = f64::from(total) / f64::from(trials);
        assert!((28.0..36.0).contains(&avg), "average flipped bits {avg}");
    }

    #[test]
    fn below_stays_in_range_and_f64_in_unit_interval() {
        let mut r = SplitMix64::new(1);
        for n in 1..200 {
            assert!(r.below(n) < n);
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
