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

/// Longest `Content-Length` value read (a `u64` has at most 20 digits; spaces around them fit too).
const LENGTH_VALUE: usize = 32;

/// Where [`HeadScan`] is in the current line.
#[derive(Debug)]
enum Line {
    /// The line's first bytes, lower-cased, while they may still become a name of interest.
    Name([u8; NAME_PREFIX], usize),
    /// A `Content-Length` line's value so far (the count goes past the buffer when the value does).
    Length([u8; LENGTH_VALUE], usize),
    /// Of no interest: skipped to its end with `memchr`.
    Rest,
}

impl Line {
    fn start() -> Line {
        Line::Name([0; NAME_PREFIX], 0)
    }
}

/// Notes, in the bytes read from an HTTP/1.1 connection, each request head that has both a `Transfer-Encoding`
/// and a `Content-Length` line. It looks at line starts only (the rest of a line is skipped with `memchr`), and
/// stops looking once the connection turns out to be HTTP/2.
///
/// A body framed by one plain `Content-Length` (and no `Transfer-Encoding`) is passed over unscanned: hyper reads
/// exactly that many bytes, so the next head starts right after them. That keeps a body's text from being read as
/// header lines, and keeps large bodies cheap (a binary protobuf body has a `\n` byte every few bytes, and scanning
/// each of those lines was a tenth of an OTLP export's cost). Once a body's length is not known that way (chunked,
/// or a `Content-Length` hyper might read otherwise), every later line of the connection is scanned.
#[derive(Debug)]
pub struct HeadScan<S, F> {
    inner: S,
    framing: F,
    active: bool,
    line: Line,
    first_line: bool,
    transfer_encoding: bool,
    /// `Content-Length` lines in the current head, and the value of the last one when it is plain digits.
    content_lengths: usize,
    content_length: Option<u64>,
    /// Whether heads are known to start where the scan thinks they do (see above).
    aligned: bool,
    /// Bytes of the current body still to pass over, while aligned.
    body_left: u64,
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
            line: Line::start(),
            first_line: true,
            transfer_encoding: false,
            content_lengths: 0,
            content_length: None,
            aligned: true,
            body_left: 0,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let passed = usize::try_from(self.body_left).map_or(bytes.len(), |left| left.min(bytes.len()));
                bytes = &bytes[passed..];
                self.body_left -= passed as u64;
                continue;
            }
            let byte = match &mut self.line {
                Line::Rest => {
                    match memchr::memchr(b'\n', bytes) {
                        Some(end) => {
                            bytes = &bytes[end + 1..];
                            self.end_line();
                        }
                        None => return,
                    }
                    continue;
                }
                Line::Length(value, len) => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    if byte == b'\n' {
                        self.end_line();
                    } else {
                        if let Some(slot) = value.get_mut(*len) {
                            *slot = byte;
                        }
                        *len = len.saturating_add(1);
                    }
                    continue;
                }
                Line::Name(..) => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    byte
                }
            };
            let Line::Name(prefix, len) = &mut self.line else { continue };
            match byte {
                b'\n' => {
                    if *len == 0 {
                        // The blank line that ends a head (or, once not aligned, a line of a chunked body).
                        self.end_head();
                    }
                    self.end_line();
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
                        self.line = Line::Length([0; LENGTH_VALUE], 0);
                    } else if seen == b"transfer-encoding:" {
                        self.transfer_encoding = true;
                        self.line = Line::Rest;
                    } else {
                        let may_become = b"content-length:".starts_with(seen)
                            || b"transfer-encoding:".starts_with(seen)
                            || (self.first_line && b"pri ".starts_with(seen));
                        if !may_become {
                            self.line = Line::Rest;
                        }
                    }
                }
            }
        }
    }

    /// A line ended: a `Content-Length` value is read as hyper reads a lone one (digits, spaces around them).
    fn end_line(&mut self) {
        if let Line::Length(value, len) = &self.line {
            self.content_lengths += 1;
            let value = value.get(..*len).map(<[u8]>::trim_ascii).unwrap_or_default();
            self.content_length = if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(value).ok().and_then(|digits| digits.parse().ok())
            } else {
                None
            };
        }
        self.line = Line::start();
        self.first_line = false;
    }

    /// A head ended: flag it when it has both lengths, and pass over its body when its length is known.
    fn end_head(&mut self) {
        if self.transfer_encoding && self.content_lengths > 0 {
            (*self.framing).as_ref().both_lengths.store(true, Ordering::Relaxed);
        }
        if self.aligned {
            match (self.transfer_encoding, self.content_lengths, self.content_length) {
                (false, 0, _) => {}
                (false, 1, Some(length)) => self.body_left = length,
                _ => self.aligned = false,
            }
        }
        self.transfer_encoding = false;
        self.content_lengths = 0;
        self.content_length = None;
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

    /// Text that reads as a head with both lengths when it is scanned as header lines.
    const LOOKS_LIKE_BOTH: &[u8] = b"x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";

    fn with_body(content_length: &str, body: &[u8]) -> Vec<u8> {
        [format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:{content_length}\r\n\r\n").as_bytes(), body].concat()
    }

    #[test]
    fn a_body_of_known_length_is_passed_over_and_the_next_head_scanned() {
        let request = with_body(&format!(" {} ", LOOKS_LIKE_BOTH.len()), LOOKS_LIKE_BOTH);
        let next = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let both = [&request[..], next].concat();
        let bytes: Vec<&[u8]> = request.chunks(1).collect();
        assert!(!flags(&bytes));
        let bytes: Vec<&[u8]> = both.chunks(1).collect();
        assert!(flags(&bytes));
        for at in 1..both.len() {
            assert!(!flags(&[&request[..at.min(request.len())], &request[at.min(request.len())..]]), "split at {at}");
            assert!(flags(&[&both[..at], &both[at..]]), "split at {at}");
        }
        // A request without a body, then one with a body.
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(!flags(&[get, &request, get]));
        assert!(flags(&[get, &both]));
    }

    #[test]
    fn after_a_body_of_unknown_length_every_line_is_scanned() {
        // The scan cannot tell where these bodies end, so it reads them as it reads heads, as hyper might.
        for head in [
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            with_body(" +5", b""),
            with_body(" 5, 5", b""),
            with_body(" 99999999999999999999999", b""),
            [&with_body(" 5", b"")[..17], b"Content-Length: 5\r\n", &with_body(" 5", b"")[17..]].concat(),
        ] {
            assert!(flags(&[&head, LOOKS_LIKE_BOTH]), "{}", String::from_utf8_lossy(&head));
            assert!(flags(&[&head, b"12345", LOOKS_LIKE_BOTH]), "{}", String::from_utf8_lossy(&head));
        }
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
