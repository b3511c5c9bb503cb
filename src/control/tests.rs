//! Tests of `control`.

use super::*;
use crate::telemetry::heartbeat::Liveness;
use crate::train::StopFlag;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

fn cfg() -> Config {
    let args = Options {
        threads: Some(1),
        ..Default::default()
    };
    Config::resolve(&args).unwrap()
}

fn shared() -> Shared {
    Shared {
        stop: StopFlag::default(),
        progress: Arc::default(),
        live: Liveness::default(),
        notify: None,
        supersede: Default::default(),
    }
}

struct Wired {
    stops: UnboundedSender<StopRequest>,
    stalls: UnboundedSender<Stall>,
    inputs: Inputs,
}

fn wired() -> Wired {
    let (stops, stop_rx) = mpsc::unbounded_channel();
    let (stalls, stall_rx) = mpsc::unbounded_channel();
    Wired {
        stops,
        stalls,
        inputs: Inputs {
            stops: stop_rx,
            stalls: stall_rx,
        },
    }
}

/// A trainer that finishes its "step" once the stop flag is up.
fn until_stopped() -> Job {
    Box::new(|s: &Shared| {
        while !s.stop.is_raised() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Outcome::Stopped)
    })
}

/// A trainer stuck until `release` is dropped (the end of the test).
fn stuck(release: std::sync::mpsc::Receiver<()>) -> Job {
    Box::new(move |_: &Shared| {
        let _ = release.recv();
        Ok(Outcome::Done)
    })
}

fn stall() -> Stall {
    Stall {
        step: 7,
        idle: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn a_job_ends_the_control_plane_with_its_outcome_or_error() {
    let mut w = wired();
    let job: Job = Box::new(|_: &Shared| Ok(Outcome::BelowTarget));
    let e = run(Mode::Single(job), cfg(), shared(), &mut w.inputs).await;
    assert_eq!(e.unwrap(), Ending::clean(Outcome::BelowTarget));
    let job: Job = Box::new(|_: &Shared| anyhow::bail!("bad data"));
    let e = run(Mode::Single(job), cfg(), shared(), &mut w.inputs).await;
    assert!(e.unwrap_err().to_string().contains("bad data"));
}

#[tokio::test]
async fn a_stop_request_waits_for_the_trainer_then_ends_stopped() {
    let mut w = wired();
    let s = shared();
    w.stops.send(StopRequest::Graceful).unwrap();
    let e = run(
        Mode::Single(until_stopped()),
        cfg(),
        s.clone(),
        &mut w.inputs,
    )
    .await;
    assert_eq!(e.unwrap(), Ending::clean(Outcome::Stopped));
    assert!(s.stop.is_raised());
}

#[tokio::test]
async fn a_second_stop_request_leaves_the_trainer_behind() {
    let mut w = wired();
    let (_release, held) = std::sync::mpsc::channel();
    w.stops.send(StopRequest::Graceful).unwrap();
    w.stops.send(StopRequest::Now).unwrap();
    let e = run(Mode::Single(stuck(held)), cfg(), shared(), &mut w.inputs).await;
    let want = Ending {
        outcome: Outcome::Stopped,
        abandon: true,
    };
    assert_eq!(e.unwrap(), want);
}

#[tokio::test]
async fn a_stall_stops_the_trainer_and_ends_stalled_once_it_is_back() {
    let mut w = wired();
    w.stalls.send(stall()).unwrap();
    let e = run(
        Mode::Single(until_stopped()),
        cfg(),
        shared(),
        &mut w.inputs,
    )
    .await;
    assert_eq!(
        e.unwrap(),
        Ending::clean(Outcome::Stalled),
        "stopped by the watchdog: 75, not 143"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_trainer_that_never_comes_back_is_left_behind_after_the_grace() {
    let mut w = wired();
    let (_release, held) = std::sync::mpsc::channel();
    w.stalls.send(stall()).unwrap();
    let started = Instant::now();
    let e = run(Mode::Single(stuck(held)), cfg(), shared(), &mut w.inputs).await;
    let want = Ending {
        outcome: Outcome::Stalled,
        abandon: true,
    };
    assert_eq!(e.unwrap(), want);
    assert!(
        started.elapsed() >= STALL_GRACE,
        "waited out the grace first"
    );
}
