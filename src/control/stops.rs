//! Stop requests: SIGTERM/SIGINT (or, for tests and embedders, a channel)
//! turned into [`StopRequest`]s for the control task. The first raises the
//! [`StopFlag`] at once, so the trainer sees it at its next step even before
//! the control task looks; the second asks for an exit now.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::train::StopFlag;

/// What asks the process to stop.
pub enum StopSource {
    /// SIGTERM and SIGINT (the binary).
    Signals,
    /// Each message is one stop request (tests, embedders).
    Channel(UnboundedReceiver<()>),
}

/// A stop request, in the order they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// The first: finish the step, checkpoint, exit 143.
    Graceful,
    /// Any later one: exit at once.
    Now,
}

/// Starts the listener task on the current runtime (signal handlers are
/// installed before this returns).
pub fn listen(
    source: StopSource,
    flag: StopFlag,
) -> std::io::Result<UnboundedReceiver<StopRequest>> {
    let (tx, rx) = mpsc::unbounded_channel();
    match source {
        StopSource::Signals => {
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                let mut count = 0;
                loop {
                    let got = tokio::select! {
                        s = term.recv() => s,
                        s = int.recv() => s,
                    };
                    if got.is_none() || !forward(&mut count, &flag, &tx) {
                        return;
                    }
                }
            });
        }
        StopSource::Channel(mut requests) => {
            tokio::spawn(async move {
                let mut count = 0;
                while requests.recv().await.is_some() {
                    if !forward(&mut count, &flag, &tx) {
                        return;
                    }
                }
            });
        }
    }
    Ok(rx)
}

/// Raises the flag at the first request and sends the request on; false
/// once nobody listens.
fn forward(count: &mut u32, flag: &StopFlag, tx: &UnboundedSender<StopRequest>) -> bool {
    *count += 1;
    let request = if *count == 1 {
        flag.raise();
        StopRequest::Graceful
    } else {
        StopRequest::Now
    };
    tx.send(request).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_request_raises_the_flag_at_once_later_ones_ask_for_now() {
        let (tx, rx) = mpsc::unbounded_channel();
        let flag = StopFlag::default();
        let mut requests = listen(StopSource::Channel(rx), flag.clone()).unwrap();
        tx.send(()).unwrap();
        assert_eq!(requests.recv().await, Some(StopRequest::Graceful));
        assert!(flag.is_raised());
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        assert_eq!(requests.recv().await, Some(StopRequest::Now));
        assert_eq!(requests.recv().await, Some(StopRequest::Now));
        drop(tx);
        assert_eq!(requests.recv().await, None, "the source closed");
    }
}
