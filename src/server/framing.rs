//! How an HTTP/1.1 request body is framed: `Content-Length`, or `Transfer-Encoding: chunked` alone.
//!
//! hyper decodes any `Transfer-Encoding` whose last coding is `chunked` (`gzip, chunked` included) as plain
//! chunked, and refuses the rest itself with a bare 400. RFC 9112 §6.1 says a server answers 501 to a transfer
//! coding it does not understand: the listener does, before any handler sees the request. HTTP/2 carries no
//! `Transfer-Encoding` (the h2 crate resets such a stream).

use http::header::{self, HeaderValue};
use http::{Request, Version};

use crate::response::{HttpResponse, RequestError};

/// `Err` when the request's body framing is refused.
pub fn check<B>(request: &Request<B>) -> Result<(), RequestError> {
    if request.version() != Version::HTTP_11 {
        return Ok(());
    }
    let Some(first) = request.headers().get(header::TRANSFER_ENCODING) else {
        return Ok(());
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, encodings: &[&str]) -> Request<()> {
        let mut builder = Request::builder().method("POST").uri("/").version(version);
        for encoding in encodings {
            builder = builder.header(header::TRANSFER_ENCODING, *encoding);
        }
        builder.body(()).unwrap()
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
