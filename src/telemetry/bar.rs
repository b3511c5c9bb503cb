//! The progress bar on a terminal: one bar per trial (steps, epoch, loss,
//! validation accuracy, throughput, ETA), with log lines printed above it.
//! Off a terminal there is no bar: the trainer's periodic log lines are the
//! progress report.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::Progress;

/// The bar being drawn, if any: log lines are written around it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active() -> Option<ProgressBar> {
    ACTIVE.lock().ok().and_then(|a| a.clone())
}

fn set_active(bar: Option<ProgressBar>) {
    if let Ok(mut a) = ACTIVE.lock() {
        *a = bar;
    }
}

/// stderr that lifts the progress bar out of the way of each log line
/// (the logging subscriber's writer).
pub struct StderrAroundBar;

impl Write for StderrAroundBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match active() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// For `tracing_subscriber::fmt().with_writer(..)`.
pub fn stderr_writer() -> StderrAroundBar {
    StderrAroundBar
}

/// The text after the bar: epoch, last loss and accuracy, throughput.
pub fn message(epoch: u64, train_loss: f64, val_accuracy: f64, samples_per_sec: u64) -> String {
    let mut parts = vec![format!("epoch {epoch}")];
    if train_loss.is_finite() {
        parts.push(format!("loss {train_loss:.4}"));
    }
    if val_accuracy.is_finite() {
        parts.push(format!("val {:.2}%", val_accuracy * 100.0));
    }
    if samples_per_sec > 0 {
        parts.push(format!("{samples_per_sec} samples/s"));
    }
    parts.join(" · ")
}

/// Starts the bar thread when stderr is a terminal (and logs are for
/// people); returns whether it did. The thread lives as long as the process.
pub fn spawn_if_terminal(progress: Arc<Progress>, human_logs: bool) -> bool {
    if !human_logs || !std::io::stderr().is_terminal() {
        return false;
    }
    std::thread::Builder::new()
        .name("progress-bar".into())
        .spawn(move || draw(&progress))
        .is_ok()
}

fn new_bar(trial: u64, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "trial {prefix} [{bar:30.cyan/blue}] {pos}/{len} steps · eta {eta} · {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(trial.to_string());
    bar
}

fn draw(p: &Progress) {
    // (trial, total steps) of the bar shown, or of the last one finished.
    let mut shown: Option<(u64, u64)> = None;
    let mut bar: Option<ProgressBar> = None;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let total = p.total_steps.load(Ordering::Relaxed);
        let trial = p.trial.load(Ordering::Relaxed);
        let step = p.step.load(Ordering::Relaxed);
        if total == 0 {
            continue;
        }
        if shown != Some((trial, total)) {
            if let Some(old) = bar.take() {
                old.finish_and_clear();
            }
            let b = new_bar(trial, total);
            set_active(Some(b.clone()));
            bar = Some(b);
            shown = Some((trial, total));
        }
        let Some(b) = &bar else { continue };
        b.set_position(step.min(total));
        b.set_message(message(
            p.epoch.load(Ordering::Relaxed),
            p.train_loss(),
            p.val_accuracy(),
            p.samples_per_sec.load(Ordering::Relaxed),
        ));
        if step >= total {
            b.finish_and_clear();
            set_active(None);
            bar = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shows_what_is_known() {
        assert_eq!(message(0, f64::NAN, f64::NAN, 0), "epoch 0");
        assert_eq!(
            message(2, 0.12345, 0.9876, 5120),
            "epoch 2 · loss 0.1235 · val 98.76% · 5120 samples/s"
        );
    }
}
