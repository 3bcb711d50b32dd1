//! The command-line flags of the read APIs: what one read returns at most ([`ReadLimits`]) and how long a
//! discovery document gets. Flattened into [`crate::config::Flags`].

use clap::Args;

use super::ReadLimits;

/// Bounds on what the read APIs answer.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReadFlags {
    /// Entries a discovery document lists at most per group-version.
    #[arg(long, env = "CUSTOM_METRICS_DISCOVERY_MAX_METRICS", default_value_t = 1000)]
    pub discovery_max_metrics: usize,

    /// Items one list read (wildcard, every metric of an object, external) returns at most; a read that would
    /// return more is refused with 403.
    #[arg(long, env = "CUSTOM_METRICS_MAX_LIST_ITEMS", default_value_t = ReadLimits::default().max_list_items)]
    pub max_list_items: usize,

    /// Bytes of one read's response body at most; a read whose answer would be larger is refused with 403.
    #[arg(long, env = "CUSTOM_METRICS_MAX_RESPONSE_BYTES", default_value_t = ReadLimits::default().max_response_bytes)]
    pub max_response_bytes: usize,

    /// Bytes of a labelSelector or metricLabelSelector query value at most (after URL decoding); longer ones are
    /// refused with 400.
    #[arg(long, env = "CUSTOM_METRICS_MAX_SELECTOR_BYTES", default_value_t = ReadLimits::default().max_selector_bytes)]
    pub max_selector_bytes: usize,
}

impl From<&ReadFlags> for ReadLimits {
    fn from(flags: &ReadFlags) -> Self {
        ReadLimits {
            max_list_items: flags.max_list_items,
            max_response_bytes: flags.max_response_bytes,
            max_selector_bytes: flags.max_selector_bytes,
        }
    }
}
