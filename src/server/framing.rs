//! How an HTTP/1.1 request body is framed: `Content-Length`, or `Transfer-Encoding: chunked` alone.
//!
//! hyper decodes any `Transfer-Encoding` whose last coding is `chunked` (`gzip, chunked` included) as plain
//! chunked, and refuses the rest itself with a bare 400. RFC 9112 §6.1 says a server answers 501 to a transfer
//! coding it does not understand: the listener does, before any handler sees the request.
//!
//! A request with both `Transfer-Encoding` and `Content-Length` (the shape of request smuggling) is refused with
//! 400. hyper removes the `Content-Length` of such a request before anyone sees it, so [`HeadScan`] notes it in
//! the raw bytes of each HTTP/1.1 request head. HTTP/2 carries no `Transfer-Encoding` (the h2 crate resets such
//! a stream) and is not scanned.

use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Request, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::response::{HttpResponse, RequestError};

/// What [`HeadScan`] found on a connection, for [`check`].
#[derive(Debug, Default)]
pub struct Framing {
    /// A request head with both `Transfer-Encoding` and `Content-Length` was read.
    both_lengths: AtomicBool,
}

/// `Err` when the request's body framing is refused; `framing` is its connection's.
pub fn check<B>(request: &Request<B>, framing: &Framing) -> Result<(), RequestError> {
    if request.version() != Version::HTTP_11 {
        return Ok(());
    }
    let Some(first) = request.headers().get(header::TRANSFER_ENCODING) else {
        return Ok(());
    };
    if framing.both_lengths.swap(false, Ordering::Relaxed) {
        return Err(RequestError::ConflictingBodyLength);
    }
    let mut values = request.headers().get_all(header::TRANSFER_ENCODING).iter();
    let several = values.nth(1).is_some();
    if several || !first.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") {
        let joined: Vec<&str> = request
            .headers()
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .map(|v| v.to_str().unwrap_or("<not text>"))
            .collect();
        return Err(RequestError::UnsupportedTransferEncoding(joined.join(", ")));
    }
    Ok(())
}

/// The answer to a refused request; the connection is closed after it, as the body's end cannot be trusted.
pub fn refuse(error: RequestError) -> HttpResponse {
    let mut response = error.into_response(false);
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Longest header name prefix of interest, with its colon.
const NAME_PREFIX: usize = "transfer-encoding:".len();

/// Notes, in the bytes read from an HTTP/1.1 connection, each request head that has both a `Transfer-Encoding`
/// and a `Content-Length` line. It looks at line starts only (the rest of a line is skipped with `memchr`), and
/// stops looking once the connection turns out to be HTTP/2.
#[derive(Debug)]
pub struct HeadScan<S, F> {
    inner: S,
    framing: F,
    active: bool,
    /// The current line's first bytes, lower-cased; `None` once the line is known to be of no interest.
    line: Option<([u8; NAME_PREFIX], usize)>,
    first_line: bool,
    transfer_encoding: bool,
    content_length: bool,
}

impl<S, F> HeadScan<S, F>
where
    F: Deref,
    F::Target: AsRef<Framing>,
{
    /// Scans what is read from `inner` (HTTP/1.1, or not yet known) into `framing`; `active: false` for a
    /// connection known to be HTTP/2.
    pub fn new(inner: S, framing: F, active: bool) -> Self {
        HeadScan {
            inner,
            framing,
            active,
            line: Some(([0; NAME_PREFIX], 0)),
            first_line: true,
            transfer_encoding: false,
            content_length: false,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some((prefix, len)) = &mut self.line else {
                match memchr::memchr(b'\n', bytes) {
                    Some(end) => {
                        bytes = &bytes[end + 1..];
                        self.line = Some(([0; NAME_PREFIX], 0));
                        self.first_line = false;
                    }
                    None => return,
                }
                continue;
            };
            let byte = bytes[0];
            bytes = &bytes[1..];
            match byte {
                b'\n' => {
                    if *len == 0 {
                        // The blank line that ends a head (or a line of a chunked body; no harm).
                        if self.transfer_encoding && self.content_length {
                            (*self.framing).as_ref().both_lengths.store(true, Ordering::Relaxed);
                        }
                        self.transfer_encoding = false;
                        self.content_length = false;
                    }
                    self.line = Some(([0; NAME_PREFIX], 0));
                    self.first_line = false;
                }
                b'\r' => {}
                _ => {
                    prefix[*len] = byte.to_ascii_lowercase();
                    *len += 1;
                    let seen = &prefix[..*len];
                    if self.first_line && seen == b"pri " {
                        // The HTTP/2 preface.
                        self.active = false;
                        return;
                    }
                    if seen == b"content-length:" {
                        self.content_length = true;
                        self.line = None;
                    } else if seen == b"transfer-encoding:" {
                        self.transfer_encoding = true;
                        self.line = None;
                    } else {
                        let may_become = b"content-length:".starts_with(seen)
                            || b"transfer-encoding:".starts_with(seen)
                            || (self.first_line && b"pri ".starts_with(seen));
                        if !may_become {
                            self.line = None;
                        }
                    }
                }
            }
        }
    }
}

impl<S, F> AsyncRead for HeadScan<S, F>
where
    S: AsyncRead + Unpin,
    F: Deref + Unpin,
    F::Target: AsRef<Framing>,
{
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.active && matches!(result, Poll::Ready(Ok(()))) {
            this.scan(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin, F: Unpin> AsyncWrite for HeadScan<S, F> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsRef<Framing> for Framing {
    fn as_ref(&self) -> &Framing {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Whether scanning `chunks` (as successive reads) flags a head with both lengths.
    fn flags(chunks: &[&[u8]]) -> bool {
        let framing = Arc::new(Framing::default());
        let mut scan = HeadScan::new((), Arc::clone(&framing), true);
        for chunk in chunks {
            if scan.active {
                scan.scan(chunk);
            }
        }
        framing.both_lengths.load(Ordering::Relaxed)
    }

    #[test]
    fn a_head_with_both_lengths_is_noticed_in_any_order_case_and_split() {
        let both = b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n42\r\n0\r\n\r\n";
        assert!(flags(&[both]));
        assert!(flags(&[b"POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\ncontent-length:3\r\n\r\n"]));
        // Split anywhere, even byte by byte.
        let single: Vec<&[u8]> = both.chunks(1).collect();
        assert!(flags(&single));
        for at in 1..both.len() {
            assert!(flags(&[&both[..at], &both[at..]]), "split at {at}");
        }
    }

    #[test]
    fn one_length_per_head_is_not_flagged() {
        // Two requests on one connection, one with each; a body that looks like a header.
        assert!(!flags(&[
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n42",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 1\r\n\r\n0\r\n\r\n",
        ]));
        // HTTP/2 is not scanned.
        assert!(!flags(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\ncontent-length: 1\ntransfer-encoding: x\n\n"]));
    }

    fn request(version: Version, encodings: &[&str]) -> Request<()> {
        let mut builder = Request::builder().method("POST").uri("/").version(version);
        for encoding in encodings {
            builder = builder.header(header::TRANSFER_ENCODING, *encoding);
        }
        builder.body(()).unwrap()
    }

    fn check(request: &Request<()>) -> Result<(), RequestError> {
        super::check(request, &Framing::default())
    }

    #[test]
    fn only_chunked_alone_is_accepted() {
        assert!(check(&request(Version::HTTP_11, &[])).is_ok());
        assert!(check(&request(Version::HTTP_11, &["chunked"])).is_ok());
        assert!(check(&request(Version::HTTP_11, &[" Chunked "])).is_ok());
        for refused in [&["gzip, chunked"][..], &["gzip", "chunked"], &["chunked", "chunked"], &["identity"]] {
            match check(&request(Version::HTTP_11, refused)) {
                Err(RequestError::UnsupportedTransferEncoding(text)) => assert_eq!(text, refused.join(", ")),
                other => panic!("{refused:?}: {other:?}"),
            }
        }
        // HTTP/2 never reaches a handler with the header; nothing to check there.
        assert!(check(&request(Version::HTTP_2, &["gzip"])).is_ok());
    }
}
