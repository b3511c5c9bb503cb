//! SVG plotting primitives: an element writer with escaping, linear scales,
//! "nice" axis ticks, tick labels and a categorical palette.

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Ten distinguishable colours (trial i gets `PALETTE[i % 10]`).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Maps the domain `[d0, d1]` linearly onto the range `[r0, r1]`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Scale {
        Scale {
            d0: domain.0,
            d1: domain.1,
            r0: range.0,
            r1: range.1,
        }
    }
    pub fn at(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span == 0.0 {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }
}

/// The step of about `n` ticks over `[lo, hi]`: 1, 2 or 5 times a power of ten.
pub fn tick_step(lo: f64, hi: f64, n: usize) -> f64 {
    let span = (hi - lo).abs();
    if span == 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    mult * mag
}

/// Ticks: multiples of [`tick_step`] within `[lo, hi]`.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let step = tick_step(lo, hi, n);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // k * 0.2 is 0.6000000000000001; k * 2 / 10 is 0.6: divide by a power of ten.
    let inv = 10f64.powi((-step.log10().floor()).max(0.0) as i32);
    let m = (step * inv).round();
    (first..=last).map(|k| k as f64 * m / inv).collect()
}

/// `[lo, hi]` widened outwards to whole tick steps (a tidy axis range).
pub fn nice_range(lo: f64, hi: f64, n: usize) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let (lo, hi) = if hi - lo < 1e-12 {
        (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3))
    } else {
        (lo, hi)
    };
    // Widening can change the step; repeat until the ends are ticks of the
    // step the axis will draw.
    let (mut a, mut b) = (lo, hi);
    for _ in 0..4 {
        let step = tick_step(a, b, n);
        let next = ((lo / step).floor() * step, (hi / step).ceil() * step);
        if next == (a, b) {
            break;
        }
        (a, b) = next;
    }
    (a, b)
}

/// A tick label with as many decimals as the step needs.
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().max(0.0) as usize
    };
    // Normalises -0.0 (which would print as "-0").
    let v = if v == 0.0 { 0.0 } else { v };
    format!("{v:.decimals$}")
}

/// An SVG document being written.
pub struct Svg {
    out: String,
}

impl Svg {
    /// A `width` x `height` drawing; `label` becomes its accessible name.
    pub fn new(width: f64, height: f64, label: &str) -> Svg {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{}" font-family="system-ui, sans-serif">"#,
            esc(label)
        );
        Svg { out }
    }
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, width: f64) {
        let _ = write!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}"/>"#
        );
    }
    /// A polyline; `dash` like "6 3" (empty: solid).
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, dash: &str) {
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = write!(
            self.out,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"{dash}/>"#,
            pts.join(" ")
        );
    }
    pub fn circle(&mut self, (x, y): (f64, f64), r: f64, fill: &str) {
        let _ = write!(
            self.out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"/>"#
        );
    }
    /// A rectangle; `title` (if any) shows as a tooltip.
    pub fn rect(&mut self, (x, y): (f64, f64), (w, h): (f64, f64), fill: &str, title: &str) {
        let _ = write!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}">"#,
            w.max(0.0),
            h.max(0.0)
        );
        if !title.is_empty() {
            let _ = write!(self.out, "<title>{}</title>", esc(title));
        }
        self.out.push_str("</rect>");
    }
    /// Text; `anchor` is start, middle or end; `extra` more attributes.
    pub fn text(&mut self, (x, y): (f64, f64), s: &str, size: f64, anchor: &str, extra: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" {extra}>{}</text>"#,
            esc(s)
        );
    }
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let t = ticks(0.913, 0.987, 5);
        assert!(t.iter().all(|v| (0.913..=0.987).contains(v)), "{t:?}");
        assert_eq!(tick_step(0.913, 0.987, 5), 0.01);
        assert_eq!(nice_range(0.913, 0.987, 5), (0.9, 1.0));
        assert!(nice_range(3.0, 3.0, 5).0 < 3.0);
        // The ends of the range are ticks (the axis is labelled at both ends).
        for (lo, hi) in [(0.11, 0.85), (0.0213, 0.777), (2.5, 3.1), (0.912, 0.9912)] {
            let (a, b) = nice_range(lo, hi, 5);
            let t = ticks(a, b, 5);
            assert!(a <= lo && b >= hi, "{lo}..{hi} -> {a}..{b}");
            let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
            assert!(
                close(t[0], a) && close(*t.last().unwrap(), b),
                "{a}..{b}: {t:?}"
            );
        }
        assert_eq!(tick_label(0.98, 0.02), "0.98");
        assert_eq!(tick_label(12.0, 5.0), "12");
        assert_eq!(tick_label(-0.0, 0.5), "0.0");
    }

    #[test]
    fn scale_maps_and_inverts_ranges() {
        let s = Scale::new((0.0, 10.0), (300.0, 100.0));
        assert_eq!(s.at(0.0), 300.0);
        assert_eq!(s.at(5.0), 200.0);
        assert_eq!(Scale::new((1.0, 1.0), (0.0, 10.0)).at(1.0), 5.0);
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new(10.0, 10.0, "a<b");
        svg.text((1.0, 1.0), "x & <y>", 10.0, "start", "");
        let s = svg.finish();
        assert!(s.contains("x &amp; &lt;y&gt;") && s.contains(r#"aria-label="a&lt;b""#));
        assert!(s.ends_with("</svg>"));
    }
}
