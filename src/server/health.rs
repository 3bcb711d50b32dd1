//! `/healthz`, `/livez` and `/readyz` in Kubernetes' format: `ok`, or with `?verbose` one `[+]name ok` line per
//! check; `?exclude=name` skips a check; `/<endpoint>/<name>` runs one check. A failing check answers 500 and
//! withholds its reason, as kube-apiserver does (the reason is logged instead).

use std::sync::Arc;

use http::StatusCode;

use super::shutdown::Shutdown;
use crate::response::{self, HttpResponse};

/// A named check.
pub struct Check {
    name: &'static str,
    /// `true` for checks that only decide readiness.
    readiness_only: bool,
    probe: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// Information for the verbose `[+]` line of a passing check.
    note: Option<Box<dyn Fn() -> Option<String> + Send + Sync>>,
}

/// The health endpoints of one process.
#[derive(Clone)]
pub struct Health {
    checks: Arc<Vec<Check>>,
}

impl Health {
    /// Health with the `ping` check, a `shutdown` readiness check that fails once draining has started, and
    /// `extra` checks.
    pub fn new(shutdown: Shutdown, extra: Vec<Check>) -> Self {
        let mut checks = vec![Check::liveness("ping", || Ok(()))];
        checks.extend(extra);
        checks.push(Check::readiness("shutdown", move || {
            if shutdown.is_shutdown() { Err("the server is shutting down".to_string()) } else { Ok(()) }
        }));
        Health { checks: Arc::new(checks) }
    }

    /// Whether `path` is a health endpoint.
    pub fn is_health_path(path: &str) -> bool {
        endpoint(path).is_some()
    }

    /// Answers a health request (any method answers as GET, like Go's mux).
    pub fn handle(&self, path: &str, query: Option<&str>) -> HttpResponse {
        let Some((endpoint, single)) = endpoint(path) else {
            return response::text_response(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let readiness = endpoint == "readyz";
        let applicable = self.checks.iter().filter(|c| readiness || !c.readiness_only);
        if let Some(name) = single {
            return match applicable.into_iter().find(|c| c.name == name) {
                None => response::text_response(StatusCode::NOT_FOUND, "404 page not found\n"),
                Some(check) => match (check.probe)() {
                    Ok(()) => response::text_response(StatusCode::OK, "ok"),
                    Err(reason) => {
                        tracing::warn!(check = check.name, %reason, "health check failed");
                        response::text_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal server error: reason withheld\n",
                        )
                    }
                },
            };
        }
        let mut verbose = false;
        let mut excluded: Vec<String> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "verbose" => verbose = true,
                "exclude" => excluded.push(value.into_owned()),
                _ => {}
            }
        }
        let mut report = String::new();
        let mut failed = false;
        for check in applicable {
            if excluded.iter().any(|e| e == check.name) {
                report.push_str(&format!("[+]{} excluded: ok\n", check.name));
                continue;
            }
            match (check.probe)() {
                Ok(()) => match check.note.as_ref().and_then(|note| note()) {
                    Some(note) => report.push_str(&format!("[+]{} ok: {note}\n", check.name)),
                    None => report.push_str(&format!("[+]{} ok\n", check.name)),
                },
                Err(reason) => {
                    tracing::warn!(check = check.name, %reason, "health check failed");
                    report.push_str(&format!("[-]{} failed: reason withheld\n", check.name));
                    failed = true;
                }
            }
        }
        if failed {
            report.push_str(&format!("{endpoint} check failed\n"));
            return response::text_response(StatusCode::INTERNAL_SERVER_ERROR, report);
        }
        if !verbose {
            return response::text_response(StatusCode::OK, "ok");
        }
        report.push_str(&format!("{endpoint} check passed\n"));
        response::text_response(StatusCode::OK, report)
    }
}

impl Check {
    /// A check for every endpoint.
    pub fn liveness(name: &'static str, probe: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Check { name, readiness_only: false, probe: Box::new(probe), note: None }
    }

    /// A check for `/readyz` only.
    pub fn readiness(name: &'static str, probe: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Check { name, readiness_only: true, probe: Box::new(probe), note: None }
    }

    /// Adds information to the check's verbose line when it passes: `[+]name ok: note`.
    pub fn with_note(mut self, note: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        self.note = Some(Box::new(note));
        self
    }
}

/// (`healthz` | `livez` | `readyz`, optional single check name).
fn endpoint(path: &str) -> Option<(&'static str, Option<&str>)> {
    let path = path.strip_prefix('/')?;
    let (head, rest) = match path.split_once('/') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let endpoint = match head {
        "healthz" => "healthz",
        "livez" => "livez",
        "readyz" => "readyz",
        _ => return None,
    };
    match rest {
        None | Some("") => Some((endpoint, None)),
        Some(name) if !name.contains('/') => Some((endpoint, Some(name))),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::shutdown;
    use http_body_util::BodyExt;

    async fn get(health: &Health, path: &str, query: Option<&str>) -> (u16, String) {
        let response = health.handle(path, query);
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthy_endpoints_say_ok_and_list_checks_when_verbose() {
        let (_trigger, shutdown) = shutdown::channel();
        let health = Health::new(shutdown, vec![Check::liveness("store", || Ok(()))]);
        assert_eq!(get(&health, "/healthz", None).await, (200, "ok".into()));
        assert_eq!(
            get(&health, "/readyz", Some("verbose")).await,
            (200, "[+]ping ok\n[+]store ok\n[+]shutdown ok\nreadyz check passed\n".into())
        );
        assert_eq!(
            get(&health, "/livez", Some("verbose=1")).await,
            (200, "[+]ping ok\n[+]store ok\nlivez check passed\n".into())
        );
        assert_eq!(get(&health, "/livez/store", None).await, (200, "ok".into()));
        assert_eq!(get(&health, "/livez/shutdown", None).await.0, 404);
    }

    #[tokio::test]
    async fn a_passing_checks_note_is_shown_in_the_verbose_report() {
        let (_trigger, shutdown) = shutdown::channel();
        let noted = Check::readiness("discovery", || Ok(())).with_note(|| Some("skipped groups: a (x)".into()));
        let silent = Check::readiness("quiet", || Ok(())).with_note(|| None);
        let health = Health::new(shutdown, vec![noted, silent]);
        assert_eq!(
            get(&health, "/readyz", Some("verbose")).await,
            (
                200,
                "[+]ping ok\n[+]discovery ok: skipped groups: a (x)\n[+]quiet ok\n[+]shutdown ok\nreadyz check passed\n"
                    .into()
            )
        );
        assert_eq!(get(&health, "/readyz", None).await, (200, "ok".into()));
    }

    #[tokio::test]
    async fn readiness_fails_once_shutdown_starts_and_liveness_does_not() {
        let (trigger, shutdown) = shutdown::channel();
        let health = Health::new(shutdown, vec![]);
        trigger.trigger();
        assert_eq!(
            get(&health, "/readyz", None).await,
            (500, "[+]ping ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n".into())
        );
        assert_eq!(get(&health, "/livez", None).await, (200, "ok".into()));
        assert_eq!(
            get(&health, "/readyz", Some("exclude=shutdown&verbose")).await,
            (200, "[+]ping ok\n[+]shutdown excluded: ok\nreadyz check passed\n".into())
        );
        assert_eq!(get(&health, "/readyz/shutdown", None).await.0, 500);
    }

    #[test]
    fn only_the_three_endpoints_and_their_checks_are_health_paths() {
        assert!(Health::is_health_path("/healthz"));
        assert!(Health::is_health_path("/readyz/"));
        assert!(Health::is_health_path("/livez/ping"));
        assert!(!Health::is_health_path("/healthzz"));
        assert!(!Health::is_health_path("/livez/a/b"));
        assert!(!Health::is_health_path("/"));
    }
}
