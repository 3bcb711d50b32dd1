//! A real `redis-server` for tests (Debian's `redis-server` package): on a free loopback port, in a directory of its
//! own, with AOF on and RDB snapshots off; killed and its directory removed on drop. It can be killed and started
//! again on the same port and directory (the AOF brings its data back), or started afresh (a new, empty server).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::redis::{DEFAULT_KEY_PREFIX, RedisOptions};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server; panics with what to install if `redis-server` is missing.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "custom-metrics-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut server = RedisServer { child: None, port: 0, dir };
        server.fresh();
        server
    }

    /// `redis://127.0.0.1:port/0`.
    pub fn address(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Options for a store on this server.
    pub fn options(&self, max_staleness: Duration) -> RedisOptions {
        RedisOptions {
            address: self.address(),
            host: "127.0.0.1".into(),
            port: self.port,
            db: 0,
            username: None,
            password: None,
            max_staleness,
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
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", ""])
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
            if ping(port) {
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
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

/// Whether a server on `port` answers PING (and has finished loading).
fn ping(port: u16) -> bool {
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
