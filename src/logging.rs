//! The logging of the binary: its flags, and klog's `-v` mapped onto tracing levels.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the binary logs. Flattened into [`crate::config::Flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct LoggingFlags {
    /// Log format.
    #[arg(long, env = "CUSTOM_METRICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log verbosity, as klog's -v: 0 logs start-up and warnings, 4 adds debug detail, 6 and more trace.
    #[arg(short = 'v', long = "v", env = "CUSTOM_METRICS_V", default_value_t = 0)]
    pub verbosity: u8,
}

/// The filter for `-v=verbosity`: this crate at info (0-3), debug (4-5) or trace (6 and more), every other crate
/// at warn, and kube's client at error whatever the verbosity, because its warn and debug lines print whole
/// response bodies (a TokenReview answer echoes the token, a Secret's metadata can hold its data in an
/// annotation). `RUST_LOG`, read by the binary instead when set, is for development.
pub fn filter(verbosity: u8) -> EnvFilter {
    let level = match verbosity {
        0..=3 => "info",
        4..=5 => "debug",
        _ => "trace",
    };
    EnvFilter::new(format!("warn,kube_client=error,custom_metrics_apiserver={level}"))
}

/// Log capture for tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    /// Every line written through a subscriber built `.with_writer(captured.clone())`, kept for the test to read.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// What was written so far.
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }
}
