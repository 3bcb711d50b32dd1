//! Clients that try to exhaust the server's connections without credentials (issue 10, finding 1): idle HTTP/2
//! connections that answer PINGs, trickled bodies and prefaces, and floods of connections that never send a
//! request. Small limits make each run in seconds.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// An HTTP/2 (prior knowledge) client connection to `addr`: its request handle, and the task that drives the
/// connection (answering the server's PINGs), which ends when the server closes it.
async fn h2_connect(addr: SocketAddr) -> (h2::client::SendRequest<Bytes>, h2::PingPong, JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let ping_pong = connection.ping_pong().unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, ping_pong, driver)
}

/// GET `path` over an HTTP/2 connection; the status.
async fn h2_get(client: &mut h2::client::SendRequest<Bytes>, path: &str) -> u16 {
    let ready = client.clone().ready().await.unwrap();
    *client = ready;
    let request = http::Request::get(format!("http://127.0.0.1{path}")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    response.await.unwrap().status().as_u16()
}

/// Sends a PING every `every` until the connection is gone, as a client that only keeps its connection alive.
fn keep_pinging(mut ping_pong: h2::PingPong, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if ping_pong.ping(h2::Ping::opaque()).await.is_err() {
                break;
            }
        }
    })
}

/// Whether the server closes the connection driven by `driver` within `within`.
async fn closed_within(driver: JoinHandle<()>, within: Duration) -> bool {
    tokio::time::timeout(within, driver).await.is_ok()
}

/// Reads until the server closes the connection (or `within` passes); what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.is_ok().then(|| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn an_http2_connection_that_only_answers_pings_is_closed_after_the_idle_timeout() {
    let server = common::start(&["--idle-timeout=500ms", "--header-read-timeout=500ms"]).await;
    let (mut client, ping_pong, driver) = h2_connect(server.write).await;
    assert_eq!(h2_get(&mut client, "/readyz").await, 200);
    // A PING every 100 ms: bytes both ways, but no request.
    let _pinger = keep_pinging(ping_pong, Duration::from_millis(100));
    assert!(closed_within(driver, Duration::from_secs(10)).await, "a connection answering PINGs was kept open");
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    let server = common::start(&["--idle-timeout=60s", "--header-read-timeout=500ms"]).await;
    let (_client, ping_pong, driver) = h2_connect(server.write).await;
    let _pinger = keep_pinging(ping_pong, Duration::from_millis(100));
    assert!(closed_within(driver, Duration::from_secs(10)).await, "an HTTP/2 connection without a request stayed");
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_http2_preface_is_cut_off() {
    let server = common::start(&["--idle-timeout=60s", "--header-read-timeout=500ms"]).await;
    let mut stream = TcpStream::connect(server.write).await.unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let trickle = async {
        for byte in preface {
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    let cut_off = tokio::time::timeout(Duration::from_secs(10), trickle).await.unwrap_or(false);
    // Either a write failed on the closed connection, or the preface is sent and the close follows.
    assert!(cut_off || read_until_closed(&mut stream, Duration::from_secs(5)).await.is_some());
    server.stop().await;
}

/// A write whose body of `len` bytes is sent one byte every 300 ms.
async fn trickled_write(addr: SocketAddr, path: &str, body: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    for byte in body {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    read_until_closed(&mut stream, Duration::from_secs(10)).await
}

#[tokio::test]
async fn a_trickled_body_is_answered_with_408_and_nothing_is_stored() {
    let server = common::start(&["--request-body-timeout=500ms"]).await;
    let path = "/write-metrics/namespaces/default/pods/slow/m";
    // Ten digits in 3 s: a valid value, far too slowly.
    let response = trickled_write(server.write, path, b"1111111111").await.expect("the connection stayed open");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains(r#""reason":"Timeout""#) && response.contains("--request-body-timeout"), "{response}");
    let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/slow/m").await;
    assert_eq!(status, 404, "the trickled value was stored");
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_http2_body_is_answered_with_408_and_nothing_is_stored() {
    let server = common::start(&["--request-body-timeout=500ms"]).await;
    let (client, _ping_pong, _driver) = h2_connect(server.write).await;
    let mut client = client.ready().await.unwrap();
    let request =
        http::Request::post("http://127.0.0.1/write-metrics/namespaces/default/pods/slow2/m").body(()).unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let trickler = tokio::spawn(async move {
        for _ in 0..10 {
            if body.send_data(Bytes::from_static(b"1"), false).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = body.send_data(Bytes::new(), true);
    });
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("no answer").unwrap();
    assert_eq!(response.status().as_u16(), 408);
    trickler.abort();
    let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/slow2/m").await;
    assert_eq!(status, 404, "the trickled value was stored");
    server.stop().await;
}

/// Opens `count` TCP connections to `addr` that never send anything.
async fn silent_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    streams
}

/// A keep-alive HTTP/1.1 connection that completed one write; `true` if another write on it is answered 200.
async fn write_on(stream: &mut TcpStream) -> bool {
    const WRITE: &[u8] =
        b"POST /write-metrics/namespaces/default/pods/p/m HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n7";
    if stream.write_all(WRITE).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        _ => false,
    }
}

#[tokio::test]
async fn connections_without_a_completed_request_make_way_for_the_others_oldest_first() {
    // Long deadlines: only the cap on unauthenticated connections can help here.
    let server = common::start(&[
        "--max-connections=40",
        "--max-unauthenticated-connections=10",
        "--header-read-timeout=60s",
        "--idle-timeout=60s",
    ])
    .await;
    // Standalone, a connection that completed a request counts as authenticated.
    let mut writers = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.write).await.unwrap();
        assert!(write_on(&mut stream).await);
        writers.push(stream);
    }
    // Far more silent connections than there is room for.
    let mut silent = silent_connections(server.write, 200).await;
    // A new client is served, and every writer's connection still is.
    let (status, body) = server.post("/write-metrics/namespaces/default/pods/new/m", "1").await;
    assert_eq!(status, 200, "{body}");
    for (i, stream) in writers.iter_mut().enumerate() {
        assert!(write_on(stream).await, "writer {i} lost its connection");
    }
    // The oldest silent connections were closed; the newest are open.
    let mut closed = Vec::new();
    for stream in &mut silent {
        closed.push(read_until_closed(stream, Duration::from_millis(20)).await.is_some());
    }
    assert!(closed[0] && closed[100], "the oldest silent connections were not closed");
    assert!(!closed[199], "the newest silent connection was closed");
    server.stop().await;
}

#[tokio::test]
async fn the_audit_attack_leaves_probes_reads_and_new_clients_served() {
    let server = common::start(&[
        "--max-connections=300",
        "--max-unauthenticated-connections=100",
        "--header-read-timeout=2s",
        "--idle-timeout=2s",
        "--request-body-timeout=1s",
    ])
    .await;
    let (status, body) = server.post("/write-metrics/namespaces/default/pods/p/m", "42").await;
    assert_eq!(status, 200, "{body}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    // Idle HTTP/2 connections answering PINGs, many times the cap, on the write port (cheap to open) ...
    for _ in 0..4 {
        let (addr, stop) = (server.write, std::sync::Arc::clone(&stop));
        attackers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
                    && let Ok(Ok((client, mut connection))) =
                        tokio::time::timeout(Duration::from_secs(1), h2::client::handshake(tcp)).await
                {
                    let pinger = connection.ping_pong().map(|p| keep_pinging(p, Duration::from_millis(200)));
                    held.push((client, tokio::spawn(connection), pinger));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // ... silent connections on the secure port (no TLS handshake) ...
    for _ in 0..2 {
        let (addr, stop) = (server.secure, std::sync::Arc::clone(&stop));
        attackers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                    held.push(tcp);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // ... and trickled bodies and prefaces.
    for i in 0..20 {
        let (addr, stop) = (server.write, std::sync::Arc::clone(&stop));
        attackers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if i % 2 == 0 {
                    let _ = trickled_write(addr, "/write-metrics/namespaces/default/pods/slow/m", b"1111111111").await;
                } else if let Ok(mut stream) = TcpStream::connect(addr).await {
                    for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
                        if stream.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // For several idle timeouts, probes, reads and new writers keep being served.
    for round in 0..12 {
        let probe = server.client.get(server.api_url("/readyz")).send().await;
        assert_eq!(probe.map(|r| r.status().as_u16()).ok(), Some(200), "/readyz in round {round}");
        let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p/m").await;
        assert_eq!(status, 200, "read in round {round}");
        let fresh = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let write = fresh.post(server.write_url("/write-metrics/namespaces/default/pods/q/m")).body("1").send().await;
        assert_eq!(write.map(|r| r.status().as_u16()).ok(), Some(200), "new writer in round {round}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }
    let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/slow/m").await;
    assert_eq!(status, 404, "a trickled value was stored");
    server.stop().await;
}
