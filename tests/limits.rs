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

/// Sends `request` on a new connection to `addr` and returns everything the server sent until it closed.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).await
}

fn chunked_write(metric: &str, framing: &str) -> Vec<u8> {
    format!(
        "POST /write-metrics/namespaces/default/pods/p/{metric} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}\r\n2\r\n42\r\n0\r\n\r\n"
    )
    .into_bytes()
}

async fn stored(server: &common::TestServer, metric: &str) -> bool {
    let (status, _) =
        server.get(&format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p/{metric}")).await;
    status == 200
}

#[tokio::test]
async fn a_transfer_encoding_other_than_chunked_alone_is_refused_with_501_and_stores_nothing() {
    let server = common::start(&[]).await;
    for (metric, framing) in [
        ("a", "Transfer-Encoding: gzip, chunked\r\n"),
        ("b", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
        ("c", "Transfer-Encoding: chunked, chunked\r\n"),
    ] {
        let response = exchange(server.write, &chunked_write(metric, framing)).await;
        assert!(response.starts_with("HTTP/1.1 501"), "{framing:?}: {response}");
        assert!(response.contains(r#""kind":"Status""#) && response.contains("Transfer-Encoding"), "{response}");
        assert!(!stored(&server, metric).await, "{framing:?} stored a value");
    }
    // hyper refuses a coding after chunked itself (with a bare 400).
    let response = exchange(server.write, &chunked_write("d", "Transfer-Encoding: chunked, gzip\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(!stored(&server, "d").await);
    // Chunked alone is fine.
    let response = exchange(server.write, &chunked_write("e", "Transfer-Encoding: chunked\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(stored(&server, "e").await);
    server.stop().await;
}

#[tokio::test]
async fn both_transfer_encoding_and_content_length_are_refused_with_400_and_store_nothing() {
    let server = common::start(&[]).await;
    for (metric, framing) in [
        ("a", "Content-Length: 12\r\nTransfer-Encoding: chunked\r\n"),
        ("b", "transfer-encoding: chunked\r\ncontent-length: 12\r\n"),
    ] {
        let response = exchange(server.write, &chunked_write(metric, framing)).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{framing:?}: {response}");
        assert!(response.contains("both Transfer-Encoding and Content-Length"), "{response}");
        assert!(!stored(&server, metric).await, "{framing:?} stored a value");
    }
    server.stop().await;
}

#[tokio::test]
async fn framing_is_checked_on_the_secure_port_too() {
    use rustls::pki_types::pem::PemObject;
    let server = common::start(&[]).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(server.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    for (framing, status) in [
        ("Transfer-Encoding: gzip, chunked\r\n", "501"),
        ("Content-Length: 12\r\nTransfer-Encoding: chunked\r\n", "400"),
    ] {
        let tcp = TcpStream::connect(server.secure).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request =
            format!("POST /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}\r\n2\r\n42\r\n0\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with(&format!("HTTP/1.1 {status}")), "{framing:?}: {response}");
    }
    server.stop().await;
}
