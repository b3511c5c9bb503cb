//! `trainerd models [--json]`: every kept version, newest first, with its
//! validation accuracy and interval, data fingerprint, commit, date, and
//! whether it is the champion (`best/`) or the previous one
//! (`best.previous/`); a damaged version is listed with the file that is
//! wrong. Reads only, so it may run beside a daemon.

use std::path::Path;

use serde_json::{json, Value};

use super::Listed;
use crate::model::card::{Intervals, ModelCard};

/// Prints the versions in `state_dir` as a table or JSON.
pub fn print(state_dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let v = collect(state_dir)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render_table(&v));
    }
    Ok(())
}

/// The versions as `models --json` prints them.
pub fn collect(state_dir: &Path) -> anyhow::Result<Value> {
    let (champion, previous) = super::champions(state_dir);
    let mut listed = super::list(state_dir)?;
    listed.reverse();
    let versions: Vec<Value> = listed.iter().map(|l| row(l, champion, previous)).collect();
    Ok(json!({
        "state_dir": state_dir.display().to_string(),
        "champion": champion,
        "previous": previous,
        "versions": versions,
    }))
}

fn row(l: &Listed, champion: Option<u64>, previous: Option<u64>) -> Value {
    let mut v = json!({
        "version": l.number,
        "champion": champion == Some(l.number),
        "previous": previous == Some(l.number),
        "damaged": l.problem.as_ref().map(|e| e.to_string()),
    });
    if let Some(card) = &l.card {
        add_card(&mut v, card);
    }
    v
}

/// The card's fields a version row shows.
fn add_card(v: &mut Value, c: &ModelCard) {
    let fields = json!({
        "val_accuracy": c.val_accuracy,
        "val_interval": c.intervals.val_interval,
        "val_size": c.val_size,
        "test_accuracy": c.test_accuracy,
        "test_interval": c.intervals.test_interval,
        "data_fingerprint": c.data_fingerprint,
        "commit": c.commit,
        "created_at": c.created_at,
        "study": c.study,
        "trial": c.trial,
        "preset": c.preset,
    });
    if let (Value::Object(row), Value::Object(more)) = (v, fields) {
        row.extend(more);
    }
}

/// The table `trainerd models` prints.
pub fn render_table(v: &Value) -> String {
    let empty = Vec::new();
    let rows = v["versions"].as_array().unwrap_or(&empty);
    if rows.is_empty() {
        let dir = v["state_dir"].as_str().unwrap_or("");
        return format!("no versions kept yet in {dir}/versions\n");
    }
    let mut out = format!(
        "{:>7}  {:<8}  {:<22}  {:<12}  {:<12}  {}\n",
        "version", "role", "val accuracy", "data", "commit", "created"
    );
    for r in rows {
        out += &table_row(r);
        out.push('\n');
    }
    out
}

fn table_row(r: &Value) -> String {
    let role = match (r["champion"] == true, r["previous"] == true) {
        (true, _) => "champion",
        (false, true) => "previous",
        _ => "",
    };
    let short = |key: &str| {
        let s = r[key].as_str().unwrap_or("-");
        s.get(..12).unwrap_or(s).to_string()
    };
    let accuracy = match r["val_accuracy"].as_f64() {
        Some(acc) => {
            let interval = serde_json::from_value(r["val_interval"].clone()).ok();
            Intervals::shown(acc, interval)
        }
        None => "-".into(),
    };
    let mut line = format!(
        "{:>7}  {role:<8}  {accuracy:<22}  {:<12}  {:<12}  {}",
        r["version"].as_u64().unwrap_or(0),
        short("data_fingerprint"),
        short("commit"),
        r["created_at"].as_str().unwrap_or("-")
    );
    if let Some(why) = r["damaged"].as_str() {
        line += &format!("  DAMAGED: {why}");
    }
    line
}
