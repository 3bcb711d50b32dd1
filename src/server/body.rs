//! Request bodies: the deadline for receiving one, and draining those a handler answers without reading.
//!
//! When a response is sent before the request body has been read (a 401, 403 or 405 decided on the headers alone),
//! hyper ends the HTTP/2 stream with RST_STREAM, and clients such as curl may report that as a failed request
//! although the response was complete. Reading the (small) rest of the body first avoids that.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Why a request body ended early: it had not arrived by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body was not received within {timeout:?} of the request headers")]
pub struct BodyTimedOut {
    /// The timeout (`--request-body-timeout`).
    pub timeout: Duration,
}

/// A request body that must arrive within a timeout of its request's headers; a read past it fails with
/// [`BodyTimedOut`] (boxed), so that a client trickling a body cannot hold a request open.
///
/// The timer is only created when the body is not already there when first read (a small body usually arrives
/// with its headers); a body complete with the headers, as every read's, costs no clock read at all.
#[derive(Debug)]
pub struct RequestBody<B = Incoming> {
    inner: B,
    /// `None` when the body was complete with the headers.
    deadline: Option<Instant>,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl<B: Body> RequestBody<B> {
    /// `inner`, whose headers arrived now, limited to `timeout`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Instant::now() + timeout);
        RequestBody { inner, deadline, timeout, timer: None, timed_out: false }
    }

    fn expire(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.timed_out = true;
        self.timer = None;
        Poll::Ready(Some(Err(Box::new(BodyTimedOut { timeout: self.timeout }))))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        // Checked before the body, so that a client sending a byte whenever asked still meets the deadline.
        if let Some(timer) = &mut this.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return this.expire();
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => {
                if this.timer.is_none()
                    && let Some(deadline) = this.deadline
                {
                    let mut timer = Box::pin(tokio::time::sleep_until(deadline));
                    if timer.as_mut().poll(cx).is_ready() {
                        return this.expire();
                    }
                    this.timer = Some(timer);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads and discards `body`, stopping after `limit` bytes (a larger body is then left to the reset).
pub async fn drain<B>(body: B, limit: usize)
where
    B: Body<Data = Bytes>,
{
    if body.is_end_stream() {
        return;
    }
    let mut body = std::pin::pin!(body);
    let mut read = 0usize;
    while read <= limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) | None => return,
        }
    }
}

#[cfg(test)]
mod tests {

    use std::convert::Infallible;

    use http_body_util::Full;

    use super::*;

    /// An endless body of 1000-byte frames that counts the frames read.
    struct Endless(usize);

    impl Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0 += 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[0u8; 1000])))))
        }
    }

    /// A body whose frames arrive through a channel.
    struct Frames(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|data| data.map(|data| Ok(Frame::data(data))))
        }
    }

    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Frames) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        (tx, Frames(rx))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_is_cut_off_at_the_deadline_counted_from_the_headers() {
        let (tx, inner) = channel_body();
        let start = Instant::now();
        let body = RequestBody::new(inner, Duration::from_secs(10));
        // A byte every 3 s, for ever.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if tx.send(Bytes::from_static(b"4")).await.is_err() {
                    break;
                }
            }
        });
        let mut body = std::pin::pin!(body);
        let mut received = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(_)) => received += 1,
                Some(Err(error)) => break error,
                None => panic!("the body ended"),
            }
        };
        assert_eq!(received, 3);
        assert_eq!(error.downcast_ref::<BodyTimedOut>(), Some(&BodyTimedOut { timeout: Duration::from_secs(10) }));
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        assert!(body.frame().await.is_none(), "the body goes on after its deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let (tx, inner) = channel_body();
        let body = RequestBody::new(inner, Duration::from_secs(10));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(9)).await;
            tx.send(Bytes::from_static(b"42")).await.unwrap();
        });
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"42");
    }

    #[tokio::test]
    async fn reads_a_small_body_to_its_end_and_stops_after_the_limit() {
        drain(Full::new(Bytes::from_static(b"\"42\"")), 4096).await;
        let mut endless = Endless(0);
        drain(&mut endless, 4096).await;
        // The fifth 1000-byte frame passes the 4096-byte limit; draining stops there instead of running forever.
        assert_eq!(endless.0, 5);
    }
}
