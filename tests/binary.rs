//! End-to-end test of the real binary in standalone mode: written with the real curl, read back over HTTPS with
//! the real `kubectl get --raw`, stopped with SIGTERM. Also the command line itself: --help, environment
//! variables, and the refusals to start without a cluster or with tokens on plain HTTP.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_custom-metrics-apiserver");

/// A free loopback port (the write port cannot be asked for as 0: 0 disables it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Adapter {
    child: Child,
    secure_port: u16,
    write_port: u16,
    _dir: tempfile::TempDir,
}

impl Adapter {
    fn start(envs: &[(&str, &str)], args: &[&str]) -> Adapter {
        let dir = tempfile::tempdir().unwrap();
        let write_port = free_port();
        let mut command = Command::new(BIN);
        command
            .args(["--secure-port=0", &format!("--write-port={write_port}"), "--log-format=json"])
            .arg(format!("--cert-dir={}", dir.path().display()))
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut secure_port = None;
        let mut seen_write = false;
        while secure_port.is_none() || !seen_write {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("adapter did not log its listeners");
            let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &log["fields"];
            if fields["message"] != "listening" {
                continue;
            }
            let port = fields["address"].as_str().unwrap().rsplit(':').next().unwrap().parse::<u16>().unwrap();
            match fields["listener"].as_str() {
                Some("secure") => secure_port = Some(port),
                Some("write") => {
                    assert_eq!(port, write_port);
                    seen_write = true;
                }
                _ => {}
            }
        }
        Adapter { child, secure_port: secure_port.unwrap(), write_port, _dir: dir }
    }

    /// `kubectl get --raw` against the secure port, as a person would run it.
    fn kubectl_raw(&self, path: &str) -> serde_json::Value {
        let output = Command::new("kubectl")
            .args(["get", "--raw", path])
            .arg(format!("--server=https://127.0.0.1:{}", self.secure_port))
            .args(["--insecure-skip-tls-verify", "--kubeconfig=/dev/null", "--token=unused"])
            .output()
            .expect("kubectl must be installed (see .ci/run)");
        assert!(output.status.success(), "kubectl get --raw {path}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn curl_write(&self, path: &str, body: &str) {
        let status = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-X",
                "POST",
                &format!("http://127.0.0.1:{}{path}", self.write_port),
                "-d",
                body,
            ])
            .status()
            .expect("curl must be installed");
        assert!(status.success(), "curl write {path}");
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "adapter did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_readme_flow_works_with_curl_and_kubectl() {
    let adapter = Adapter::start(&[], &["--standalone"]);
    // The seed README's exact write form.
    adapter.curl_write("/write-metrics/namespaces/default/pods/my-pod/my_custom_metric", "\"42\"");
    adapter.curl_write("/write-metrics/namespaces/default/pods/my-pod/requests_per_second", "\"100\"");
    adapter.curl_write("/write-external-metrics/namespaces/default/queue_length?labels=queue=orders", "\"7\"");

    let discovery = adapter.kubectl_raw("/apis/custom.metrics.k8s.io/v1beta1");
    let names: Vec<&str> =
        discovery["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pods/my_custom_metric", "pods/requests_per_second"]);

    for version in ["v1beta1", "v1beta2"] {
        let list = adapter
            .kubectl_raw(&format!("/apis/custom.metrics.k8s.io/{version}/namespaces/default/pods/*/my_custom_metric"));
        assert_eq!(list["apiVersion"], format!("custom.metrics.k8s.io/{version}"));
        assert_eq!(list["items"][0]["value"], "42");
        assert_eq!(list["items"][0]["describedObject"]["name"], "my-pod");
        let list = adapter.kubectl_raw(&format!(
            "/apis/custom.metrics.k8s.io/{version}/namespaces/default/pods/*/requests_per_second"
        ));
        assert_eq!(list["items"][0]["value"], "100");
    }
    let list =
        adapter.kubectl_raw("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/my-pod/my_custom_metric");
    assert_eq!(list["items"][0]["metric"]["name"], "my_custom_metric");
    let objects = adapter.kubectl_raw("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/my-pod/");
    assert_eq!(objects["items"].as_array().unwrap().len(), 2);

    let external = adapter.kubectl_raw(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length?labelSelector=queue%3Dorders",
    );
    assert_eq!(external["items"][0]["value"], "7");
    assert_eq!(external["items"][0]["metricLabels"]["queue"], "orders");

    let status = adapter.terminate();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn every_flag_can_come_from_the_environment() {
    let adapter = Adapter::start(&[("CUSTOM_METRICS_STANDALONE", "true"), ("CUSTOM_METRICS_MAX_SERIES", "1")], &[]);
    adapter.curl_write("/write-metrics/namespaces/default/pods/a/m", "1");
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{}/write-metrics/namespaces/default/pods/b/m", adapter.write_port))
        .args(["-d", "1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "403", "the second series exceeds CUSTOM_METRICS_MAX_SERIES=1");
}

/// curl over HTTP/2 reports a request whose answer arrived before its body was read as failed (the stream is
/// reset) unless the server reads the rest of the body first.
#[test]
fn curl_gets_an_early_answer_to_a_post_over_http2_every_time() {
    let adapter = Adapter::start(&[], &["--standalone"]);
    let url = format!(
        "https://127.0.0.1:{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/a/q",
        adapter.secure_port
    );
    for attempt in 0..40 {
        let output = Command::new("curl")
            .args(["-sS", "-k", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "-X", "POST", &url])
            .args(["-d", "\"42\""])
            .output()
            .expect("curl must be installed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(stdout, "405 2", "attempt {attempt}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn outside_a_cluster_without_a_kubeconfig_it_fails_naming_both_ways_out() {
    let output = Command::new(BIN)
        .args(["--secure-port=0"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--kubeconfig") && stderr.contains("--standalone"), "{stderr}");
}

#[test]
fn a_plain_write_port_with_token_auth_exits_64() {
    let output = Command::new(BIN).args(["--write-port=8080"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--write-auth=none"), "{stderr}");
}

#[test]
fn version_prints_the_version_and_the_git_commit() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    // The binary may come from another checkout sharing the target directory: check the form, not the commit
    // (config::tests::the_version_names_the_commit_built_from checks which commit).
    let rest = printed.strip_prefix(&format!("custom-metrics-apiserver {} (commit ", env!("CARGO_PKG_VERSION")));
    let commit = rest.and_then(|rest| rest.strip_suffix(")\n")).unwrap_or_else(|| panic!("{printed:?}"));
    assert!(
        commit == "unknown" || (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{printed:?}"
    );
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--secure-port",
        "--bind-address",
        "--write-port",
        "--cert-dir",
        "--tls-cert-file",
        "--tls-private-key-file",
        "--standalone",
        "--metric-ttl",
        "--log-format",
        "--v",
        "--max-series",
        "--max-labels-per-series",
        "--discovery-max-metrics",
        "--max-request-body-bytes",
        "--max-connections",
        "--header-read-timeout",
        "--idle-timeout",
        "--shutdown-grace-period",
        "--manage-certificates",
        "--certificate-validity",
        "--certificate-sync-interval",
        "--certificate-secret-name",
        "--service-name",
        "--service-namespace",
        "--forward-custom-metrics",
        "--forward-external-metrics",
        "--forward-ca-file",
        "--forward-token-file",
        "--forward-client-cert-file",
        "--forward-client-key-file",
        "--forward-connect-timeout",
        "--forward-timeout",
        "--forward-max-connections",
        "--forward-failure-threshold",
        "--forward-cool-down",
        "--forward-discovery-ttl",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("CUSTOM_METRICS_SECURE_PORT"));
    assert!(help.contains("[default: 6443]"));
}
