//! The connection limits and the graceful drain, seen from raw sockets on the plain write port.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; returns what it sent, or panics after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let result = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(result.is_ok(), "the server kept the connection open for {within:?}");
    String::from_utf8_lossy(&received).into_owned()
}

const WRITE: &[u8] =
    b"POST /write-metrics/namespaces/default/pods/p/m HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n7";

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = common::start(&["--header-read-timeout=300ms"]).await;
    let mut stream = TcpStream::connect(server.write).await.unwrap();
    stream.write_all(b"POST /write-metrics/namespaces/default/pods/p/m HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = common::start(&["--idle-timeout=300ms", "--header-read-timeout=60s"]).await;
    let mut stream = TcpStream::connect(server.write).await.unwrap();
    stream.write_all(WRITE).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    read_until_closed(&mut stream, Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = common::start(&["--max-connections=1"]).await;
    let mut first = TcpStream::connect(server.write).await.unwrap();
    // A completed request: standalone, the connection then counts as authenticated and keeps its slot.
    first.write_all(WRITE).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(server.write).await.unwrap();
    second.write_all(WRITE).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(early.is_err(), "the second connection was served while the first held the only slot");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test]
async fn when_all_connections_are_open_an_unauthenticated_one_makes_way_for_a_new_client() {
    let server = common::start(&["--max-connections=1"]).await;
    let mut first = TcpStream::connect(server.write).await.unwrap();
    // Let the server accept the first connection, which never sends a request, before the second arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = TcpStream::connect(server.write).await.unwrap();
    second.write_all(WRITE).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    read_until_closed(&mut first, Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let mut server = common::start(&[]).await;
    let write_addr = server.write;
    let mut stream = TcpStream::connect(write_addr).await.unwrap();
    // Headers sent, body not yet: the request is in flight.
    stream
        .write_all(b"POST /write-metrics/namespaces/default/pods/p/m HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n4")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let running = server.running.take().unwrap();
    let drained = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(TcpStream::connect(write_addr).await.is_err(), "a new connection was accepted during shutdown");
    stream.write_all(b"2").await.unwrap();
    let response = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    tokio::time::timeout(Duration::from_secs(5), drained).await.unwrap().unwrap();
}
