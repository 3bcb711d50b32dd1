//! Real processes for the fault tests (docs/architecture.md §10, "Failure behaviour"): a `redis-server` that can be
//! SIGKILLed and started again on the same port and AOF directory, and adapter binaries (`--standalone
//! --store=redis://…`) on ports of their own that can be SIGKILLed and started again on the same ports.
//!
//! The Redis here runs with `appendfsync always`, unlike `store::redis_testing` (AOF with the default `everysec`):
//! the fault tests claim that no acknowledged write is lost when Redis is killed, and only `always` makes Redis
//! write and fsync a command to its AOF before it answers in every case (`everysec` may answer before writing while
//! a slow fsync is in progress).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to become ready: generous, for a debug build on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub use custom_metrics_apiserver::store::redis_testing::free_port;
use custom_metrics_apiserver::store::redis_testing::ping;

/// A `redis-server` with AOF (`appendfsync always`) on a free loopback port, in a directory of its own.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis { child: None, port: free_port(), dir: tempfile::tempdir().unwrap() };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:port/0`, as the store names itself in messages.
    pub fn address(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL, as in a crash: only what is in the AOF comes back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends a signal (STOP, CONT) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    }

    /// Starts it again on the same port and directory; returns once it answers PING (its AOF loaded).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"])
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (Debian's redis-server package)");
        self.child = Some(child);
        let started = Instant::now();
        while !ping(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(started.elapsed() < START_TIMEOUT, "redis-server on port {} never answered PING", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The adapter binary, held for the whole test: `ADAPTER_BIN` if set, else a hard link (or copy) of the one cargo
/// built, so that another build overwriting target/ in the middle of the test cannot swap the binary under a restart.
pub struct Binary {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Binary {
    pub fn get() -> Binary {
        let dir = tempfile::tempdir().unwrap();
        if let Some(preset) = std::env::var_os("ADAPTER_BIN") {
            return Binary { path: PathBuf::from(preset), _dir: dir };
        }
        let built = Path::new(env!("CARGO_BIN_EXE_custom-metrics-apiserver"));
        let path = dir.path().join("custom-metrics-apiserver");
        if std::fs::hard_link(built, &path).is_err() {
            std::fs::copy(built, &path).unwrap();
        }
        Binary { path, _dir: dir }
    }
}

/// One adapter process, standalone, on fixed loopback ports; its JSON log lines are kept.
pub struct Adapter {
    pub name: &'static str,
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    pub secure_port: u16,
    pub write_port: u16,
    cert_dir: tempfile::TempDir,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// HTTPS to the secure port, trusting only this adapter's certificate.
    client: Option<reqwest::Client>,
    /// Plain HTTP/1.1 to the write port.
    pub writer: reqwest::Client,
}

impl Adapter {
    /// Starts the adapter and waits until `/readyz` answers 200.
    pub async fn start(bin: &Binary, name: &'static str, args: &[String]) -> Adapter {
        Adapter::start_until(bin, name, args, true).await
    }

    /// Starts the adapter and waits until it serves (`/livez` answers 200), ready or not.
    pub async fn start_unready(bin: &Binary, name: &'static str, args: &[String]) -> Adapter {
        Adapter::start_until(bin, name, args, false).await
    }

    async fn start_until(bin: &Binary, name: &'static str, args: &[String], ready: bool) -> Adapter {
        super::install_crypto();
        let mut adapter = Adapter {
            name,
            child: None,
            bin: bin.path.clone(),
            args: args.to_vec(),
            secure_port: free_port(),
            write_port: free_port(),
            cert_dir: tempfile::tempdir().unwrap(),
            logs: Arc::default(),
            client: None,
            writer: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        adapter.spawn(ready).await;
        adapter
    }

    async fn spawn(&mut self, ready: bool) {
        let mut child = Command::new(&self.bin)
            .args(["--standalone", "--log-format=json"])
            .arg(format!("--secure-port={}", self.secure_port))
            .arg(format!("--write-port={}", self.write_port))
            .arg(format!("--cert-dir={}", self.cert_dir.path().display()))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::clone(&self.logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("adapter {} exited: {status}; its log:\n{}", self.name, self.logs.lock().unwrap().join("\n"));
            }
            let cert = self.cert_dir.path().join("apiserver.crt");
            if self.client.is_none()
                && let Ok(pem) = std::fs::read(&cert)
                && let Ok(cert) = reqwest::Certificate::from_pem(&pem)
            {
                let client =
                    reqwest::Client::builder().add_root_certificate(cert).timeout(Duration::from_secs(60)).build();
                self.client = Some(client.unwrap());
            }
            let endpoint = if ready { "/readyz" } else { "/livez" };
            if self.client.is_some() && self.get(endpoint).await.0 == 200 {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "adapter {} never answered {endpoint} with 200; its log:\n{}",
                self.name,
                self.logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the killed adapter again, same flags and ports, and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.client = None;
        self.spawn(true).await;
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.secure_port)
    }

    pub fn write_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.write_port)
    }

    /// GET on the secure port: (status, body); a transport error as status 0.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let Some(client) = &self.client else {
            return (0, "no certificate yet".into());
        };
        match client.get(self.api_url(path)).send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(error) => (0, error.to_string()),
        }
    }

    pub async fn ready(&self) -> bool {
        self.get("/readyz").await.0 == 200
    }

    /// POST `body` to a write path: (status, body).
    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let response = self.writer.post(self.write_url(path)).body(body.to_string()).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// DELETE a write path: (status, body).
    pub async fn delete(&self, path: &str) -> (u16, String) {
        let response = self.writer.delete(self.write_url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The `fields` of every JSON log line so far.
    pub fn log_fields(&self) -> Vec<serde_json::Value> {
        let lines = self.logs.lock().unwrap();
        lines
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|log| log["fields"].clone())
            .collect()
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP proxy to a loopback port that can hold what its clients send, as a network that delays packets: held
/// bytes are delivered, in order, once released (also after the client closed its side).
pub struct Proxy {
    pub port: u16,
    hold: tokio::sync::watch::Sender<bool>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::sync::watch::Sender::new(false);
        let released = hold.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut released = released.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    });
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                        let _ = released.wait_for(|held| !*held).await;
                        if to_server.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                    let _ = to_server.shutdown().await;
                });
            }
        });
        Proxy { port, hold, _task: tokio_util::task::AbortOnDropHandle::new(task) }
    }

    /// Holds (true) or delivers (false) what clients send.
    pub fn hold(&self, held: bool) {
        self.hold.send_replace(held);
    }
}
