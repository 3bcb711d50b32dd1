//! The command-line flags of the store: which store ([`Backend`]), its limits ([`Limits`]) and the default lifetime
//! of a value. Flattened into [`crate::config::Flags`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::redis::{CaBundle, Password, RedisOptions};
use super::{Backend, Limits, RateLimits};
use crate::duration::parse_duration;

/// The environment variable that may carry the Redis password, so that it never has to sit in a flag.
pub const PASSWORD_ENV: &str = "CUSTOM_METRICS_STORE_PASSWORD";

/// What the store holds at most, and for how long a value lives unless its write says.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StoreFlags {
    /// Where values are kept: `memory` (this process only), or `redis://[user:password@]host:port[/db]` to share
    /// them between replicas through Redis or Valkey (docs/architecture.md §10); `rediss://` for TLS. The password is
    /// better given with --store-password-file or the environment variable CUSTOM_METRICS_STORE_PASSWORD.
    #[arg(long, env = "CUSTOM_METRICS_STORE", default_value = "memory")]
    pub store: String,

    /// File holding the Redis password (trailing newline ignored); with a `redis://` store only.
    #[arg(long, env = "CUSTOM_METRICS_STORE_PASSWORD_FILE")]
    pub store_password_file: Option<PathBuf>,

    /// PEM file of the CA (one or more certificates) that signed the Redis server's certificate; with a `rediss://`
    /// store only [default: the system's trusted roots].
    #[arg(long, env = "CUSTOM_METRICS_STORE_CA_FILE")]
    pub store_ca_file: Option<PathBuf>,

    /// With a `redis://` store: how long reads are still served from this replica's copy while it cannot follow
    /// Redis; past it the replica reports not ready (/readyz).
    #[arg(long, env = "CUSTOM_METRICS_STORE_MAX_STALENESS", default_value = "30s", value_parser = parse_duration)]
    pub store_max_staleness: Duration,

    /// With a `redis://` store: Redis replicas that must have confirmed each write (`WAIT`) before it is
    /// acknowledged; a write fewer confirmed is answered 503 (it may still be stored). 0 waits for none.
    #[arg(long, env = "CUSTOM_METRICS_STORE_WAIT_REPLICAS", default_value_t = 0)]
    pub store_wait_replicas: u32,

    /// With --store-wait-replicas: how long a write waits for the replicas' confirmations at most.
    #[arg(long, env = "CUSTOM_METRICS_STORE_WAIT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub store_wait_timeout: Duration,

    /// Lifetime of every written value unless the write gives `ttl`; 0 keeps values until overwritten.
    #[arg(long, env = "CUSTOM_METRICS_METRIC_TTL", default_value = "0", value_parser = parse_duration)]
    pub metric_ttl: Duration,

    /// Series the store holds at most (custom and external together); writes beyond are refused with 403.
    #[arg(long, env = "CUSTOM_METRICS_MAX_SERIES", default_value_t = Limits::default().max_series)]
    pub max_series: usize,

    /// Labels one series may carry; writes with more are refused with 422.
    #[arg(long, env = "CUSTOM_METRICS_MAX_LABELS_PER_SERIES", default_value_t = Limits::default().max_labels_per_series)]
    pub max_labels_per_series: usize,

    /// Bytes of label keys and values one series may carry, all labels together; writes with more are refused with
    /// 422.
    #[arg(long, env = "CUSTOM_METRICS_MAX_LABEL_BYTES_PER_SERIES", default_value_t = Limits::default().max_label_bytes_per_series)]
    pub max_label_bytes_per_series: usize,

    /// Bytes the store may hold (names, labels and a measured overhead per series); writes beyond are refused with
    /// 403 [default: half the container's memory limit (cgroup), else 268435456 (256 MiB)].
    #[arg(long, env = "CUSTOM_METRICS_MAX_STORE_BYTES")]
    pub max_store_bytes: Option<usize>,

    /// How far back a counter's samples are kept, and the span its rate (`x_per_second`) is computed over
    /// (docs/wire-contract.md §4.6); more than 0.
    #[arg(long, env = "CUSTOM_METRICS_RATE_WINDOW", default_value = "2m", value_parser = parse_rate_window)]
    pub rate_window: Duration,

    /// Samples one counter series keeps at most, its latest value included (16 bytes each, counted in
    /// --max-store-bytes); a counter written more often keeps only its latest ones, so its rate spans less than
    /// --rate-window. At least 2.
    #[arg(long, env = "CUSTOM_METRICS_RATE_MAX_SAMPLES", default_value_t = RateLimits::default().max_samples, value_parser = parse_rate_max_samples)]
    pub rate_max_samples: usize,
}

/// `--rate-window`: a duration above 0 (a rate needs a span).
fn parse_rate_window(text: &str) -> Result<Duration, String> {
    let window = parse_duration(text)?;
    if window < Duration::from_millis(1) {
        return Err("the rate window must be at least 1ms (2m is the default)".into());
    }
    Ok(window)
}

/// `--rate-max-samples`: at least 2 (a rate needs two samples).
fn parse_rate_max_samples(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(samples) if samples >= 2 => Ok(samples),
        Ok(_) => Err("a rate needs two samples: give at least 2".into()),
        Err(e) => Err(format!("{text:?} is not a number of samples: {e}")),
    }
}

impl StoreFlags {
    /// The store's limits; without --max-store-bytes the budget is derived from the container's memory limit.
    pub fn limits(&self) -> Limits {
        Limits {
            max_series: self.max_series,
            max_labels_per_series: self.max_labels_per_series,
            max_label_bytes_per_series: self.max_label_bytes_per_series,
            max_store_bytes: self.max_store_bytes.unwrap_or_else(super::budget::default_max_store_bytes),
            rates: RateLimits { window: self.rate_window, max_samples: self.rate_max_samples },
        }
    }

    /// The lifetime of a value written without `ttl`; `None` keeps it until overwritten.
    pub fn default_ttl(&self) -> Option<Duration> {
        (!self.metric_ttl.is_zero()).then_some(self.metric_ttl)
    }
}

/// Why the store flags do not describe a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreConfigError {
    /// Neither `memory` nor a URL.
    #[error("--store={0:?}: expected `memory` or a URL such as redis://host:6379/0")]
    Unknown(String),
    /// A CA file without TLS to use it for.
    #[error("--store-ca-file is given but {0} does not use TLS; use a rediss:// URL or drop the flag")]
    CaWithoutTls(String),
    /// The CA file cannot be read or holds no certificate.
    #[error("--store-ca-file={path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// The cause.
        reason: String,
    },
    /// A `redis://` URL that does not parse or lacks a part.
    #[error("--store={url}: {reason}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The password file cannot be read.
    #[error("--store-password-file={path}: {reason}")]
    PasswordFile {
        /// The file.
        path: String,
        /// The cause.
        reason: String,
    },
    /// More than one source of the password.
    #[error("the Redis password is given more than once ({0}); give it in one place")]
    PasswordTwice(String),
    /// A password for the in-memory store.
    #[error("{0} is given but --store=memory has no password; drop it or choose a redis:// store")]
    PasswordWithoutRedis(&'static str),
    /// Waiting for replicas of a store that has none.
    #[error("--store-wait-replicas is given but --store=memory has no replicas; drop it or choose a redis:// store")]
    WaitWithoutRedis,
    /// A wait of zero would be no wait at all (`WAIT n 0` blocks forever).
    #[error("--store-wait-timeout must be greater than zero")]
    ZeroWaitTimeout,
    /// A staleness of zero would make every replica not ready.
    #[error("--store-max-staleness must be greater than zero")]
    ZeroStaleness,
}

impl StoreFlags {
    /// The store to open, with the password from --store-password-file or [`PASSWORD_ENV`].
    pub fn backend(&self) -> Result<Backend, StoreConfigError> {
        self.backend_with(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
    }

    /// [`Self::backend`] with the environment's password given.
    pub fn backend_with(&self, env_password: Option<String>) -> Result<Backend, StoreConfigError> {
        let store = self.store.trim();
        if store == "memory" {
            if self.store_password_file.is_some() {
                return Err(StoreConfigError::PasswordWithoutRedis("--store-password-file"));
            }
            if env_password.is_some() {
                return Err(StoreConfigError::PasswordWithoutRedis(PASSWORD_ENV));
            }
            if self.store_ca_file.is_some() {
                return Err(StoreConfigError::CaWithoutTls("--store=memory".into()));
            }
            if self.store_wait_replicas > 0 {
                return Err(StoreConfigError::WaitWithoutRedis);
            }
            return Ok(Backend::Memory);
        }
        if self.store_max_staleness.is_zero() {
            return Err(StoreConfigError::ZeroStaleness);
        }
        if self.store_wait_timeout.is_zero() {
            return Err(StoreConfigError::ZeroWaitTimeout);
        }
        let url = ::redis::parse_redis_url(store).ok_or_else(|| StoreConfigError::Unknown(store.to_string()))?;
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let shown = shown.to_string();
        let bad = |reason: &str| StoreConfigError::Url { url: shown.clone(), reason: reason.to_string() };
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return Err(StoreConfigError::Unknown(shown)),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?.to_string();
        let port = url.port().unwrap_or(6379);
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| bad("the path must be a database number such as /0"))?,
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment is understood; give redis://[user:password@]host:port[/db]"));
        }
        let ca = match (&self.store_ca_file, tls) {
            (None, _) => None,
            (Some(_), false) => return Err(StoreConfigError::CaWithoutTls(format!("--store={shown}"))),
            (Some(path), true) => Some(read_ca(path)?),
        };
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let username = Some(decode(url.username())).filter(|u| !u.is_empty());
        let mut sources = Vec::new();
        let mut password = None;
        if let Some(p) = url.password() {
            sources.push("in --store");
            password = Some(decode(p));
        }
        if let Some(path) = &self.store_password_file {
            sources.push("--store-password-file");
            let text = std::fs::read_to_string(path).map_err(|e| StoreConfigError::PasswordFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            password = Some(text.trim_end_matches(['\r', '\n']).to_string());
        }
        if let Some(p) = env_password {
            sources.push(PASSWORD_ENV);
            password = Some(p);
        }
        if sources.len() > 1 {
            return Err(StoreConfigError::PasswordTwice(sources.join(", ")));
        }
        Ok(Backend::Redis(RedisOptions {
            address: format!("{}://{host}:{port}/{db}", url.scheme()),
            tls,
            ca,
            host,
            port,
            db,
            username,
            password: password.map(Password),
            max_staleness: self.store_max_staleness,
            wait_replicas: self.store_wait_replicas,
            wait_timeout: self.store_wait_timeout,
            key_prefix: super::redis::DEFAULT_KEY_PREFIX.to_string(),
        }))
    }
}

/// Reads a CA bundle and checks that it holds at least one certificate, so that a wrong file is refused at start-up
/// rather than as a TLS failure on every connection.
fn read_ca(path: &std::path::Path) -> Result<CaBundle, StoreConfigError> {
    let error = |reason: String| StoreConfigError::CaFile { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not a PEM certificate bundle: {e}")))?;
    if certificates.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(CaBundle(pem))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Test {
        #[command(flatten)]
        store: StoreFlags,
    }

    fn parse(args: &[&str], env: Option<&str>) -> Result<Backend, StoreConfigError> {
        let flags = Test::try_parse_from(std::iter::once("test").chain(args.iter().copied())).unwrap().store;
        flags.backend_with(env.map(str::to_string))
    }

    #[test]
    fn the_rate_flags_bound_counters_histories() {
        let limits = |args: &[&str]| {
            Test::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|t| t.store.limits().rates)
        };
        assert_eq!(limits(&[]).unwrap(), RateLimits { window: Duration::from_secs(120), max_samples: 64 });
        let set = limits(&["--rate-window=30s", "--rate-max-samples=10"]).unwrap();
        assert_eq!(set, RateLimits { window: Duration::from_secs(30), max_samples: 10 });
        for bad in ["--rate-window=0", "--rate-window=soon", "--rate-max-samples=1", "--rate-max-samples=x"] {
            let error = limits(&[bad]).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(bad.split('=').next().unwrap()), "{bad}: {error}");
        }
    }

    fn redis(backend: Backend) -> RedisOptions {
        match backend {
            Backend::Redis(options) => options,
            Backend::Memory => panic!("memory"),
        }
    }

    #[test]
    fn memory_is_the_default_and_takes_no_password() {
        assert_eq!(parse(&[], None), Ok(Backend::Memory));
        assert_eq!(parse(&["--store=memory"], None), Ok(Backend::Memory));
        let error = parse(&[], Some("secret")).unwrap_err();
        assert!(error.to_string().contains(PASSWORD_ENV), "{error}");
        let error = parse(&["--store-password-file=/nonexistent"], None).unwrap_err();
        assert!(error.to_string().contains("--store-password-file"), "{error}");
    }

    #[test]
    fn a_redis_url_gives_address_database_and_credentials() {
        let options = redis(parse(&["--store=redis://127.0.0.1:7000/3"], None).unwrap());
        assert_eq!((options.host.as_str(), options.port, options.db), ("127.0.0.1", 7000, 3));
        assert_eq!(options.address, "redis://127.0.0.1:7000/3");
        assert_eq!((options.username, options.password), (None, None));
        assert_eq!(options.max_staleness, Duration::from_secs(30), "the default");
        let options =
            redis(parse(&["--store=redis://app:p%40ss@redis.example:6380", "--store-max-staleness=5s"], None).unwrap());
        assert_eq!((options.port, options.db, options.username.as_deref()), (6380, 0, Some("app")));
        assert_eq!(options.password, Some(Password("p@ss".into())), "percent-decoded");
        assert_eq!(options.max_staleness, Duration::from_secs(5));
        assert!(!format!("{options:?}").contains("p@ss"), "the password never shows in Debug");
        let options = redis(parse(&["--store=redis://h"], Some("from-env")).unwrap());
        assert_eq!((options.port, options.password), (6379, Some(Password("from-env".into()))));
    }

    #[test]
    fn the_password_file_is_read_and_one_source_only_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let flag = format!("--store-password-file={}", file.display());
        let options = redis(parse(&["--store=redis://h:1", &flag], None).unwrap());
        assert_eq!(options.password, Some(Password("s3cret".into())), "trailing newline dropped");
        let error = parse(&["--store=redis://h:1", &flag], Some("x")).unwrap_err();
        assert_eq!(error, StoreConfigError::PasswordTwice(format!("--store-password-file, {PASSWORD_ENV}")));
        let error = parse(&["--store=redis://:p@h:1", &flag], None).unwrap_err();
        assert!(matches!(error, StoreConfigError::PasswordTwice(_)), "{error}");
        let missing = format!("--store-password-file={}", dir.path().join("absent").display());
        let error = parse(&["--store=redis://h:1", &missing], None).unwrap_err();
        assert!(matches!(error, StoreConfigError::PasswordFile { .. }), "{error}");
    }

    #[test]
    fn rediss_takes_a_ca_file_that_must_hold_a_certificate() {
        let options = redis(parse(&["--store=rediss://redis.example:6380/1"], None).unwrap());
        assert_eq!(
            (options.address.as_str(), options.tls, options.ca.is_none()),
            ("rediss://redis.example:6380/1", true, true)
        );
        let options = redis(parse(&["--store=redis://h:1"], None).unwrap());
        assert!(!options.tls);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = crate::server::tls::self_signed().unwrap().cert;
        std::fs::write(&ca, &pem).unwrap();
        let flag = format!("--store-ca-file={}", ca.display());
        let options = redis(parse(&["--store=rediss://h:1", &flag], None).unwrap());
        assert_eq!(options.ca, Some(CaBundle(pem.into_bytes())));
        assert!(!format!("{options:?}").contains("BEGIN"), "Debug shows no PEM");
        for store in ["--store=redis://h:1", "--store=memory"] {
            let error = parse(&[store, &flag], None).unwrap_err();
            assert!(matches!(error, StoreConfigError::CaWithoutTls(_)), "{store}: {error}");
        }
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let error = parse(&["--store=rediss://h:1", &flag], None).unwrap_err().to_string();
        assert!(error.contains("--store-ca-file") && error.contains("no PEM certificate"), "{error}");
        let missing = format!("--store-ca-file={}", dir.path().join("absent").display());
        let error = parse(&["--store=rediss://h:1", &missing], None).unwrap_err();
        assert!(matches!(error, StoreConfigError::CaFile { .. }), "{error}");
    }

    #[test]
    fn waiting_for_replicas_needs_redis_and_a_timeout() {
        let options = redis(parse(&["--store=redis://h:1"], None).unwrap());
        assert_eq!((options.wait_replicas, options.wait_timeout), (0, Duration::from_secs(1)), "the defaults");
        let options = redis(
            parse(&["--store=redis://h:1", "--store-wait-replicas=2", "--store-wait-timeout=250ms"], None).unwrap(),
        );
        assert_eq!((options.wait_replicas, options.wait_timeout), (2, Duration::from_millis(250)));
        assert_eq!(parse(&["--store-wait-replicas=1"], None), Err(StoreConfigError::WaitWithoutRedis));
        assert_eq!(parse(&["--store-wait-replicas=0"], None), Ok(Backend::Memory));
        let error = parse(&["--store=redis://h:1", "--store-wait-replicas=1", "--store-wait-timeout=0"], None);
        assert_eq!(error, Err(StoreConfigError::ZeroWaitTimeout));
    }

    #[test]
    fn bad_store_urls_are_refused_with_the_reason() {
        for (store, expected) in [
            ("mem", "expected `memory` or a URL"),
            ("http://h:1", "expected `memory` or a URL"),
            ("redis://h:1/x", "database number"),
            ("redis://h:1/-1", "database number"),
            ("redis://h:1/0?timeout=1", "no query"),
        ] {
            let error = parse(&[&format!("--store={store}")], None).unwrap_err().to_string();
            assert!(error.contains(expected), "{store}: {error}");
        }
        let error = parse(&["--store=redis://:hunter2@h:1/x"], None).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "the password never shows in an error: {error}");
        let error = parse(&["--store=redis://h:1", "--store-max-staleness=0"], None).unwrap_err();
        assert_eq!(error, StoreConfigError::ZeroStaleness);
    }
}
