//! Tests of `cpu_share`.

use super::*;

fn sample(t0: Instant, secs: f64, delay_s: f64, idle: u64, total: u64) -> Sample {
    Sample {
        at: t0 + Duration::from_secs_f64(secs),
        run_delay_ns: (delay_s * 1e9) as u64,
        idle_ticks: idle,
        total_ticks: total,
        cpus: 2,
        own_ticks: 0,
    }
}

fn with_own(mut s: Sample, own: u64) -> Sample {
    s.own_ticks = own;
    s
}

#[test]
fn a_trial_starts_on_one_thread_only_when_other_processes_took_the_cores() {
    let t0 = Instant::now();
    let before = sample(t0, 0.0, 0.0, 0, 0);
    // 1 s on 2 CPUs: this process used one core (loading data), one idle.
    let mut g = Governor::new(2, with_own(sample(t0, 1.0, 0.0, 100, 200), 100));
    assert_eq!(g.start(&before), None);
    assert_eq!(g.threads(), 2);
    // This process used both cores (decoding on two threads): still free.
    let mut g = Governor::new(2, with_own(sample(t0, 1.0, 0.0, 0, 200), 200));
    assert_eq!(g.start(&before), None);
    // Another process kept a core busy while this one used the other.
    let mut g = Governor::new(2, with_own(sample(t0, 1.0, 0.0, 0, 200), 100));
    let c = g.start(&before);
    assert!(matches!(c, Some(Change::StartLow { others_busy }) if others_busy > 0.9));
    assert_eq!(g.threads(), 1);
    // Free cores bring the threads back after the first hold.
    assert_eq!(g.observe(sample(t0, 2.0, 0.0, 190, 400)), None);
    let c = g.observe(sample(t0, 3.5, 0.0, 480, 700));
    assert!(matches!(c, Some(Change::Raise { .. })));
    // Too short or too long an interval to judge: no change.
    let mut g = Governor::new(2, with_own(sample(t0, 0.1, 0.0, 0, 20), 10));
    assert_eq!(g.start(&before), None);
    let mut g = Governor::new(2, with_own(sample(t0, 60.0, 0.0, 0, 12_000), 6_000));
    assert_eq!(g.start(&before), None);
    assert_eq!(g.threads(), 2);
}

#[test]
fn own_cpu_time_is_read_past_a_command_name_with_spaces() {
    let text = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 31 17 0 0 20 0 1 0";
    assert_eq!(parse_own_ticks(text), Some(48));
    assert_eq!(parse_own_ticks("4242 (x) S 1 2"), None);
    assert!(own_ticks().is_some());
}

#[test]
fn contention_lowers_and_free_cores_raise_after_the_hold() {
    let t0 = Instant::now();
    let mut g = Governor::new(2, sample(t0, 0.0, 0.0, 0, 0));
    // Quiet: 2 threads waited 2% of 1 s.
    assert_eq!(g.observe(sample(t0, 1.0, 0.04, 0, 200)), None);
    // Busy: they waited 0.8 s of their 2 thread-seconds.
    let c = g.observe(sample(t0, 2.0, 0.84, 0, 400));
    assert!(matches!(c, Some(Change::Lower { waited }) if waited > 0.3));
    assert_eq!(g.threads(), 1);
    // One core idle, but within the 2 s hold: nothing yet.
    assert_eq!(g.observe(sample(t0, 3.0, 0.84, 100, 600)), None);
    // No idle core: stay at one.
    assert_eq!(g.observe(sample(t0, 4.5, 0.84, 100, 900)), None);
    // A core idle after the hold: back to 2.
    let c = g.observe(sample(t0, 5.5, 0.84, 190, 1100));
    assert!(matches!(c, Some(Change::Raise { idle_cores }) if idle_cores > 0.8));
    assert_eq!(g.threads(), 2);
}

#[test]
fn a_core_busy_again_at_once_doubles_the_hold() {
    let t0 = Instant::now();
    let mut g = Governor::new(2, sample(t0, 0.0, 0.0, 0, 0));
    g.observe(sample(t0, 1.0, 1.0, 0, 200)).unwrap(); // lower, hold 2 s
    g.observe(sample(t0, 3.0, 1.0, 200, 600)).unwrap(); // raise
    g.observe(sample(t0, 4.0, 2.0, 200, 800)).unwrap(); // busy again: hold 4 s
    assert_eq!(g.hold, Duration::from_secs(4));
    assert_eq!(g.observe(sample(t0, 6.0, 2.0, 400, 1200)), None);
    assert!(g.observe(sample(t0, 8.5, 2.0, 650, 1700)).is_some());
}

#[test]
fn samples_closer_than_the_window_are_ignored() {
    let t0 = Instant::now();
    let mut g = Governor::new(2, sample(t0, 0.0, 0.0, 0, 0));
    assert_eq!(g.observe(sample(t0, 0.5, 5.0, 0, 100)), None);
    assert_eq!(g.threads(), 2);
}

#[test]
fn proc_stat_lines_of_the_allowed_cpus_are_summed() {
    let text = "cpu  10 0 10 100 5 0 0 0 0 0\n\
                    cpu0 5 0 5 50 2 0 0 0 0 0\n\
                    cpu1 5 0 5 50 3 0 0 0 0 0\n\
                    intr 1 2 3\n";
    assert_eq!(parse_cpu_ticks(text, &[1]), Some((53, 63, 1)));
    assert_eq!(parse_cpu_ticks(text, &[0, 1]), Some((105, 125, 2)));
    assert_eq!(parse_cpu_ticks(text, &[7]), None);
    assert_eq!(parse_cpu_ticks("cpu0 1 2\n", &[0]), None);
}

#[test]
fn the_counters_read_on_linux() {
    let s = Sample::read().expect("/proc/self/task and /proc/stat");
    assert!(s.cpus >= 1 && s.total_ticks > 0);
}
