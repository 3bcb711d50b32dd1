//! The log filter of the binary: klog's `-v` mapped onto tracing levels.

use tracing_subscriber::EnvFilter;

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
