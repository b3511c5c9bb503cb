//! Learning-rate schedules: pure functions of the step, so resuming needs no state.

use crate::model::ScheduleSpec;

/// The learning rate at `step` (0-based) of `total` steps, `per_epoch` steps an epoch.
pub fn learning_rate(spec: &ScheduleSpec, base: f64, step: u64, total: u64, per_epoch: u64) -> f64 {
    match *spec {
        ScheduleSpec::Constant => base,
        ScheduleSpec::Step {
            every_epochs,
            gamma,
        } => {
            let epoch = step / per_epoch.max(1);
            base * gamma.powi((epoch / u64::from(every_epochs.max(1))) as i32)
        }
        ScheduleSpec::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } => {
            let initial = base / div_factor;
            let floor = initial / final_div_factor;
            let warm = ((total as f64) * pct_start).max(1.0);
            let s = step as f64;
            if s < warm {
                cosine(initial, base, s / warm)
            } else {
                let rest = ((total as f64) - warm).max(1.0);
                cosine(base, floor, ((s - warm) / rest).min(1.0))
            }
        }
    }
}

/// Cosine interpolation from `start` (at 0) to `end` (at 1).
fn cosine(start: f64, end: f64, frac: f64) -> f64 {
    end + (start - end) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rises_to_peak_then_falls_to_floor() {
        let s = ScheduleSpec::OneCycle {
            pct_start: 0.25,
            div_factor: 10.0,
            final_div_factor: 100.0,
        };
        assert!((learning_rate(&s, 0.1, 0, 100, 10) - 0.01).abs() < 1e-12);
        assert!((learning_rate(&s, 0.1, 25, 100, 10) - 0.1).abs() < 1e-12);
        assert!(learning_rate(&s, 0.1, 99, 100, 10) < 0.001);
        assert!(learning_rate(&s, 0.1, 60, 100, 10) < learning_rate(&s, 0.1, 40, 100, 10));
    }

    #[test]
    fn step_schedule_decays_per_epoch() {
        let s = ScheduleSpec::Step {
            every_epochs: 1,
            gamma: 0.7,
        };
        assert_eq!(learning_rate(&s, 1.0, 9, 100, 10), 1.0);
        assert!((learning_rate(&s, 1.0, 10, 100, 10) - 0.7).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 25, 100, 10) - 0.49).abs() < 1e-12);
    }
}
