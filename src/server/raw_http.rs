//! Raw HTTP/1.1 over a plain TCP stream, for tests that must control the connection itself (keep it open, see when
//! the server closes it), which an HTTP client library hides.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an answer it expects.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Sends a GET of `path` with the extra header lines `headers` (each ending in `\r\n`) and returns the status code
/// of the answer; `None` when the request could not be sent or no answer came within [`ANSWER_WITHIN`].
pub async fn get_status(stream: &mut TcpStream, path: &str, headers: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(ANSWER_WITHIN, stream.read(&mut buf)).await.ok()?.ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether the server closes `stream` within `within` (it reads end-of-file or an error).
pub async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(within, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}
