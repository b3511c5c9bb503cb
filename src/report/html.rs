//! The report page: summary cards, the champion's description, training
//! curves, per-class accuracy, the confusion matrix and the trial table,
//! as one self-contained HTML file (inline CSS and SVG, no scripts).

use std::fmt::Write as _;

use super::charts::{bar_chart, heatmap, legend, line_chart, LineChart, Series};
use super::svg::{color, esc};
use super::{describe_arch, describe_recipe, ReportInputs};

const CSS: &str = r#"
body{margin:0;background:#f6f7f9;color:#1d2330;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:#5b6472;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:10px 14px}
.card .k{color:#5b6472;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px;word-break:break-all}
.card .v.small{font-size:14px;font-family:ui-monospace,monospace;font-weight:500}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:8px;overflow-x:auto;text-align:center}
figure svg{max-width:100%;height:auto}
figcaption{color:#5b6472;font-size:12px;padding:2px 6px 4px;text-align:left}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e1e4e8;border-radius:8px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#fafbfc;font-weight:600;font-size:12px;color:#3b4350}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.id{white-space:nowrap}
tr.champion td{background:#eef6ff}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.kv th{width:180px}.mono{font-family:ui-monospace,monospace;font-size:12px}
.tag{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;background:#eef0f3}
.tag.finished{background:#e1f5e6}.tag.pruned{background:#fdf0d5}.tag.failed{background:#fde2e1}
footer{color:#8a93a0;font-size:12px;margin-top:28px}
"#;

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("–".into(), pct)
}

/// Training time: tenths of a second under a minute (trials on small data
/// take less than one), else as `format_age`.
fn secs(s: f64) -> String {
    if s < 59.95 {
        format!("{:.1}s", s.max(0.0))
    } else {
        crate::timestamp::format_age(s)
    }
}

fn card(out: &mut String, k: &str, v: &str, small: bool) {
    let class = if small { "v small" } else { "v" };
    let _ = write!(
        out,
        r#"<div class="card"><div class="k">{}</div><div class="{class}">{}</div></div>"#,
        esc(k),
        esc(v)
    );
}

fn curves(inputs: &ReportInputs) -> (String, String, String) {
    let mut loss = Vec::new();
    let mut acc = Vec::new();
    for (i, t) in inputs.trials.iter().enumerate() {
        let pts = |f: fn(&crate::train::EpochRecord) -> f64| {
            t.history
                .iter()
                .map(|h| (f64::from(h.epoch), f(h)))
                .collect::<Vec<_>>()
        };
        loss.push(Series {
            color: color(i),
            dashed: false,
            points: pts(|h| h.train_loss),
        });
        loss.push(Series {
            color: color(i),
            dashed: true,
            points: pts(|h| h.val_loss),
        });
        acc.push(Series {
            color: color(i),
            dashed: false,
            points: pts(|h| h.val_accuracy),
        });
    }
    let loss_svg = line_chart(&LineChart {
        title: "Loss per epoch (solid: training, dashed: validation)",
        x_label: "epoch",
        y_label: "cross-entropy loss",
        series: loss,
        reference: None,
        y_clamp: Some((0.0, f64::MAX)),
    });
    let acc_svg = line_chart(&LineChart {
        title: "Validation accuracy per epoch",
        x_label: "epoch",
        y_label: "validation accuracy",
        series: acc,
        reference: inputs
            .target_accuracy
            .map(|t| (t, format!("target {}", pct(t)))),
        y_clamp: Some((0.0, 1.0)),
    });
    let entries: Vec<(String, &'static str, bool)> = inputs
        .trials
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                format!("trial {} ({})", t.trial, t.spec.preset),
                color(i),
                false,
            )
        })
        .collect();
    (loss_svg, acc_svg, legend(&entries))
}

fn trial_table(out: &mut String, inputs: &ReportInputs) {
    out.push_str("<table><thead><tr><th>trial</th><th>state</th><th>architecture</th><th>recipe</th><th>parameters</th><th>val accuracy</th><th>epochs</th><th>time</th></tr></thead><tbody>");
    for (i, t) in inputs.trials.iter().enumerate() {
        let champion = t.trial == inputs.card.trial;
        let _ = write!(
            out,
            r#"<tr{}><td class="id"><span class="sw" style="background:{}"></span>{}{}</td><td><span class="tag {}">{}</span></td><td>{}<div class="mono">{}</div></td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            if champion { r#" class="champion""# } else { "" },
            color(i),
            t.trial,
            if champion { " ★" } else { "" },
            esc(&t.state),
            esc(&t.state),
            esc(&t.spec.preset),
            esc(&describe_arch(&t.spec.arch)),
            esc(&describe_recipe(&t.spec.recipe)),
            t.parameters.map_or("–".into(), |p| p.to_string()),
            opt_pct(t.val_accuracy),
            t.history.len(),
            secs(t.train_seconds),
        );
    }
    out.push_str("</tbody></table>");
}

/// The whole page.
pub fn page(inputs: &ReportInputs) -> String {
    let c = inputs.card;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>trainerd report: trial {} ({})</title><style>{CSS}</style></head><body><main>"#,
        c.trial,
        esc(&c.preset)
    );
    let _ = write!(
        out,
        "<h1>Model report: trial {} ({})</h1>",
        c.trial,
        esc(&c.preset)
    );
    let mut sub = format!("promoted {}", c.created_at);
    if let Some(study) = inputs.study {
        sub += &format!(" · study {study}");
    }
    if let Some(commit) = inputs.commit {
        sub += &format!(" · commit {commit}");
    }
    let _ = write!(
        out,
        r#"<p class="sub">{}</p><section class="cards">"#,
        esc(&sub)
    );
    let shown = |acc: f64, i: Option<[f64; 2]>| match i {
        Some(_) => crate::model::card::Intervals::shown(acc, i),
        None => pct(acc),
    };
    let iv = &c.intervals;
    card(
        &mut out,
        "validation accuracy",
        &shown(c.val_accuracy, iv.val_interval),
        false,
    );
    card(
        &mut out,
        "test accuracy",
        &shown(c.test_accuracy, iv.test_interval),
        false,
    );
    card(&mut out, "parameters", &c.parameters.to_string(), false);
    card(&mut out, "epochs", &c.epochs_trained.to_string(), false);
    card(&mut out, "training time", &secs(c.train_seconds), false);
    card(
        &mut out,
        "data fingerprint",
        c.data_fingerprint.get(..16).unwrap_or(&c.data_fingerprint),
        true,
    );
    out.push_str("</section><h2>Champion</h2><table class=\"kv\"><tbody>");
    let shape = format!(
        "{} × {} × {}, {} classes",
        c.input_shape[0], c.input_shape[1], c.input_shape[2], c.classes
    );
    for (k, v) in [
        ("architecture", describe_arch(&c.arch)),
        ("recipe", describe_recipe(&c.recipe)),
        ("input", shape),
        (
            "validation loss / test loss",
            format!("{:.4} / {:.4}", c.val_loss, c.test_loss),
        ),
        ("seed", c.seed.to_string()),
        ("normalisation", c.normalisation.formula("pixel / 255")),
        ("data fingerprint", c.data_fingerprint.clone()),
    ] {
        let _ = write!(
            out,
            "<tr><th>{}</th><td class=\"mono\">{}</td></tr>",
            esc(k),
            esc(&v)
        );
    }
    out.push_str("</tbody></table>");

    let (loss, acc, leg) = curves(inputs);
    // Label smoothing puts a floor under the training loss (not the validation loss).
    let smoothing = if inputs
        .trials
        .iter()
        .any(|t| t.spec.recipe.label_smoothing > 0.0)
    {
        "<figcaption>Training loss includes label smoothing where the recipe uses it, so it sits above the validation loss.</figcaption>"
    } else {
        ""
    };
    let _ = write!(
        out,
        r#"<h2>Training curves</h2><div class="grid2"><figure>{loss}{smoothing}</figure><figure>{acc}</figure></div><figure style="margin-top:10px;text-align:left">{leg}</figure>"#
    );
    let labels: Vec<String> = match inputs.class_names {
        Some(names) => names.to_vec(),
        None => (0..c.classes).map(|i| i.to_string()).collect(),
    };
    let bars = bar_chart(
        "Per-class test accuracy",
        &labels,
        &c.per_class_test_accuracy,
        "test accuracy",
    );
    let heat = heatmap("Confusion matrix (test set)", &labels, &c.test_confusion);
    let _ = write!(
        out,
        r#"<h2>Per class</h2><div class="grid2"><figure>{bars}<figcaption>The axis starts near the lowest class so differences show; values are printed on the bars.</figcaption></figure><figure>{heat}<figcaption>Rows: true class; columns: predicted. Blue: share of the row predicted correctly; red: mistakes.</figcaption></figure></div>"#
    );
    let _ = write!(out, "<h2>Trials ({})</h2>", inputs.trials.len());
    trial_table(&mut out, inputs);
    let _ = writeln!(
        out,
        "<footer>Written by trainerd {} when the model was promoted. Validation accuracy is measured on images held out of training; test accuracy on the separate test set, once, for this model only: no trial is chosen by it.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
    );
    out
}
