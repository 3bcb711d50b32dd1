//! The admin listener's flags (docs/architecture.md §14), flattened into [`crate::config::Flags`].

use std::net::SocketAddr;

use clap::Args;

/// The default `--admin-address`: loopback only, reached with `kubectl port-forward`.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:8081";
/// The default `--admin-max-page-size`.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 1000;

/// The admin listener: the status page and its JSON twin.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AdminFlags {
    /// Address (ip:port) of the admin listener: plain HTTP serving the status page (every stored series, the
    /// adapter's state) and its JSON twin. Empty disables it. It has no authentication and shows everything
    /// stored, so it must be a loopback address (reach it with kubectl port-forward) unless
    /// --admin-allow-non-loopback is given. A port already taken is logged and the adapter serves without it.
    #[arg(long, env = "CUSTOM_METRICS_ADMIN_ADDRESS", default_value = DEFAULT_ADMIN_ADDRESS)]
    pub admin_address: String,

    /// Allow --admin-address to be a non-loopback address. Anyone who reaches it then reads every stored series
    /// and the adapter's state, without authentication: use it only behind a network policy that admits whom you
    /// trust.
    #[arg(long, env = "CUSTOM_METRICS_ADMIN_ALLOW_NON_LOOPBACK")]
    pub admin_allow_non_loopback: bool,

    /// Rows one view of the status page may show (its `limit` query parameter); a larger limit is refused with
    /// 400.
    #[arg(long, env = "CUSTOM_METRICS_ADMIN_MAX_PAGE_SIZE", default_value_t = DEFAULT_MAX_PAGE_SIZE)]
    pub admin_max_page_size: usize,
}

/// The validated admin listener's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminOptions {
    /// Where it listens.
    pub address: SocketAddr,
    /// The largest `limit` of a view.
    pub max_page_size: usize,
}

/// Why the admin flags do not make a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminConfigError {
    /// Not an address.
    #[error("--admin-address={0:?} is not an ip:port address (for example 127.0.0.1:8081; empty disables it)")]
    BadAddress(String),
    /// Not loopback, not allowed.
    #[error(
        "--admin-address={0} is not a loopback address: the status page has no authentication and shows everything stored; bind it to 127.0.0.1 or ::1 and use kubectl port-forward, or give --admin-allow-non-loopback"
    )]
    NotLoopback(SocketAddr),
}

impl AdminFlags {
    /// The listener's settings; `None` when disabled (an empty address).
    pub fn options(&self) -> Result<Option<AdminOptions>, AdminConfigError> {
        let given = self.admin_address.trim();
        if given.is_empty() {
            return Ok(None);
        }
        let address: SocketAddr = given.parse().map_err(|_| AdminConfigError::BadAddress(given.to_string()))?;
        if !address.ip().is_loopback() && !self.admin_allow_non_loopback {
            return Err(AdminConfigError::NotLoopback(address));
        }
        Ok(Some(AdminOptions { address, max_page_size: self.admin_max_page_size }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(address: &str, allow: bool) -> AdminFlags {
        AdminFlags {
            admin_address: address.into(),
            admin_allow_non_loopback: allow,
            admin_max_page_size: DEFAULT_MAX_PAGE_SIZE,
        }
    }

    #[test]
    fn loopback_is_required_unless_allowed_and_empty_disables() {
        let options = flags(DEFAULT_ADMIN_ADDRESS, false).options().unwrap().unwrap();
        assert_eq!(options.address, "127.0.0.1:8081".parse().unwrap());
        assert!(flags("[::1]:9000", false).options().unwrap().is_some());
        assert_eq!(flags("", false).options(), Ok(None));
        assert_eq!(flags("  ", false).options(), Ok(None));
        let refused = flags("0.0.0.0:8081", false).options().unwrap_err();
        assert_eq!(refused, AdminConfigError::NotLoopback("0.0.0.0:8081".parse().unwrap()));
        assert!(refused.to_string().contains("--admin-allow-non-loopback"), "{refused}");
        assert!(flags("10.1.2.3:8081", false).options().is_err());
        assert!(flags("0.0.0.0:8081", true).options().unwrap().is_some());
        let bad = flags("localhost:8081", false).options().unwrap_err();
        assert!(matches!(bad, AdminConfigError::BadAddress(_)), "{bad}");
    }
}
