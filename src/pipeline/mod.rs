//! The request pipeline of a listener (docs/architecture.md §1.1): the route table picks the route, the access
//! layer authenticates and authorizes the request under the route's rule, the route's endpoint answers. Every
//! refusal is a `Status` ([`crate::response`]).
//!
//! - [`routes`]: [`Routes`], [`Route`], its [`Access`] rule and its [`Endpoint`].
//! - [`access`]: [`AccessControl`], open or delegated to the cluster; the write gate of cluster mode.

pub mod access;
pub mod routes;

use std::sync::Arc;

use hyper::Request;

pub use access::{AccessControl, AuthorizedWrite, Delegated, Grant};
pub use routes::{Access, Endpoint, Route, Routes, any_path};

use crate::auth;
use crate::ingest::OpenGate;
use crate::metrics::Metrics;
use crate::response::{self, HttpResponse, RequestError};
use crate::server::body::{self, RequestBody};
use crate::server::listener::{Connection, Handler};

const AUDIT_ID: http::header::HeaderName = http::header::HeaderName::from_static("audit-id");

/// How a listener treats what surrounds the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Echo the request's `Audit-ID` header on the response.
    pub echo_audit_id: bool,
    /// Drain (up to this many bytes) the body of a request that is refused, or that an endpoint other than the
    /// write API answered without reading; `None` leaves unread bodies to hyper.
    pub drain_unread_bytes: Option<usize>,
}

/// One listener's requests: routes, access layer, endpoints.
pub struct Pipeline {
    routes: Routes,
    access: AccessControl,
    options: Options,
    metrics: Option<Arc<Metrics>>,
}

impl Pipeline {
    /// A pipeline serving `routes` behind `access`.
    pub fn new(routes: Routes, access: AccessControl, options: Options) -> Self {
        Pipeline { routes, access, options, metrics: None }
    }

    /// The same pipeline, counting its requests in `metrics` (`apiserver_request_total` and the others the
    /// requests feed, docs/wire-contract.md §11).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    async fn respond(
        &self,
        route: Option<&Route>,
        mut request: Request<RequestBody>,
        connection: &Connection,
    ) -> HttpResponse {
        let Some(route) = route else {
            return RequestError::RouteNotFound.into_response(false);
        };
        let grant = if self.access.is_open() {
            Grant::Full
        } else {
            let pretty = response::wants_pretty(None, request.headers());
            match self.access.admit(route.access(), &mut request, connection).await {
                Ok(grant) => grant,
                Err(error) => return self.refuse(request, error, pretty).await,
            }
        };
        // Only the write API reads a body; any other endpoint's is drained after answering.
        let (parts, body) = request.into_parts();
        let (response, unread) = match route.endpoint() {
            Endpoint::Write(ingest) => {
                let request = Request::from_parts(parts, body);
                let response = match &grant {
                    Grant::Full => ingest.handle(request, &OpenGate).await,
                    Grant::Write(gate) => ingest.handle(request, gate).await,
                };
                (response, None)
            }
            Endpoint::Health(health) => (health.handle(parts.uri.path(), parts.uri.query()), Some(body)),
            Endpoint::Api(api) => (api.handle(&Request::from_parts(parts, ())).await, Some(body)),
            Endpoint::Metrics(metrics) => (metrics.respond(), Some(body)),
            Endpoint::Admin(admin) => (admin.handle(&Request::from_parts(parts, ())).await, Some(body)),
        };
        if let (Some(body), Some(limit)) = (unread, self.options.drain_unread_bytes) {
            body::drain(body, limit).await;
        }
        response
    }

    /// Answers with `error` after draining the request body.
    async fn refuse(&self, request: Request<RequestBody>, error: auth::Error, pretty: bool) -> HttpResponse {
        if let Some(limit) = self.options.drain_unread_bytes {
            body::drain(request.into_body(), limit).await;
        }
        RequestError::from(error).into_response(pretty)
    }
}

impl Handler for Pipeline {
    async fn call(&self, request: Request<RequestBody>, connection: &Connection) -> HttpResponse {
        let audit_id = if self.options.echo_audit_id { request.headers().get(AUDIT_ID).cloned() } else { None };
        let route = self.routes.find(request.uri().path());
        let timer = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.request_started(request.method(), request.uri().path(), request.uri().query()));
        let mut response = self.respond(route, request, connection).await;
        if let Some(timer) = timer {
            let write_route = route.is_some_and(|route| matches!(route.endpoint(), Endpoint::Write(_)));
            timer.finish(response.status(), write_route);
        }
        if self.access.is_open() {
            // Nobody is authenticated: a connection that completed a request (whatever the answer, a 404 too)
            // counts as if it were.
            connection.mark_authenticated();
        }
        // Echoes the Audit-ID that kube-apiserver's aggregator sends, so that a proxied request can be found in
        // both servers' logs. Requests without one get none: a generated ID would cost a random number per
        // request and serve nobody.
        if let Some(id) = audit_id {
            response.headers_mut().insert(AUDIT_ID, id);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;

    use super::*;
    use crate::api::Api;
    use crate::auth::{
        AccessReviewer, Attributes, AuthenticationConfig, Authenticator, Authorizer, Decision, ReviewError,
        TokenReviewer, UserInfo,
    };
    use crate::cluster::{BuiltinMapper, StandaloneLabelIndex};
    use crate::server::health::Health;
    use crate::server::listener::{self, ConnectionLimits};
    use crate::server::raw_http::{self, closes_within};
    use crate::server::shutdown;
    use crate::store::{Limits, MemoryStore, MetricStore};

    /// The token `good` is alice's; any other token authenticates nobody.
    struct OneToken;

    #[async_trait::async_trait]
    impl TokenReviewer for OneToken {
        async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
            Ok((token == "good").then(|| UserInfo { name: "alice".into(), ..UserInfo::default() }))
        }
    }

    struct AllowAll;

    #[async_trait::async_trait]
    impl AccessReviewer for AllowAll {
        async fn review(&self, _attributes: &Attributes) -> Result<Decision, ReviewError> {
            Ok(Decision { allowed: true, reason: String::new() })
        }
    }

    /// Whether a GET of `/readyz` with `token` (if any) is answered 200.
    async fn get(stream: &mut TcpStream, token: Option<&str>) -> bool {
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        raw_http::get_status(stream, "/readyz", &authorization).await == Some(200)
    }

    #[tokio::test]
    async fn in_cluster_mode_only_a_request_of_an_authenticated_user_spares_a_connection() {
        let (trigger, shutdown) = shutdown::channel();
        let store: Arc<dyn MetricStore> = Arc::new(MemoryStore::new(Limits::default()));
        let authenticator = Authenticator::new(
            Arc::new(ArcSwap::from_pointee(AuthenticationConfig::default())),
            Some(Arc::new(OneToken)),
            Duration::ZERO,
        );
        let authorizer = Authorizer::new(Arc::new(AllowAll), vec!["/readyz".into()], Duration::ZERO, Duration::ZERO);
        let api = Api::new(
            store,
            Arc::new(BuiltinMapper::default()),
            Arc::new(StandaloneLabelIndex),
            1000,
            crate::api::ReadLimits::default(),
        );
        let routes = Routes::new()
            .with(Route::new(
                &["/readyz"],
                Health::is_health_path,
                Access::Read,
                Endpoint::Health(Health::new(shutdown.clone(), Vec::new())),
            ))
            .with(Route::new(&["/"], any_path, Access::Read, Endpoint::Api(Box::new(api))));
        let access = AccessControl::Delegated(Box::new(Delegated { authenticator, authorizer }));
        let handler = Pipeline::new(routes, access, Options { echo_audit_id: true, drain_unread_bytes: Some(4096) });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits { max_unauthenticated: 1, ..ConnectionLimits::default() };
        let server =
            tokio::spawn(listener::serve(listener, None, Arc::new(handler), limits, shutdown, Duration::from_secs(1)));
        let mut alice = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut alice, Some("good")).await);
        // Anonymous: served (an always-allowed path), but still unauthenticated.
        let mut anonymous = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut anonymous, None).await);
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut newcomer, None).await);
        assert!(closes_within(&mut anonymous, Duration::from_secs(5)).await, "the anonymous connection stayed");
        // alice's connection, older than both, is never the one closed.
        let mut another = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut another, None).await);
        assert!(closes_within(&mut newcomer, Duration::from_secs(5)).await);
        assert!(get(&mut alice, Some("good")).await);
        trigger.trigger();
        drop((alice, another));
        server.await.unwrap();
    }

    /// The status code of `GET path` with bearer `token` on a new connection.
    async fn status_of(addr: std::net::SocketAddr, path: &str, token: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        raw_http::get_status(&mut stream, path, &format!("Authorization: Bearer {token}\r\n")).await
    }

    #[tokio::test]
    async fn an_always_allowed_route_runs_no_authentication_which_a_read_route_runs() {
        let (trigger, shutdown) = shutdown::channel();
        let authenticator = Authenticator::new(
            Arc::new(ArcSwap::from_pointee(AuthenticationConfig::default())),
            Some(Arc::new(OneToken)),
            Duration::ZERO,
        );
        let authorizer = Authorizer::new(Arc::new(AllowAll), Vec::new(), Duration::ZERO, Duration::ZERO);
        let health = || Endpoint::Health(Health::new(shutdown.clone(), Vec::new()));
        let routes = Routes::new()
            .with(Route::new(&["/livez"], Health::is_health_path, Access::Always, health()))
            .with(Route::new(&["/healthz"], Health::is_health_path, Access::Read, health()));
        let access = AccessControl::Delegated(Box::new(Delegated { authenticator, authorizer }));
        let handler = Pipeline::new(routes, access, Options { echo_audit_id: false, drain_unread_bytes: None });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits::default();
        let server = tokio::spawn(listener::serve(
            listener,
            None,
            Arc::new(handler),
            limits,
            shutdown.clone(),
            Duration::from_secs(1),
        ));
        // A token that does not authenticate: refused under Read, never looked at under Always.
        assert_eq!(status_of(addr, "/healthz", "bad").await, Some(401));
        assert_eq!(status_of(addr, "/livez", "bad").await, Some(200));
        assert_eq!(status_of(addr, "/healthz", "good").await, Some(200));
        // No route: 404.
        assert_eq!(status_of(addr, "/other", "good").await, Some(404));
        trigger.trigger();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn when_open_a_connection_counts_as_authenticated_after_any_completed_request_even_a_404() {
        let (trigger, shutdown) = shutdown::channel();
        let routes = Routes::new().with(Route::new(
            &["/healthz", "/readyz"],
            Health::is_health_path,
            Access::Read,
            Endpoint::Health(Health::new(shutdown.clone(), Vec::new())),
        ));
        let handler =
            Pipeline::new(routes, AccessControl::Open, Options { echo_audit_id: false, drain_unread_bytes: None });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits { max_unauthenticated: 1, ..ConnectionLimits::default() };
        let server =
            tokio::spawn(listener::serve(listener, None, Arc::new(handler), limits, shutdown, Duration::from_secs(1)));
        let mut first = TcpStream::connect(addr).await.unwrap();
        assert_eq!(raw_http::get_status(&mut first, "/nothing-here", "").await, Some(404));
        // Then a connection that sends nothing, and a newcomer: the oldest unauthenticated connection is closed,
        // which must be the silent one, not the one that completed a request.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut newcomer, None).await);
        assert!(closes_within(&mut silent, Duration::from_secs(5)).await, "the cap is not enforced at all");
        let again = raw_http::get_status(&mut first, "/healthz", "").await;
        assert_eq!(again, Some(200), "the connection that got a 404 was closed");
        trigger.trigger();
        drop((first, newcomer));
        server.await.unwrap();
    }
}
