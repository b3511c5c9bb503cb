//! The input normalisation, `(pixel/255 − mean[c]) / std[c]`: one mean and
//! one standard deviation per channel, computed over the training split's
//! pixels (never validation or test) when the data set is loaded, stored in
//! `model.json` and in the checkpoints, and applied by training, evaluation,
//! `predict`, `serve` and inside every exported model.
//!
//! In `model.json` it reads `{"mean": [..], "std": [..]}`, one value per
//! channel. Cards and checkpoints of older builds hold one `[mean, std]`
//! pair: it applies to every channel, as it did when they were written; a
//! card without the field gets MNIST's constants ([`Normalisation::MNIST`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::{TchError, Tensor};

/// Most channels a normalisation holds (gray 1, RGB 3; RGBA is flattened).
pub const MAX_CHANNELS: usize = 4;

/// Per-channel mean and standard deviation of `pixel/255`. With one channel
/// it applies to every channel of the input (a card of an older build).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    channels: usize,
    mean: [f64; MAX_CHANNELS],
    std: [f64; MAX_CHANNELS],
}

impl Default for Normalisation {
    fn default() -> Self {
        Self::MNIST
    }
}

impl Normalisation {
    /// MNIST's well-known constants: what a card without the field was trained with.
    pub const MNIST: Normalisation = Normalisation::uniform(0.1307, 0.3081);

    /// One mean and std for every channel.
    pub const fn uniform(mean: f64, std: f64) -> Self {
        Normalisation {
            channels: 1,
            mean: [mean, 0.0, 0.0, 0.0],
            std: [std, 1.0, 1.0, 1.0],
        }
    }

    /// One mean and std per channel: `None` unless both have the same
    /// length, between 1 and [`MAX_CHANNELS`].
    pub fn per_channel(mean: &[f64], std: &[f64]) -> Option<Self> {
        let n = mean.len();
        if n != std.len() || n == 0 || n > MAX_CHANNELS {
            return None;
        }
        let mut out = Normalisation::uniform(0.0, 1.0);
        out.channels = n;
        out.mean[..n].copy_from_slice(mean);
        out.std[..n].copy_from_slice(std);
        Some(out)
    }

    /// From one byte histogram per channel (see [`mean_std`]).
    pub fn from_histograms(hists: &[[u64; 256]]) -> Self {
        let (mean, std): (Vec<f64>, Vec<f64>) = hists
            .iter()
            .take(MAX_CHANNELS)
            .map(|h| {
                let [m, s] = mean_std(h);
                (m, s)
            })
            .unzip();
        Self::per_channel(&mean, &std).unwrap_or(Normalisation::uniform(0.0, 1.0))
    }

    /// The stored means, one per channel (one for every channel of an older card).
    pub fn mean(&self) -> &[f64] {
        &self.mean[..self.channels]
    }

    /// The stored standard deviations, as [`Self::mean`].
    pub fn std(&self) -> &[f64] {
        &self.std[..self.channels]
    }

    /// `(mean, std)` of channel `c`.
    pub fn of(&self, c: usize) -> (f64, f64) {
        let c = if self.channels == 1 { 0 } else { c };
        let c = c.min(self.channels - 1);
        (self.mean[c], self.std[c])
    }

    /// One value for every channel: the input can be normalised with two scalars.
    pub fn is_uniform(&self) -> bool {
        (1..self.channels).all(|c| self.of(c) == self.of(0))
    }

    /// It can normalise inputs of `channels` channels.
    pub fn fits(&self, channels: i64) -> bool {
        self.channels == 1 || self.channels as i64 == channels
    }

    /// The same channels and values, to within what a JSON round trip may
    /// change (a checkpoint's values against the reloaded data set's).
    pub fn same_as(&self, other: &Normalisation) -> bool {
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12)
        };
        close(self.mean(), other.mean()) && close(self.std(), other.std())
    }

    /// Every number is finite.
    pub fn is_finite(&self) -> bool {
        self.mean().iter().chain(self.std()).all(|x| x.is_finite())
    }

    /// `(means, stds)` expanded to `channels` values each.
    pub fn expanded(&self, channels: i64) -> (Vec<f64>, Vec<f64>) {
        (0..channels.max(1) as usize).map(|c| self.of(c)).unzip()
    }

    /// `x` (float `[N, C, H, W]` in [0, 1]) normalised: `(x − mean[c]) / std[c]`.
    pub fn apply01(&self, x: &Tensor) -> Result<Tensor, TchError> {
        if self.is_uniform() {
            let (mean, std) = self.of(0);
            return x.f_sub_scalar(mean)?.f_div_scalar(std);
        }
        let (mean, std) = self.broadcast_over(x)?;
        x.f_sub(&mean)?.f_div(&std)
    }

    /// The inverse of [`Self::apply01`]: normalised `x` (`[N, C, H, W]`) back
    /// in [0, 1], `x · std[c] + mean[c]` (to feed another model its own way).
    pub fn to01(&self, x: &Tensor) -> Result<Tensor, TchError> {
        if self.is_uniform() {
            let (mean, std) = self.of(0);
            return x.f_mul_scalar(std)?.f_add_scalar(mean);
        }
        let (mean, std) = self.broadcast_over(x)?;
        x.f_mul(&std)?.f_add(&mean)
    }

    /// Mean and std as `[1, C, 1, 1]` float tensors on `x`'s device.
    fn broadcast_over(&self, x: &Tensor) -> Result<(Tensor, Tensor), TchError> {
        let c = x.size().get(1).copied().unwrap_or(1);
        let (mean, std) = self.expanded(c);
        let as_tensor = |v: &[f64]| -> Result<Tensor, TchError> {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::f_from_slice(&v)?
                .f_view([1, c, 1, 1])?
                .f_to_device(x.device())
        };
        Ok((as_tensor(&mean)?, as_tensor(&std)?))
    }

    /// `x` (bytes as float, `[N, C, H, W]`) normalised in place:
    /// `x / (255 std[c]) − mean[c] / std[c]`, channel by channel.
    pub fn apply255_(&self, x: &mut Tensor) -> Result<(), TchError> {
        if self.is_uniform() {
            let (mean, std) = self.of(0);
            let _ = x.f_mul_scalar_(1.0 / (255.0 * std))?;
            let _ = x.f_sub_scalar_(mean / std)?;
            return Ok(());
        }
        let channels = x.size().get(1).copied().unwrap_or(1);
        for c in 0..channels {
            let (mean, std) = self.of(c as usize);
            let mut part = x.f_narrow(1, c, 1)?;
            let _ = part.f_mul_scalar_(1.0 / (255.0 * std))?;
            let _ = part.f_sub_scalar_(mean / std)?;
        }
        Ok(())
    }

    /// `(x − 0.1307) / 0.3081`, or per channel `(x − [a, b, c]) / [d, e, f]`.
    pub fn formula(&self, x: &str) -> String {
        let list = |v: &[f64]| {
            let v: Vec<String> = v.iter().map(f64::to_string).collect();
            format!("[{}]", v.join(", "))
        };
        if self.is_uniform() {
            let (m, s) = self.of(0);
            format!("({x} - {m}) / {s}")
        } else {
            format!("({x} - {}) / {}", list(self.mean()), list(self.std()))
        }
    }
}

/// One `[mean, std]` pair for every channel (as older cards hold it).
impl From<[f64; 2]> for Normalisation {
    fn from([mean, std]: [f64; 2]) -> Self {
        Normalisation::uniform(mean, std)
    }
}

/// `normalisation[0]` and `[1]`: the first channel's mean and std (what a
/// one-pair display shows; [`Normalisation::mean`] and `std` have them all).
impl std::ops::Index<usize> for Normalisation {
    type Output = f64;
    fn index(&self, i: usize) -> &f64 {
        if i == 0 {
            &self.mean[0]
        } else {
            &self.std[0]
        }
    }
}

/// Mean and standard deviation of `value/255` from a histogram. A constant
/// image set (std 0) gets std 1, so normalisation never divides by zero.
pub fn mean_std(hist: &[u64; 256]) -> [f64; 2] {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return [0.0, 1.0];
    }
    let n = n as f64;
    let mean = hist
        .iter()
        .enumerate()
        .map(|(v, &c)| v as f64 / 255.0 * c as f64)
        .sum::<f64>()
        / n;
    let var = hist
        .iter()
        .enumerate()
        .map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    [mean, if std > 1e-12 { std } else { 1.0 }]
}

#[derive(Serialize, Deserialize)]
struct PerChannel {
    mean: Vec<f64>,
    std: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    /// Older builds: one `[mean, std]` for every channel.
    Pair([f64; 2]),
    PerChannel(PerChannel),
}

impl Serialize for Normalisation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PerChannel {
            mean: self.mean().to_vec(),
            std: self.std().to_vec(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Normalisation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Pair([mean, std]) => Ok(Normalisation::uniform(mean, std)),
            Stored::PerChannel(p) => Normalisation::per_channel(&p.mean, &p.std).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "normalisation: mean and std need the same number of values, 1 to \
                     {MAX_CHANNELS} (got {} and {})",
                    p.mean.len(),
                    p.std.len()
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn old_pairs_and_per_channel_values_read_back() {
        let old: Normalisation = serde_json::from_str("[0.13, 0.31]").unwrap();
        assert_eq!(old, Normalisation::uniform(0.13, 0.31));
        assert_eq!(old.of(2), (0.13, 0.31), "one pair applies to every channel");
        let rgb = Normalisation::per_channel(&[0.1, 0.2, 0.3], &[0.4, 0.5, 0.6]).unwrap();
        let text = serde_json::to_string(&rgb).unwrap();
        assert_eq!(text, r#"{"mean":[0.1,0.2,0.3],"std":[0.4,0.5,0.6]}"#);
        assert_eq!(serde_json::from_str::<Normalisation>(&text).unwrap(), rgb);
        let bad = serde_json::from_str::<Normalisation>(r#"{"mean":[0.1],"std":[]}"#);
        assert!(bad.unwrap_err().to_string().contains("same number"));
        assert!(rgb.fits(3) && !rgb.fits(1) && old.fits(3));
    }

    #[test]
    fn per_channel_application_matches_the_formula() {
        let rgb = Normalisation::per_channel(&[0.1, 0.5, 0.9], &[0.2, 0.25, 0.5]).unwrap();
        let bytes = Tensor::from_slice(&[0u8, 51, 255]).view([1, 3, 1, 1]);
        let mut x = bytes.to_kind(Kind::Float);
        rgb.apply255_(&mut x).unwrap();
        let want = [(0.0 - 0.1) / 0.2, (0.2 - 0.5) / 0.25, (1.0 - 0.9) / 0.5];
        let got = Vec::<f32>::try_from(x.view([-1])).unwrap();
        let from01 = rgb
            .apply01(&(bytes.to_kind(Kind::Float) / 255.0).to_device(Device::Cpu))
            .unwrap();
        let got01 = Vec::<f32>::try_from(from01.view([-1])).unwrap();
        for c in 0..3 {
            assert!((f64::from(got[c]) - want[c]).abs() < 1e-5, "{got:?}");
            assert!((f64::from(got01[c]) - want[c]).abs() < 1e-5, "{got01:?}");
        }
        let back = Vec::<f32>::try_from(rgb.to01(&x).unwrap().view([-1])).unwrap();
        for (c, v) in [0.0f32, 0.2, 1.0].iter().enumerate() {
            assert!((back[c] - v).abs() < 1e-6, "{back:?}");
        }
    }

    #[test]
    fn histograms_give_each_channel_its_own_statistics() {
        let mut dark = [0u64; 256];
        dark[0] = 3;
        dark[255] = 1;
        let mut flat = [0u64; 256];
        flat[128] = 4;
        let n = Normalisation::from_histograms(&[dark, flat]);
        assert_eq!(n.mean().len(), 2);
        assert!((n.mean()[0] - 0.25).abs() < 1e-12);
        assert!((n.std()[0] - 0.1875f64.sqrt()).abs() < 1e-12);
        assert_eq!(
            n.of(1),
            (128.0 / 255.0, 1.0),
            "a constant channel gets std 1"
        );
    }
}
