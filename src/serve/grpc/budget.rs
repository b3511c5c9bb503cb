//! The byte budget of arriving gRPC messages, shared with the REST API's
//! body budget ([`crate::serve::http::BODY_BUDGET_KIB`]): a call's request
//! body is read through [`Budgeted`], which finds each message's 5-byte
//! length prefix in the stream and, before passing on the bytes that
//! follow, takes that many KiB from the budget (waiting while other calls
//! hold it). What a call took is held until the call is answered, so the
//! messages being received, decoded, queued and answered stay within the
//! budget however many clients and streams send at once. A prefix over
//! [`super::MAX_MESSAGE`] takes nothing: tonic refuses that message.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Status;

/// The permits one call holds; the call's future and its body share it.
pub type Held = Arc<Mutex<Vec<OwnedSemaphorePermit>>>;

type Acquiring = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Where the reader is in the stream of length-prefixed messages.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Framing {
    prefix: [u8; 5],
    /// Prefix bytes seen of the next message.
    have: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl Framing {
    /// Walks `data`; returns the KiB the messages whose prefixes it
    /// completes need (0 for none, and for one over `max` bytes).
    pub fn advance(&mut self, mut data: &[u8], max: usize) -> u32 {
        let mut need = 0u32;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                let p = self.prefix;
                let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
                self.have = 0;
                self.remaining = u64::from(len);
                if len as usize <= max {
                    need = need.saturating_add(len / 1024 + 1);
                }
            }
        }
        need
    }
}

/// A request body that takes budget for each message before passing it on.
pub struct Budgeted {
    inner: Body,
    budget: Arc<Semaphore>,
    held: Held,
    framing: Framing,
    /// A frame waiting for its messages' budget.
    waiting: Option<(Frame<Bytes>, Acquiring)>,
}

impl Budgeted {
    /// `inner` read within `budget`; what it takes goes into `held`.
    pub fn wrap(inner: Body, budget: Arc<Semaphore>, held: Held) -> Body {
        Body::new(Budgeted {
            inner,
            budget,
            held,
            framing: Framing::default(),
            waiting: None,
        })
    }
}

impl HttpBody for Budgeted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some((frame, mut acquiring)) = this.waiting.take() {
            return match acquiring.as_mut().poll(cx) {
                Poll::Pending => {
                    this.waiting = Some((frame, acquiring));
                    Poll::Pending
                }
                Poll::Ready(Err(_)) => Poll::Ready(Some(Err(Status::unavailable(
                    "the server is shutting down",
                )))),
                Poll::Ready(Ok(permit)) => {
                    this.held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(permit);
                    Poll::Ready(Some(Ok(frame)))
                }
            };
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let need = frame
            .data_ref()
            .map_or(0, |d| this.framing.advance(d, super::MAX_MESSAGE));
        if need == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        let acquiring = Box::pin(this.budget.clone().acquire_many_owned(need));
        this.waiting = Some((frame, acquiring));
        // Polls the acquisition once now (it registers the waker).
        Pin::new(this).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend(len.to_be_bytes());
        v
    }

    #[test]
    fn a_prefix_split_across_frames_is_found_and_its_message_skipped() {
        let mut f = Framing::default();
        let p = prefix(3000);
        assert_eq!(f.advance(&p[..2], 1 << 20), 0);
        assert_eq!(f.advance(&p[2..], 1 << 20), 3);
        // The message's bytes, then the next message's prefix in one frame.
        let mut next = vec![7u8; 3000];
        next.extend(prefix(10));
        assert_eq!(f.advance(&next, 1 << 20), 1);
        assert_eq!(f.remaining, 10);
    }

    #[test]
    fn a_message_over_the_cap_takes_nothing() {
        let mut f = Framing::default();
        assert_eq!(f.advance(&prefix(u32::MAX), 16 << 20), 0);
        assert_eq!(f.remaining, u64::from(u32::MAX));
    }

    #[test]
    fn several_messages_in_one_frame_add_up() {
        let mut f = Framing::default();
        let mut data = prefix(0);
        data.extend(prefix(2048));
        data.extend(vec![0u8; 2048]);
        data.extend(prefix(1));
        assert_eq!(f.advance(&data, 1 << 20), 1 + 3 + 1);
    }
}
