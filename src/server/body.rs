//! Request bodies that a handler answers without reading.
//!
//! When a response is sent before the request body has been read (a 401, 403 or 405 decided on the headers alone),
//! hyper ends the HTTP/2 stream with RST_STREAM, and clients such as curl may report that as a failed request
//! although the response was complete. Reading the (small) rest of the body first avoids that.

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

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
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body::Frame;
    use http_body_util::Full;

    use super::*;

    /// An endless body of 1000-byte frames that counts the frames read.
    struct Endless(usize);

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0 += 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[0u8; 1000])))))
        }
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
