//! Charts drawn with the [`svg`](super::svg) primitives: multi-series line
//! charts (training curves), bar charts (per-class accuracy) and a heatmap
//! (confusion matrix). Each returns one standalone `<svg>` element.

use super::svg::{color, nice_range, tick_label, tick_step, ticks, Scale, Svg};

/// One line of a line chart.
pub struct Series {
    pub color: &'static str,
    /// Dashed (e.g. validation next to solid training).
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A line chart's content and labels.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// A horizontal reference line (e.g. the target accuracy) and its label.
    pub reference: Option<(f64, String)>,
    /// Clamp the y axis to this interval (accuracies stay in [0, 1]).
    pub y_clamp: Option<(f64, f64)>,
}

const W: f64 = 560.0;
const H: f64 = 330.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;
/// The confusion matrix's side, and the height of it and the bars beside it.
const HEAT_SIDE: f64 = 380.0;
const HEAT_H: f64 = 40.0 + HEAT_SIDE + 46.0;
const GRID: &str = "#e3e3e3";
const AXIS: &str = "#555";

/// Draws the y grid and labels; returns the scale.
fn y_axis(svg: &mut Svg, lo: f64, hi: f64, label: &str, pct: bool, h: f64) -> Scale {
    let y = Scale::new((lo, hi), (h - BOTTOM, TOP));
    let step = tick_step(lo, hi, 5);
    for t in ticks(lo, hi, 5) {
        svg.line((LEFT, y.at(t)), (W - RIGHT, y.at(t)), GRID, 1.0);
        let text = if pct {
            format!("{}%", tick_label(t * 100.0, step * 100.0))
        } else {
            tick_label(t, step)
        };
        svg.text(
            (LEFT - 6.0, y.at(t) + 4.0),
            &text,
            11.0,
            "end",
            r##"fill="#444""##,
        );
    }
    svg.text(
        (14.0, (TOP + H - BOTTOM) / 2.0),
        label,
        12.0,
        "middle",
        &format!(
            r##"fill="#333" transform="rotate(-90 14 {})""##,
            (TOP + H - BOTTOM) / 2.0
        ),
    );
    y
}

fn frame(svg: &mut Svg, title: &str, x_label: &str, h: f64) {
    svg.line((LEFT, h - BOTTOM), (W - RIGHT, h - BOTTOM), AXIS, 1.0);
    svg.line((LEFT, TOP), (LEFT, h - BOTTOM), AXIS, 1.0);
    svg.text((LEFT, 20.0), title, 14.0, "start", r#"font-weight="600""#);
    svg.text(
        ((LEFT + W - RIGHT) / 2.0, h - 8.0),
        x_label,
        12.0,
        "middle",
        r##"fill="#333""##,
    );
}

/// A multi-series line chart with point markers (one-epoch trials show as dots).
pub fn line_chart(c: &LineChart) -> String {
    let mut svg = Svg::new(W, H, c.title);
    let all: Vec<(f64, f64)> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if all.is_empty() {
        frame(&mut svg, c.title, c.x_label, H);
        svg.text(
            (W / 2.0, H / 2.0),
            "no epochs recorded yet",
            13.0,
            "middle",
            r##"fill="#888""##,
        );
        return svg.finish();
    }
    let (mut ylo, mut yhi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if let Some((r, _)) = &c.reference {
        ylo = ylo.min(*r);
        yhi = yhi.max(*r);
    }
    let (mut ylo, mut yhi) = nice_range(ylo, yhi, 5);
    if let Some((lo, hi)) = c.y_clamp {
        (ylo, yhi) = (ylo.max(lo), yhi.min(hi));
    }
    let xmin = all.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let xmax = all.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    // A little air at both ends; a single epoch sits in the middle.
    let pad = if xmax - xmin < 1.0 {
        1.0
    } else {
        (xmax - xmin) * 0.04
    };
    let x = Scale::new((xmin - pad, xmax + pad), (LEFT, W - RIGHT));
    let pct = c.y_clamp == Some((0.0, 1.0));
    let y = y_axis(&mut svg, ylo, yhi, c.y_label, pct, H);
    let xstep = tick_step(xmin, xmax, 8).max(1.0);
    for t in ticks(xmin, xmax.max(xmin + 1.0), 8)
        .into_iter()
        .filter(|t| t.fract() == 0.0 && *t <= xmax)
    {
        svg.line(
            (x.at(t), H - BOTTOM),
            (x.at(t), H - BOTTOM + 4.0),
            AXIS,
            1.0,
        );
        svg.text(
            (x.at(t), H - BOTTOM + 16.0),
            &tick_label(t, xstep),
            11.0,
            "middle",
            r##"fill="#444""##,
        );
    }
    frame(&mut svg, c.title, c.x_label, H);
    if let Some((r, label)) = &c.reference {
        let ry = y.at(*r);
        svg.polyline(&[(LEFT, ry), (W - RIGHT, ry)], "#2a9d3a", 1.2, "4 4");
        svg.text(
            (W - RIGHT - 4.0, ry - 5.0),
            label,
            11.0,
            "end",
            r##"fill="#2a9d3a""##,
        );
    }
    let clip = |v: f64| v.clamp(ylo, yhi);
    for s in &c.series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|&(a, b)| (x.at(a), y.at(clip(b))))
            .collect();
        svg.polyline(&pts, s.color, 2.0, if s.dashed { "6 4" } else { "" });
        for p in &pts {
            svg.circle(*p, if s.dashed { 2.0 } else { 2.8 }, s.color);
        }
    }
    svg.finish()
}

/// A legend as its own small SVG strip: swatch and name per entry.
pub fn legend(entries: &[(String, &'static str, bool)]) -> String {
    let per_row = 4usize;
    let rows = entries.len().div_ceil(per_row).max(1);
    let mut svg = Svg::new(W, 20.0 * rows as f64 + 6.0, "legend");
    for (i, (name, col, dashed)) in entries.iter().enumerate() {
        let x0 = 8.0 + (i % per_row) as f64 * (W / per_row as f64);
        let y0 = 14.0 + (i / per_row) as f64 * 20.0;
        svg.polyline(
            &[(x0, y0 - 4.0), (x0 + 22.0, y0 - 4.0)],
            col,
            2.5,
            if *dashed { "6 4" } else { "" },
        );
        svg.text((x0 + 28.0, y0), name, 11.0, "start", r##"fill="#333""##);
    }
    svg.finish()
}

/// Vertical bars with their values on top; the y axis starts where the
/// data does (labelled), so small differences between classes stay visible.
pub fn bar_chart(title: &str, labels: &[String], values: &[f64], y_label: &str) -> String {
    // As tall as the confusion matrix beside it.
    let h = HEAT_H;
    let mut svg = Svg::new(W, h, title);
    let lo = values.iter().copied().fold(f64::MAX, f64::min);
    let (ylo, _) = nice_range(if lo.is_finite() { lo - 0.01 } else { 0.0 }, 1.0, 5);
    let ylo = ylo.clamp(0.0, 0.99);
    let y = y_axis(&mut svg, ylo, 1.0, y_label, true, h);
    frame(&mut svg, title, "class", h);
    let n = values.len().max(1) as f64;
    let slot = (W - RIGHT - LEFT) / n;
    for (i, (&v, label)) in values.iter().zip(labels).enumerate() {
        let x0 = LEFT + i as f64 * slot + slot * 0.15;
        let top = y.at(v.clamp(ylo, 1.0));
        svg.rect(
            (x0, top),
            (slot * 0.7, h - BOTTOM - top),
            color(0),
            &format!("class {label}: {:.2}%", v * 100.0),
        );
        // Above the bar, or inside its top when it reaches the title's band.
        let (ly, ink) = if top - 4.0 < TOP + 8.0 {
            (top + 13.0, r##"fill="#fff""##)
        } else {
            (top - 4.0, r##"fill="#333""##)
        };
        svg.text(
            (x0 + slot * 0.35, ly),
            &format!("{:.1}", v * 100.0),
            10.0,
            "middle",
            ink,
        );
        svg.text(
            (x0 + slot * 0.35, h - BOTTOM + 16.0),
            label,
            11.0,
            "middle",
            r##"fill="#444""##,
        );
    }
    svg.finish()
}

/// Blends white towards `rgb` by `t` in [0, 1].
fn tint(rgb: (u8, u8, u8), t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let mix = |c: u8| (255.0 - (255.0 - f64::from(c)) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(rgb.0), mix(rgb.1), mix(rgb.2))
}

/// The confusion matrix `m[true][predicted]`: the diagonal in blue (share
/// of the row), mistakes in red (relative to the largest mistake, square-root
/// scaled so rare ones still show), counts in every cell.
pub fn heatmap(title: &str, labels: &[String], m: &[Vec<i64>]) -> String {
    let k = m.len().max(1) as f64;
    let side = HEAT_SIDE;
    let (left, top) = ((W - side) / 2.0 + 12.0, 40.0);
    let cell = side / k;
    // As wide as the other charts, so they line up side by side.
    let mut svg = Svg::new(W, HEAT_H, title);
    svg.text((left, 22.0), title, 14.0, "start", r#"font-weight="600""#);
    let max_off = m
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.iter()
                .enumerate()
                .filter(move |(j, _)| *j != i)
                .map(|(_, &v)| v)
        })
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    for (i, row) in m.iter().enumerate() {
        let total = row.iter().sum::<i64>().max(1) as f64;
        for (j, &v) in row.iter().enumerate() {
            let (fill, dark) = if i == j {
                let t = v as f64 / total;
                (tint((31, 119, 180), t), t > 0.5)
            } else {
                let t = (v as f64 / max_off).sqrt();
                (
                    tint((214, 39, 40), if v == 0 { 0.0 } else { 0.12 + 0.88 * t }),
                    t > 0.6,
                )
            };
            let (x, y) = (left + j as f64 * cell, top + i as f64 * cell);
            let name = |n: usize| labels.get(n).cloned().unwrap_or_else(|| n.to_string());
            svg.rect(
                (x, y),
                (cell - 1.0, cell - 1.0),
                &fill,
                &format!("true {} predicted {}: {v}", name(i), name(j)),
            );
            let ink = if dark {
                r##"fill="#fff""##
            } else {
                r##"fill="#222""##
            };
            svg.text(
                (x + cell / 2.0, y + cell / 2.0 + 4.0),
                &v.to_string(),
                (cell * 0.28).clamp(7.0, 12.0),
                "middle",
                ink,
            );
        }
    }
    for (n, label) in labels.iter().enumerate().take(m.len()) {
        let c = n as f64 * cell + cell / 2.0;
        svg.text(
            (left - 8.0, top + c + 4.0),
            label,
            11.0,
            "end",
            r##"fill="#444""##,
        );
        svg.text(
            (left + c, top + side + 16.0),
            label,
            11.0,
            "middle",
            r##"fill="#444""##,
        );
    }
    svg.text(
        (left + side / 2.0, top + side + 36.0),
        "predicted class",
        12.0,
        "middle",
        r##"fill="#333""##,
    );
    let (mid, lx) = (top + side / 2.0, left - 34.0);
    svg.text(
        (lx, mid),
        "true class",
        12.0,
        "middle",
        &format!(r##"fill="#333" transform="rotate(-90 {lx} {mid})""##),
    );
    svg.finish()
}
