//! custom-metrics-apiserver: a Kubernetes custom and external metrics adapter.
//!
//! Anyone can write a value over HTTP; kube-apiserver's aggregation layer, the HorizontalPodAutoscaler and
//! `kubectl get --raw` read it back through `custom.metrics.k8s.io` (v1beta1, v1beta2) and
//! `external.metrics.k8s.io` (v1beta1).
//!
//! # Layout
//!
//! Data flows one way: ingest -> store -> serve.
//!
//! - A **write** `POST /write-metrics/namespaces/default/pods/web-1/q` with body `"42"` reaches [`server::listener`]
//!   (the accept loop), is routed by the listener's [`pipeline`] (route table, then the access layer) to
//!   [`ingest`], which parses the path ([`path`]), the [`quantity`] and the `labels` ([`selector`]), resolves `pods`
//!   through [`cluster::ResourceMapper`] and calls [`store::MetricStore::put_custom`].
//! - A **read** `GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q` arrives over TLS
//!   ([`server::tls`]), passes the [`pipeline`] (in cluster mode authenticated and authorized by [`auth`]) and goes
//!   to [`api`]: [`api::route`] types the path, [`api::custom`] resolves the resource, asks
//!   [`cluster::LabelIndex`] which objects match, reads the store and renders [`api::types`].
//! - Every failure becomes a Kubernetes `Status` in one place, [`response`].
//! - [`server::health`] answers `/healthz`, `/livez`, `/readyz`; [`server::shutdown`] turns SIGTERM into a drain.
//!
//! The cores [`quantity`], [`selector`] and [`store`] know nothing of HTTP or the cluster.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
mod duration;
pub mod forward;
pub mod histogram;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod path;
pub mod pipeline;
pub mod quantity;
pub mod response;
pub mod selector;
pub mod server;
pub mod store;
#[cfg(test)]
mod testing;
