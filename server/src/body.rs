//! Request bodies under a deadline and a shared budget. Owns what the HTTP
//! stack leaves open: actix-http times out a request's head, not its body,
//! so a client that declares a body and stops sending would hold its socket
//! (and what it sent) forever.
//!
//! Every request body but the feed's WebSocket stream is read through
//! [`Limited`]: past the deadline (counted from the head) it fails with
//! `408 request_timeout`, and a chunk that would take the bytes all
//! unfinished bodies hold past the budget fails with `503 overloaded`. The
//! answer closes the connection, so the socket is freed with it: the rest
//! of the body rides along with the answer, unread, which is what makes
//! actix-http close rather than wait to drain it.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::error::PayloadError;
use actix_web::HttpMessage;
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::web::Bytes;
use futures_util::Stream;
use pat_engine::Code;

use crate::error::ApiError;

/// Why a body was cut off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyCut {
    #[error("the request body did not arrive within {0:?} of its head")]
    TimedOut(Duration),
    #[error("unfinished request bodies hold {0} bytes already; retry")]
    Overloaded(usize),
}

impl BodyCut {
    /// The cut a payload error stands for, if it is one.
    pub fn of(e: &PayloadError) -> Option<&Self> {
        match e {
            PayloadError::Io(io) => io.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    pub fn to_api(&self) -> ApiError {
        let code = match self {
            Self::TimedOut(_) => Code::RequestTimeout,
            Self::Overloaded(_) => Code::Overloaded,
        };
        ApiError::new(code, self.to_string())
    }
}

/// The bytes held by unfinished bodies, across all workers.
#[derive(Debug)]
pub struct Budget {
    held: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { held: AtomicUsize::new(0), max })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let Some(next) = held.checked_add(n).filter(|&next| next <= self.max) else { return false };
            match self.held.compare_exchange_weak(held, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A request body read under a deadline and a [`Budget`]; what it took from
/// the budget goes back when it is dropped (the extractor is done with it).
pub struct Limited {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    budget: Arc<Budget>,
    taken: usize,
    /// Once the body is cut off: the rest of it, for [`close_if_cut`].
    rest: Rest,
    cut: bool,
}

/// The unread rest of a cut body.
type Rest = Rc<RefCell<Option<Payload>>>;

impl Limited {
    pub fn new(inner: Payload, timeout: Duration, budget: Arc<Budget>) -> Self {
        let deadline = Box::pin(tokio::time::sleep(timeout));
        Self { inner, deadline, timeout, budget, taken: 0, rest: Rest::default(), cut: false }
    }

    fn cut(&mut self, why: BodyCut) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.cut = true;
        *self.rest.borrow_mut() = Some(std::mem::replace(&mut self.inner, Payload::None));
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::other(why)))))
    }
}

impl Stream for Limited {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.cut {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if !self.budget.take(chunk.len()) {
                    let held = self.budget.held();
                    return self.cut(BodyCut::Overloaded(held));
                }
                self.taken += chunk.len();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let timeout = self.timeout;
                    self.cut(BodyCut::TimedOut(timeout))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.budget.give_back(self.taken);
    }
}

/// Puts `req`'s body under the deadline and budget, unless it is a
/// WebSocket upgrade (whose body is the connection's stream of frames).
/// Returns where a cut leaves the rest of the body, for [`close_if_cut`].
pub fn limit(req: &mut ServiceRequest, timeout: Duration, budget: &Arc<Budget>) -> Option<Rest> {
    if req.head().upgrade() {
        return None;
    }
    let limited = Limited::new(req.take_payload(), timeout, budget.clone());
    let rest = limited.rest.clone();
    req.set_payload(Payload::Stream { payload: Box::pin(limited) });
    Some(rest)
}

/// Closes the connection after the answer to a cut body. The rest of the
/// body goes along with the answer's own body, unread: actix-http closes a
/// connection whose body is neither read to its end nor dropped when its
/// answer is sent, where it would wait to drain a dropped chunked body that
/// may never come.
pub fn close_if_cut<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
    rest: Option<Rest>,
) -> ServiceResponse<EitherBody<B>> {
    match rest.and_then(|rest| rest.borrow_mut().take()) {
        None => response.map_into_left_body(),
        Some(unread) => {
            let mut response = response.map_body(|_, body| {
                EitherBody::right(BoxBody::new(WithUnread { body: BoxBody::new(body), _unread: unread }))
            });
            response.response_mut().head_mut().set_connection_type(actix_http::ConnectionType::Close);
            response
        }
    }
}

/// An answer's body that holds the unread rest of the request's body until
/// it is sent.
struct WithUnread {
    body: BoxBody,
    _unread: Payload,
}

impl MessageBody for WithUnread {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn stream_of(chunks: Vec<&'static [u8]>, then_stall: bool) -> Payload {
        let items = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))));
        let stream: actix_http::BoxedPayloadStream =
            if then_stall { Box::pin(items.chain(futures_util::stream::pending())) } else { Box::pin(items) };
        Payload::Stream { payload: stream }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_at_its_deadline_and_gives_its_bytes_back() {
        let budget = Budget::new(100);
        let mut body = Limited::new(stream_of(vec![b"12345"], true), Duration::from_secs(10), budget.clone());
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"12345"));
        assert_eq!(budget.held(), 5);
        let started = tokio::time::Instant::now();
        let err = body.next().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(BodyCut::of(&err), Some(&BodyCut::TimedOut(Duration::from_secs(10))));
        assert!(body.next().await.is_none(), "a cut body ends");
        drop(body);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn bodies_together_stay_within_the_budget() {
        let budget = Budget::new(8);
        let mut first = Limited::new(stream_of(vec![b"12345"], true), Duration::from_secs(10), budget.clone());
        let mut second = Limited::new(stream_of(vec![b"6789"], true), Duration::from_secs(10), budget.clone());
        first.next().await.unwrap().unwrap();
        let err = second.next().await.unwrap().unwrap_err();
        assert_eq!(BodyCut::of(&err), Some(&BodyCut::Overloaded(5)));
        assert_eq!(BodyCut::of(&err).unwrap().to_api().code, Code::Overloaded);
        drop(first);
        let mut third = Limited::new(stream_of(vec![b"6789"], false), Duration::from_secs(10), budget.clone());
        third.next().await.unwrap().unwrap();
        assert!(third.next().await.is_none());
        assert_eq!(budget.held(), 4);
    }
}
