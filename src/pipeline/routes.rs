//! The route table: which endpoint serves a path, and the access rule it is served under
//! (docs/architecture.md §1.1).
//!
//! A route names the literal path prefixes it can serve, checked first, and a predicate that decides within them;
//! the first route that matches wins. Endpoints are an enum, not trait objects, so that dispatching a request
//! costs no allocation: a new endpoint (`/metrics`, an admin page, a forwarder) is one more [`Endpoint`] variant
//! and one more [`Route`] registered by the wiring.

use crate::admin::Admin;
use crate::api::Api;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::server::health::Health;

/// What a route requires of a request before its endpoint sees it. In standalone mode and on the plain write port
/// nobody is checked, whatever the rule ([`super::AccessControl::Open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Served without authentication or authorization.
    Always,
    /// Authenticated, then authorized as what the request path and method are (Kubernetes' `RequestInfo`), which
    /// includes `--authorization-always-allow-paths` (docs/wire-contract.md §6.3).
    Read,
    /// Authenticated, never anonymous (401), and authorized on what the write resolves to (`create`, or `delete`
    /// for DELETE), by the endpoint once it has resolved it (docs/wire-contract.md §10 item 12).
    Write,
}

/// The code that answers a route's requests.
pub enum Endpoint {
    /// `/healthz`, `/livez`, `/readyz` ([`Health`]).
    Health(Health),
    /// The Kubernetes APIs: discovery, metric reads, OpenAPI, `/version` ([`Api`]); answers 404s of its own.
    Api(Box<Api>),
    /// The write API ([`Ingest`]).
    Write(Ingest),
    /// `/metrics` ([`Metrics`]).
    Metrics(std::sync::Arc<Metrics>),
    /// The admin listener's status page ([`Admin`], docs/architecture.md §14).
    Admin(Box<Admin>),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endpoint::Health(_) => "Health",
            Endpoint::Api(_) => "Api",
            Endpoint::Write(_) => "Write",
            Endpoint::Metrics(_) => "Metrics",
            Endpoint::Admin(_) => "Admin",
        })
    }
}

/// One route: where it applies, its access rule, its endpoint.
#[derive(Debug)]
pub struct Route {
    prefixes: &'static [&'static str],
    matches: fn(&str) -> bool,
    access: Access,
    endpoint: Endpoint,
}

impl Route {
    /// A route for the paths that start with one of `prefixes` and satisfy `matches`.
    pub fn new(
        prefixes: &'static [&'static str],
        matches: fn(&str) -> bool,
        access: Access,
        endpoint: Endpoint,
    ) -> Self {
        Route { prefixes, matches, access, endpoint }
    }

    /// The access rule.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn serves(&self, path: &str) -> bool {
        self.prefixes.iter().any(|prefix| path.starts_with(prefix)) && (self.matches)(path)
    }
}

/// Any path at all: the predicate of a route that takes what the routes before it did not.
pub fn any_path(_: &str) -> bool {
    true
}

/// The routes of one listener, in the order they are tried.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// No routes: every path is a 404.
    pub fn new() -> Self {
        Routes::default()
    }

    /// Adds `route` after those already added.
    pub fn with(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The first route serving `path`.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.serves(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::shutdown;

    fn health() -> Endpoint {
        let (_trigger, shutdown) = shutdown::channel();
        Endpoint::Health(Health::new(shutdown, Vec::new()))
    }

    #[test]
    fn the_prefix_is_checked_before_the_predicate_and_the_first_match_wins() {
        let routes = Routes::new()
            .with(Route::new(&["/healthz"], |p| p == "/healthz", Access::Always, health()))
            .with(Route::new(&["/h"], any_path, Access::Read, health()));
        assert_eq!(routes.find("/healthz").map(Route::access), Some(Access::Always));
        // Within the first route's prefix, but refused by its predicate: the next route.
        assert_eq!(routes.find("/healthzz").map(Route::access), Some(Access::Read));
        // The predicate alone would accept it; the prefix does not.
        assert!(routes.find("/other").is_none());
        assert!(Routes::new().find("/healthz").is_none());
    }
}
