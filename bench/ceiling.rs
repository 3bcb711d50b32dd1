//! The machine's ceiling for `bench/run`: a trivial hyper server that reads each request body fully and answers
//! 200 with an empty body, on a plain-HTTP port and on a TLS port (HTTP/2 or HTTP/1.1 by ALPN). Prints
//! `ceiling http=ADDR https=ADDR` on stdout once both listen.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

async fn ok(request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    Ok(Response::new(Empty::new()))
}

fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S) {
    tokio::spawn(Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), service_fn(ok)).into_owned());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let (cert, der) = (key.cert.der().clone(), PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(der))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));

    let (http, https) = (TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?);
    println!("ceiling http={} https={}", http.local_addr()?, https.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = http.accept().await {
            let _ = stream.set_nodelay(true);
            serve(stream);
        }
    });
    while let Ok((stream, _)) = https.accept().await {
        let (_, acceptor) = (stream.set_nodelay(true), acceptor.clone());
        tokio::spawn(async move {
            if let Ok(stream) = acceptor.accept(stream).await {
                serve(stream);
            }
        });
    }
    Ok(())
}
