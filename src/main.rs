//! The `custom-metrics-apiserver` binary: parse the configuration, start logging, serve until SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use custom_metrics_apiserver::config::{Config, Flags, LogFormat};
use custom_metrics_apiserver::server::shutdown;
use custom_metrics_apiserver::{app, logging};
use tracing_subscriber::EnvFilter;

/// Exit code for a bad configuration (EX_USAGE), as linkerd and many daemons use.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::from_flags(flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(&config, shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            ExitCode::FAILURE
        }
    }
}

/// klog's -v mapped onto tracing levels ([`logging::filter`]); `RUST_LOG` overrides it.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| logging::filter(config.logging.verbosity));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.logging.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
