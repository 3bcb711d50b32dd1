//! Serving: TLS, the accept loop with its limits, health endpoints and shutdown. Knows nothing of metrics.

pub mod body;
pub mod flags;
pub mod framing;
pub mod health;
pub mod idle;
pub mod listener;
#[cfg(test)]
pub mod raw_http;
pub mod shutdown;
pub mod tls;
pub mod unauthenticated;
