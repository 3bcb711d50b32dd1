//! The command-line flags of the store: its limits ([`Limits`]) and the default lifetime of a value. Flattened
//! into [`crate::config::Flags`].

use std::time::Duration;

use clap::Args;

use super::Limits;
use crate::duration::parse_duration;

/// What the store holds at most, and for how long a value lives unless its write says.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StoreFlags {
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
}

impl StoreFlags {
    /// The store's limits; without --max-store-bytes the budget is derived from the container's memory limit.
    pub fn limits(&self) -> Limits {
        Limits {
            max_series: self.max_series,
            max_labels_per_series: self.max_labels_per_series,
            max_label_bytes_per_series: self.max_label_bytes_per_series,
            max_store_bytes: self.max_store_bytes.unwrap_or_else(super::budget::default_max_store_bytes),
        }
    }

    /// The lifetime of a value written without `ttl`; `None` keeps it until overwritten.
    pub fn default_ttl(&self) -> Option<Duration> {
        (!self.metric_ttl.is_zero()).then_some(self.metric_ttl)
    }
}
