//! Property tests of the input readers (IDX parser, PNG reader): arbitrary
//! bytes and mutations of valid files never panic and never allocate beyond
//! the limit they are given. An allocator that tracks each thread's peak of
//! live bytes measures the second part.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;

mod common;

use common::synth::idx_bytes;
use proptest::prelude::*;
use trainerd::data::idx::{self, Stream};
use trainerd::predict::read_png;

/// Counts live bytes per thread and keeps their peak.
struct Tracking;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards to the system allocator; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result with the most bytes it held at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

/// What the IDX reader may use: its limit, plus the decoder's own state
/// (gzip's window and tables) and the header.
const IDX_LIMIT: u64 = 64 << 10;
const IDX_SLACK: usize = 256 << 10;
/// The PNG reader: a 28x28 image, the decoder's allowance (4 MiB) and slack.
const PNG_BOUND: usize = 5 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Parses `content` under the limit; checks the bound and what an accepted
/// file must satisfy.
fn check_idx(content: &[u8]) {
    let (result, peak) = peak_of(|| idx::parse(Path::new("f"), content, IDX_LIMIT));
    assert!(
        peak <= IDX_LIMIT as usize + IDX_SLACK,
        "held {peak} bytes parsing {} bytes",
        content.len()
    );
    match result {
        Ok(file) => {
            let declared: usize = file.dims().iter().product();
            assert_eq!(file.body().len(), declared);
            assert!(declared as u64 <= IDX_LIMIT);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("f: "), "names the file: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }
}

/// A valid IDX file: rank 1 to 3, small dimensions, arbitrary data.
fn valid_idx() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1usize..12, 1..=3).prop_flat_map(|dims| {
        let n: usize = dims.iter().product();
        prop::collection::vec(any::<u8>(), n).prop_map(move |data| idx_bytes(&dims, &data))
    })
}

/// One way to damage a file.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        xor: u8,
    },
    Truncate {
        at: usize,
    },
    Append(Vec<u8>),
    /// Overwrite 4 bytes (a dimension, when in the header) with a big-endian value.
    Word {
        at: usize,
        value: u32,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        (0usize..16, any::<u32>()).prop_map(|(at, value)| Mutation::Word { at, value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Flip { at, xor } => {
            let i = at % bytes.len();
            bytes[i] ^= xor;
        }
        Mutation::Truncate { at } => bytes.truncate(at % bytes.len()),
        Mutation::Append(more) => bytes.extend(more),
        Mutation::Word { at, value } => {
            for (k, b) in value.to_be_bytes().into_iter().enumerate() {
                if let Some(x) = bytes.get_mut(at + k) {
                    *x = b;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn idx_arbitrary_bytes_never_panic_or_overallocate(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        gz in any::<bool>(),
    ) {
        let content = if gz { gzip(&bytes) } else { bytes };
        check_idx(&content);
    }

    #[test]
    fn idx_headers_with_any_dimensions_are_checked_before_allocating(
        rank in 0u8..8,
        dims in prop::collection::vec(any::<u32>(), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..64),
        gz in any::<bool>(),
    ) {
        let mut content = vec![0, 0, 0x08, rank];
        for d in dims.iter().take(usize::from(rank)) {
            content.extend(d.to_be_bytes());
        }
        content.extend(body);
        check_idx(&if gz { gzip(&content) } else { content });
    }

    #[test]
    fn idx_mutated_files_never_panic_or_overallocate(
        file in valid_idx(),
        mutations in prop::collection::vec(mutation(), 0..4),
        gz_before in any::<bool>(),
    ) {
        // Damage the content, or the gzip stream around it.
        let mut content = file.clone();
        if gz_before {
            content = gzip(&content);
        }
        for m in &mutations {
            apply(&mut content, m);
        }
        check_idx(&content);
        if mutations.is_empty() {
            let parsed = idx::parse(Path::new("f"), &content, IDX_LIMIT).unwrap();
            prop_assert_eq!(parsed.bytes(), &file[..]);
        }
    }

    #[test]
    fn idx_streams_in_pieces_give_the_whole_data(
        file in valid_idx(),
        pieces in prop::collection::vec(1usize..50, 1..20),
        gz in any::<bool>(),
    ) {
        let content = if gz { gzip(&file) } else { file.clone() };
        let mut s = Stream::new(Path::new("f"), &content[..], None).unwrap();
        let body_len = s.header().body_len as usize;
        let mut got = Vec::new();
        for p in pieces.iter().cycle() {
            let n = (*p).min(body_len - got.len());
            if n == 0 {
                break;
            }
            let mut buf = vec![0u8; n];
            s.read_data(&mut buf).unwrap();
            got.extend(buf);
        }
        s.finish().unwrap();
        prop_assert_eq!(&got[..], &file[file.len() - body_len..]);
    }
}

/// A PNG of `w × h` pixels of the given colour type (8-bit), from `seed`.
fn png_bytes(w: u32, h: u32, color: png::ColorType, seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let n = (w * h) as usize * color.samples();
    let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
    enc.write_header().unwrap().write_image_data(&data).unwrap();
    out
}

fn color() -> impl Strategy<Value = png::ColorType> {
    prop_oneof![
        Just(png::ColorType::Grayscale),
        Just(png::ColorType::GrayscaleAlpha),
        Just(png::ColorType::Rgb),
        Just(png::ColorType::Rgba),
    ]
}

/// Reads `content` as a 28x28 PNG; checks the bound and the result's shape.
fn check_png(content: &[u8]) {
    let (result, peak) = peak_of(|| read_png(Path::new("p.png"), content, (28, 28)));
    assert!(
        peak <= PNG_BOUND,
        "held {peak} bytes reading {} bytes",
        content.len()
    );
    match result {
        Ok(pixels) => assert_eq!(pixels.len(), 28 * 28),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("p.png: "), "names the file: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn png_arbitrary_bytes_never_panic_or_overallocate(
        tail in prop::collection::vec(any::<u8>(), 0..512),
        with_magic in any::<bool>(),
    ) {
        let mut content = if with_magic { b"\x89PNG\r\n\x1a\n".to_vec() } else { Vec::new() };
        content.extend(tail);
        check_png(&content);
    }

    #[test]
    fn png_mutated_files_never_panic_or_overallocate(
        (w, h) in prop_oneof![Just((28u32, 28u32)), (1u32..64, 1u32..64)],
        color in color(),
        seed in any::<u8>(),
        mutations in prop::collection::vec(mutation(), 0..4),
        huge in prop::option::of((1u32 << 14.., 1u32 << 14..)),
    ) {
        let mut content = png_bytes(w, h, color, seed);
        if let Some((hw, hh)) = huge {
            // An IHDR declaring a huge image (its CRC then wrong, too).
            content[16..20].copy_from_slice(&hw.to_be_bytes());
            content[20..24].copy_from_slice(&hh.to_be_bytes());
        }
        for m in &mutations {
            apply(&mut content, m);
        }
        check_png(&content);
        if mutations.is_empty() && huge.is_none() && (w, h) == (28, 28) {
            prop_assert!(read_png(Path::new("p.png"), &content[..], (28, 28)).is_ok());
        }
    }
}

#[test]
fn the_allocator_sees_big_allocations() {
    let (v, peak) = peak_of(|| vec![1u8; 10 << 20]);
    assert!(peak >= 10 << 20, "{peak}");
    drop(v);
}
