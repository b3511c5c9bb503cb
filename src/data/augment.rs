//! Random-shift augmentation of a batch, vectorised, drawn from libtorch's global RNG.
//!
//! Each image moves by its own integer offset in `[-s, s]` rows and columns;
//! pixels that move in from outside take the image's background value (each
//! channel's minimum, i.e. black for MNIST-style data, whatever the
//! normalisation: with one mean and std per channel, black differs per channel). The
//! offsets come from libtorch's generator, which the trainer seeds per step,
//! so a resumed step draws the same shifts.

use tch::{Device, Kind, Tensor};

/// Shifts each image of `images` (`[B, C, H, W]`) by an independent random
/// offset in `[-max_shift, max_shift]` in y and x. `max_shift <= 0`, or a
/// tensor that is not 4-D, comes back unchanged (and draws nothing).
pub fn augment_shift(images: &Tensor, max_shift: i64) -> Tensor {
    let size = images.size();
    if max_shift <= 0 || size.len() != 4 || size[0] == 0 {
        return images.shallow_clone();
    }
    let shifts = draw_shifts(size[0], max_shift, images.device());
    shift_padded(images, &shifts, max_shift)
}

/// The offsets [`augment_shift`] draws for `n` images: int64 `[n, 2]`, `(dy, dx)`.
pub fn draw_shifts(n: i64, max_shift: i64, device: Device) -> Tensor {
    Tensor::randint_low(-max_shift, max_shift + 1, [n, 2], (Kind::Int64, device))
}

/// Moves image `b` of `images` (`[B, C, H, W]`) by `shifts[b] = (dy, dx)`:
/// the pixel at `(y, x)` lands at `(y + dy, x + dx)`; uncovered pixels take
/// the image's minimum, channel by channel. `shifts` is int64 `[B, 2]` on the images' device.
pub fn shift_images(images: &Tensor, shifts: &Tensor) -> Tensor {
    let pad = shifts.abs().max().int64_value(&[]);
    shift_padded(images, shifts, pad)
}

/// [`shift_images`] with the frame width given (at least the largest offset),
/// so the training loop never reads a value back from the device.
fn shift_padded(images: &Tensor, shifts: &Tensor, pad: i64) -> Tensor {
    let n = images.size()[0];
    let all = Tensor::arange(n, (Kind::Int64, images.device()));
    shifted_windows(&pad_with_background(images, pad), &all, shifts, pad)
}

/// Every image of `images` (`[N, C, H, W]`) inside a frame of its background
/// (each channel's minimum) `pad` pixels wide: `[N, C, H + 2 pad, W + 2 pad]`. The
/// trainer pads the training set once per trial and reads shifted batches
/// from it with [`shifted_batch`].
pub fn pad_with_background(images: &Tensor, pad: i64) -> Tensor {
    let [n, c, h, w] = images.size()[..] else {
        return images.shallow_clone();
    };
    let background = images.amin([2, 3], true); // [N, C, 1, 1]
    let padded = background
        .expand([n, c, h + 2 * pad, w + 2 * pad], false)
        .contiguous();
    padded.narrow(2, pad, h).narrow(3, pad, w).copy_(images);
    padded
}

/// The batch `idx` of the images `padded` was made from
/// ([`pad_with_background`] with `pad >= max_shift`), each shifted by a fresh
/// draw: the same values as `augment_shift(&images.index_select(0, idx),
/// max_shift)` with the same generator state, gathered in one kernel instead
/// of a select, a pad and a gather per step.
pub fn shifted_batch(padded: &Tensor, idx: &Tensor, max_shift: i64, pad: i64) -> Tensor {
    let shifts = draw_shifts(idx.size()[0], max_shift, padded.device());
    shifted_windows(padded, idx, &shifts, pad)
}

/// A padded copy of the training set larger than this is not made; batches
/// are then padded one by one (the same values, more work per step).
pub const PAD_ONCE_LIMIT_BYTES: i64 = 1 << 30;

/// Where the trainer's batches come from: the images as they are, or shifted
/// by a fresh random draw per image, read from a copy padded once (up to
/// [`PAD_ONCE_LIMIT_BYTES`]) or padded per batch. Both ways give the same values.
pub enum BatchSource<'a> {
    Plain(&'a Tensor),
    PaddedOnce { padded: Tensor, max_shift: i64 },
    PerBatch { images: &'a Tensor, max_shift: i64 },
}

impl<'a> BatchSource<'a> {
    pub fn new(images: &'a Tensor, max_shift: i64) -> BatchSource<'a> {
        let size = images.size();
        if max_shift <= 0 || size.len() != 4 {
            return BatchSource::Plain(images);
        }
        let padded_bytes = size[0]
            * size[1]
            * (size[2] + 2 * max_shift)
            * (size[3] + 2 * max_shift)
            * images.kind().elt_size_in_bytes() as i64;
        if padded_bytes <= PAD_ONCE_LIMIT_BYTES {
            BatchSource::PaddedOnce {
                padded: pad_with_background(images, max_shift),
                max_shift,
            }
        } else {
            BatchSource::PerBatch { images, max_shift }
        }
    }

    /// The images at `idx` (int64, on the images' device), augmented if configured.
    pub fn batch(&self, idx: &Tensor) -> Tensor {
        match self {
            BatchSource::Plain(images) => images.index_select(0, idx),
            BatchSource::PaddedOnce { padded, max_shift } => {
                shifted_batch(padded, idx, *max_shift, *max_shift)
            }
            BatchSource::PerBatch { images, max_shift } => {
                augment_shift(&images.index_select(0, idx), *max_shift)
            }
        }
    }
}

/// Reads, for each `b`, the window of padded image `idx[b]` that shows it
/// moved by `shifts[b]` (one indexing kernel).
fn shifted_windows(padded: &Tensor, idx: &Tensor, shifts: &Tensor, pad: i64) -> Tensor {
    let [_, c, ph, pw] = padded.size()[..] else {
        return padded.shallow_clone();
    };
    let (h, w, b) = (ph - 2 * pad, pw - 2 * pad, idx.size()[0]);
    let dev = padded.device();
    let dy = shifts.select(1, 0).view([b, 1, 1, 1]);
    let dx = shifts.select(1, 1).view([b, 1, 1, 1]);
    let arange = |n: i64| Tensor::arange(n, (Kind::Int64, dev));
    // Output pixel (y, x) reads input (y - dy, x - dx), i.e. padded (y - dy + pad, x - dx + pad).
    let rows = arange(h).view([1, 1, h, 1]) - dy + pad; // [B, 1, H, 1]
    let cols = arange(w).view([1, 1, 1, w]) - dx + pad; // [B, 1, 1, W]
    let batch = idx.view([b, 1, 1, 1]);
    let channel = arange(c).view([1, c, 1, 1]);
    padded.index(&[Some(batch), Some(channel), Some(rows), Some(cols)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images `h × w` of value `bg`, each with one pixel of 5.0 at `at[i]`.
    fn dots(at: &[(i64, i64)], h: i64, w: i64, bg: f64) -> Tensor {
        let x = Tensor::full([at.len() as i64, 1, h, w], bg, (Kind::Float, Device::Cpu));
        for (i, &(y, xx)) in at.iter().enumerate() {
            let _ = x.get(i as i64).get(0).get(y).get(xx).fill_(5.0);
        }
        x
    }

    /// Where the bright pixel of each image is, or None when it left the frame.
    fn find_dots(x: &Tensor) -> Vec<Option<(i64, i64)>> {
        let (n, w) = (x.size()[0], x.size()[3]);
        (0..n)
            .map(|i| {
                let img = x.get(i).flatten(0, -1);
                let k = img.argmax(0, false).int64_value(&[]);
                (img.double_value(&[k]) == 5.0).then_some((k / w, k % w))
            })
            .collect()
    }

    #[test]
    fn zero_shift_is_the_identity() {
        tch::manual_seed(1);
        let x = Tensor::randn([6, 2, 5, 7], (Kind::Float, Device::Cpu));
        assert!(augment_shift(&x, 0).equal(&x));
        let zeros = Tensor::zeros([6, 2], (Kind::Int64, Device::Cpu));
        assert!(shift_images(&x, &zeros).equal(&x));
    }

    #[test]
    fn a_bright_pixel_moves_by_the_drawn_offset() {
        let (h, w, s) = (9, 11, 3);
        let at: Vec<(i64, i64)> = (0..40).map(|i| (3 + i % 3, 4 + i % 4)).collect();
        let x = dots(&at, h, w, -0.4);
        let draw = || {
            tch::manual_seed(77);
            let out = augment_shift(&x, s);
            tch::manual_seed(77);
            let shifts = draw_shifts(40, s, Device::Cpu).flatten(0, -1);
            (out, Vec::<i64>::try_from(shifts).unwrap())
        };
        // Every dot stays inside a 9×11 frame for these positions and s = 3.
        let moved_by = |out: &Tensor, shifts: &[i64]| {
            let found = find_dots(out);
            at.iter()
                .enumerate()
                .all(|(i, &(y, xx))| found[i] == Some((y + shifts[2 * i], xx + shifts[2 * i + 1])))
        };
        // The generator is global: retried as in `same_draws` when another
        // test thread drew between the seed and the draw.
        let (out, shifts) = (0..5)
            .map(|_| draw())
            .find(|(out, shifts)| moved_by(out, shifts))
            .expect("every dot moves by its drawn offset");
        let mut distinct = std::collections::HashSet::new();
        for i in 0..at.len() {
            let (dy, dx) = (shifts[2 * i], shifts[2 * i + 1]);
            assert!((-s..=s).contains(&dy) && (-s..=s).contains(&dx));
            distinct.insert((dy, dx));
        }
        assert!(distinct.len() > 5, "offsets vary: {distinct:?}");
        // Everything else is background.
        let bright = out.eq(5.0).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(bright, 40);
        assert_eq!(
            out.ne(5.0)
                .logical_and(&out.ne(-0.4))
                .sum(Kind::Int64)
                .int64_value(&[]),
            0
        );
    }

    #[test]
    fn pixels_shifted_out_vanish_and_background_fills_in() {
        let x = dots(&[(0, 0), (4, 6)], 5, 7, -0.4);
        let shifts = Tensor::from_slice(&[-1i64, 0, 0, 1]).view([2, 2]);
        let out = shift_images(&x, &shifts);
        assert_eq!(find_dots(&out), [None, None]);
        assert!(out.eq(-0.4).all().int64_value(&[]) == 1);
        let shifts = Tensor::from_slice(&[2i64, 3, -4, -6]).view([2, 2]);
        assert_eq!(
            find_dots(&shift_images(&x, &shifts)),
            [Some((2, 3)), Some((0, 0))]
        );
    }

    /// Runs `draws` (seeds, then draws from libtorch's generator and
    /// compares) up to five times: the generator is global to the process,
    /// and another test thread drawing from it between the seed and the draw
    /// (a model's random init) changes the numbers. An implementation that
    /// really differs fails every try.
    fn same_draws(what: &str, draws: impl Fn() -> bool) {
        assert!((0..5).any(|_| draws()), "{what}: different values");
    }

    #[test]
    fn a_batch_from_the_padded_set_equals_shifting_the_selected_images() {
        tch::manual_seed(3);
        let images = Tensor::randn([20, 2, 6, 5], (Kind::Float, Device::Cpu));
        let idx = Tensor::from_slice(&[7i64, 0, 19, 7, 3]);
        let padded = pad_with_background(&images, 2);
        assert_eq!(padded.size(), [20, 2, 10, 9]);
        let slow = || {
            tch::manual_seed(11);
            augment_shift(&images.index_select(0, &idx), 2)
        };
        let seeded = |f: &dyn Fn() -> Tensor| {
            tch::manual_seed(11);
            f()
        };
        same_draws("padded once", || {
            seeded(&|| shifted_batch(&padded, &idx, 2, 2)).equal(&slow())
        });
        // A frame wider than the largest shift reads the same windows.
        let wide = pad_with_background(&images, 4);
        same_draws("wider frame", || {
            seeded(&|| shifted_batch(&wide, &idx, 2, 4)).equal(&slow())
        });
        // Both batch sources give the same values.
        let once = BatchSource::new(&images, 2);
        assert!(matches!(once, BatchSource::PaddedOnce { .. }));
        same_draws("BatchSource::PaddedOnce", || {
            seeded(&|| once.batch(&idx)).equal(&slow())
        });
        let per_batch = BatchSource::PerBatch {
            images: &images,
            max_shift: 2,
        };
        same_draws("BatchSource::PerBatch", || {
            seeded(&|| per_batch.batch(&idx)).equal(&slow())
        });
        assert!(BatchSource::new(&images, 0)
            .batch(&idx)
            .equal(&images.index_select(0, &idx)));
    }

    #[test]
    fn channels_move_together() {
        let x = Tensor::arange(2 * 3 * 4 * 4, (Kind::Float, Device::Cpu)).view([2, 3, 4, 4]);
        let shifts = Tensor::from_slice(&[1i64, -1, 0, 2]).view([2, 2]);
        let out = shift_images(&x, &shifts);
        // Image 0, every channel: out[y][x] = in[y-1][x+1] where inside.
        for ch in 0..3 {
            let a = out.get(0).get(ch).narrow(0, 1, 3).narrow(1, 0, 3);
            let b = x.get(0).get(ch).narrow(0, 0, 3).narrow(1, 1, 3);
            assert!(a.equal(&b));
        }
        // Uncovered pixels take their channel's minimum (16 ch for image 0):
        // with per-channel normalisation each channel's black differs.
        for ch in 0..3 {
            assert_eq!(out.get(0).get(ch).double_value(&[0, 0]), 16.0 * ch as f64);
        }
    }
}
