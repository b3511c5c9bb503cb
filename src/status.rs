//! `trainerd status`: what the state dir says, as a table or JSON.

use std::path::Path;

use serde_json::{json, Value};

use crate::pipeline::promote::read_card;
use crate::telemetry::heartbeat;

/// Collects the state dir's summary as JSON.
pub fn collect(state_dir: &Path) -> Value {
    let beat = heartbeat::read(state_dir);
    let card = read_card(state_dir);
    json!({
        "state_dir": state_dir.display().to_string(),
        "heartbeat": beat,
        "best": card.map(|c| json!({
            "trial": c.trial, "preset": c.preset, "val_accuracy": c.val_accuracy,
            "test_accuracy": c.test_accuracy, "created_at": c.created_at,
        })),
    })
}

pub fn print(state_dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let v = collect(state_dir);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("state dir   {}", state_dir.display());
        match v["heartbeat"].as_object() {
            Some(h) => println!(
                "step        {} (pid {}, training {})",
                h["step"], h["pid"], h["training"]
            ),
            None => println!("step        (no heartbeat)"),
        }
        match v["best"].as_object() {
            Some(b) => println!(
                "best        trial {} {}: val {:.4} test {:.4}",
                b["trial"],
                b["preset"],
                b["val_accuracy"].as_f64().unwrap_or(0.0),
                b["test_accuracy"].as_f64().unwrap_or(0.0)
            ),
            None => println!("best        (none yet)"),
        }
    }
    Ok(())
}
