//! Authentication and authorization as one layer in front of the routes (docs/wire-contract.md §6.2, §6.3): a
//! request is let through under its route's [`Access`] rule or refused with an [`auth::Error`].

use async_trait::async_trait;
use hyper::Request;

use super::routes::Access;
use crate::auth::{self, Authenticator, Authorizer, UserInfo};
use crate::ingest::{Series, WriteGate};
use crate::response::RequestError;
use crate::server::body::RequestBody;
use crate::server::listener::Connection;

/// Who may do what on a listener.
pub enum AccessControl {
    /// Nobody is checked (standalone; the plain write port): every rule is met. A connection counts as
    /// authenticated once it has completed a request.
    Open,
    /// Cluster mode: delegated authentication and authorization. A connection counts as authenticated once a
    /// request of a user other than `system:anonymous` has arrived on it.
    Delegated(Box<Delegated>),
}

/// The checks of cluster mode.
pub struct Delegated {
    /// Front proxy, client certificates, bearer tokens, anonymous.
    pub authenticator: Authenticator,
    /// Always-allowed paths, `system:masters`, SubjectAccessReview.
    pub authorizer: Authorizer,
}

/// What a request that passed the layer may still have to pass.
pub enum Grant<'a> {
    /// Nothing: the route's rule is met.
    Full,
    /// A write of this user, to be authorized on what it resolves to.
    Write(AuthorizedWrite<'a>),
}

impl AccessControl {
    /// Checks `request` under `rule`: authenticates it (the front-proxy headers and a bearer token that
    /// authenticate are removed from it), marks `connection` authenticated for a user other than anonymous, and
    /// authorizes it as its rule says.
    ///
    /// # Errors
    ///
    /// The refusal: 401 (an anonymous write, or credentials that fail), 403, 429 or 500.
    pub async fn admit(
        &self,
        rule: Access,
        request: &mut Request<RequestBody>,
        connection: &Connection,
    ) -> Result<Grant<'_>, auth::Error> {
        let Self::Delegated(delegated) = self else {
            return Ok(Grant::Full);
        };
        if rule == Access::Always {
            return Ok(Grant::Full);
        }
        let Delegated { authenticator, authorizer } = delegated.as_ref();
        let user = authenticator.authenticate(request.headers_mut(), connection.client_certs.as_ref()).await?;
        // Only connections that carry credentials are spared when unauthenticated ones are closed.
        if !user.is_anonymous() {
            connection.mark_authenticated();
        }
        match rule {
            Access::Always => Ok(Grant::Full),
            Access::Read => {
                let attributes =
                    auth::request_attributes(request.method(), request.uri().path(), request.uri().query(), user);
                authorizer.authorize(&attributes).await?;
                Ok(Grant::Full)
            }
            // A write is authorized on what it resolves to, so the gate runs inside the endpoint.
            Access::Write if user.is_anonymous() => Err(auth::Error::Unauthorized(Vec::new())),
            Access::Write => Ok(Grant::Write(AuthorizedWrite { user, authorizer })),
        }
    }

    /// Whether a connection counts as authenticated once it has completed a request, whoever made it.
    pub fn is_open(&self) -> bool {
        matches!(self, AccessControl::Open)
    }
}

/// Admits a write when the user may `create` (or `delete`) the metric it resolves to
/// (docs/wire-contract.md §10 item 12).
pub struct AuthorizedWrite<'a> {
    user: UserInfo,
    authorizer: &'a Authorizer,
}

#[async_trait]
impl WriteGate for AuthorizedWrite<'_> {
    async fn admit(&self, series: &Series<'_>, delete: bool) -> Result<(), RequestError> {
        let user = self.user.clone();
        let mut attributes = match series {
            Series::Custom(custom) => {
                auth::custom_write_attributes(user, &custom.resource, custom.namespace, custom.name, custom.metric)
            }
            Series::External { namespace, metric } => auth::external_write_attributes(user, namespace, metric),
        };
        if delete {
            attributes.verb = "delete".to_string();
        }
        Ok(self.authorizer.authorize(&attributes).await?)
    }
}
