//! A real `redis-server` for tests (Debian's `redis-server` package): on a free loopback port, in a directory of its
//! own, with AOF on and RDB snapshots off; killed and its directory removed on drop. It can be killed and started
//! again on the same port and directory (the AOF brings its data back), or started afresh (a new, empty server).
//! [`RedisServer::start_tls`] serves TLS only, with a CA and certificate made for it; [`RedisServer::start_replica_of`]
//! is a replica of another test server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::redis::{CaBundle, DEFAULT_KEY_PREFIX, RedisOptions};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The TLS files of a server started with [`RedisServer::start_tls`].
struct Tls {
    /// The CA that signed the server's certificate, PEM.
    ca_pem: String,
    /// Directory of the CA, certificate and key files (apart from the data directory, which `replace` empties).
    dir: PathBuf,
}

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    tls: Option<Tls>,
    /// Arguments beyond the defaults (`--replicaof`).
    extra: Vec<String>,
}

fn new_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "custom-metrics-redis-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

impl RedisServer {
    /// Starts a server; panics with what to install if `redis-server` is missing.
    pub fn start() -> RedisServer {
        Self::start_with(None, Vec::new())
    }

    /// Starts a server that speaks TLS only (`--port 0 --tls-port`), with a certificate for 127.0.0.1 and
    /// `localhost` signed by a CA made for it ([`Self::ca_pem`]); clients need no certificate.
    pub fn start_tls() -> RedisServer {
        let dir = new_dir().with_extension("tls");
        std::fs::create_dir_all(&dir).expect("a directory for the TLS files");
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test Redis CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("a server key");
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, "test Redis");
        let cert = params.signed_by(&key, &issuer).expect("the server certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("the CA file");
        std::fs::write(dir.join("server.pem"), cert.pem()).expect("the certificate file");
        std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("the key file");
        Self::start_with(Some(Tls { ca_pem: ca.pem(), dir }), Vec::new())
    }

    /// Starts a replica of `primary` (`--replicaof`), plain TCP; it may still be copying the primary's data when
    /// this returns.
    pub fn start_replica_of(primary: &RedisServer) -> RedisServer {
        assert!(primary.tls.is_none(), "replicas of TLS servers are not supported here");
        Self::start_with(None, vec!["--replicaof".into(), "127.0.0.1".into(), primary.port.to_string()])
    }

    fn start_with(tls: Option<Tls>, extra: Vec<String>) -> RedisServer {
        let mut server = RedisServer { child: None, port: 0, dir: new_dir(), tls, extra };
        server.fresh();
        server
    }

    /// The PEM of the CA that signed a TLS server's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|tls| tls.ca_pem.as_str())
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port/0`, `rediss://` for a TLS server.
    pub fn address(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Options for a store on this server (a TLS server's own CA as `--store-ca-file` would give it).
    pub fn options(&self, max_staleness: Duration) -> RedisOptions {
        RedisOptions {
            address: self.address(),
            tls: self.tls.is_some(),
            ca: self.tls.as_ref().map(|tls| CaBundle(tls.ca_pem.clone().into_bytes())),
            host: "127.0.0.1".into(),
            port: self.port,
            db: 0,
            username: None,
            password: None,
            max_staleness,
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
            key_prefix: DEFAULT_KEY_PREFIX.into(),
        }
    }

    /// Kills the server (SIGKILL): what it had not written to its AOF is lost, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory: it reloads its AOF.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(self.port);
    }

    /// Replaces the server with a new, empty one on the same port (another `run_id`, none of the old data).
    pub fn replace(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        self.spawn(self.port);
    }

    fn fresh(&mut self) {
        for _ in 0..5 {
            let port = free_port();
            if self.try_spawn(port) {
                return;
            }
        }
        panic!("redis-server did not start on any of 5 free ports (see the messages above)");
    }

    fn spawn(&mut self, port: u16) {
        assert!(self.try_spawn(port), "redis-server did not start again on port {port}");
    }

    fn try_spawn(&mut self, port: u16) -> bool {
        std::fs::create_dir_all(&self.dir).expect("a directory for redis-server");
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(tls.dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(tls.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(tls.dir.join("ca.pem")),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", ""])
            // A replica (start_replica_of) gets its first copy at once rather than after the default 5 s.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: the Redis store's tests need a real Redis; install Debian's package \
                 (apt-get install redis-server)"
            ),
            Err(error) => panic!("cannot run redis-server: {error}"),
        };
        self.child = Some(child);
        self.port = port;
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            // A TLS server is up once it accepts connections: PING would need a TLS client here.
            let up = if self.tls.is_some() { TcpStream::connect(("127.0.0.1", port)).is_ok() } else { ping(port) };
            if up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

/// Whether a server on `port` answers PING (and has finished loading: it answers -LOADING while it reads its AOF).
pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    matches!(stream.read(&mut answer), Ok(n) if answer[..n].starts_with(b"+PONG"))
}
