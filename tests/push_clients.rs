//! Real Prometheus clients push to a standalone adapter (docs/wire-contract.md §4.5): Go's `client_golang` push
//! package (e2e/clients/pushgateway, built by e2e/clients/build from the Go module proxy and cached outside the
//! repository), in its default delimited protobuf and in the text format, and Python's `prometheus_client`
//! (`push_to_gateway`, `pushadd_to_gateway`, `delete_from_gateway`); the values are read back through the custom
//! and external metrics APIs. Each test skips, saying why, only when its client's toolchain is missing (`go`, or
//! python3 with `prometheus_client`); CI has both.

mod common;

use std::process::Command;

use common::clients::{go_client, run};
use common::{TestServer, items, start};
use serde_json::{Value, json};

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

async fn external(server: &TestServer, metric: &str) -> Vec<(Value, Value)> {
    let (status, list) = server.get(&format!("{EXT}/namespaces/shop/{metric}")).await;
    assert_eq!(status, 200, "{list}");
    items(&list).into_iter().map(|item| (item["metricLabels"].clone(), item["value"].clone())).collect()
}

#[tokio::test]
async fn client_golang_pushes_counters_gauges_and_histograms_in_protobuf_and_text() {
    let Some(client) = go_client("PUSHGATEWAY_CLIENT_BIN", "client_golang push") else { return };
    let server = start(&[]).await;
    let url = server.write_url("");
    let push = |format: &'static str, method: &'static str, value: &'static str| {
        let url = url.clone();
        let client = client.clone();
        async move {
            let args = [
                "-url",
                &url,
                "-job",
                "billing",
                "-namespace",
                "shop",
                "-format",
                format,
                "-method",
                method,
                "-value",
                value,
            ];
            run(tokio::process::Command::new(&client).args(args)).await;
        }
    };
    let pod = |metric: &str| format!("{V2}/namespaces/shop/pods/web-1/{metric}");

    // Push() in the package's default format, delimited protobuf.
    push("protobuf", "put", "3").await;
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("3".into()));
    assert_eq!(server.first_value(&pod("latency_seconds_count")).await, Ok("2".into()));
    assert_eq!(server.first_value(&pod("latency_seconds_sum")).await, Ok("750m".into()));
    assert_eq!(external(&server, "queue_depth").await, [(json!({"job": "billing", "queue": "orders"}), json!("6"))]);

    // Add() in the text format.
    push("text", "post", "4.5").await;
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("4500m".into()));
    assert_eq!(external(&server, "queue_depth").await, [(json!({"job": "billing", "queue": "orders"}), json!("9"))]);

    // Delete() removes the group.
    push("protobuf", "delete", "0").await;
    assert_eq!(server.first_value(&pod("requests_total")).await, Err(404));
    assert_eq!(server.first_value(&pod("latency_seconds_sum")).await, Err(404));
    assert_eq!(external(&server, "queue_depth").await, []);
    server.stop().await;
}

/// The README's example, against the test server's write port.
const PYTHON: &str = r#"
import sys
from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, pushadd_to_gateway, delete_from_gateway

gateway, step = sys.argv[1], sys.argv[2]
registry = CollectorRegistry()
Gauge("queue_depth", "Messages waiting.", ["queue"], registry=registry).labels("orders").set(17)
Counter("jobs", "Jobs done.", ["pod"], registry=registry).labels("worker-1").inc(3)
# An empty grouping value travels as tier@base64/= and is no label.
key = {"namespace": "shop", "tier": ""}
if step == "put":
    push_to_gateway(gateway, job="billing", grouping_key=key, registry=registry)
elif step == "post":
    later = CollectorRegistry()
    Gauge("queue_depth", "Messages waiting.", ["queue"], registry=later).labels("billing").set(2)
    pushadd_to_gateway(gateway, job="billing", grouping_key=key, registry=later)
else:
    delete_from_gateway(gateway, job="billing", grouping_key=key)
"#;

fn python_client() -> bool {
    let found = Command::new("python3").args(["-c", "import prometheus_client"]).output();
    if found.as_ref().is_ok_and(|output| output.status.success()) {
        return true;
    }
    eprintln!("SKIPPED: python3 with prometheus_client is not installed (pip install prometheus-client); CI has it");
    false
}

#[tokio::test]
async fn python_prometheus_client_push_to_gateway() {
    if !python_client() {
        return;
    }
    let server = start(&[]).await;
    let gateway = format!("127.0.0.1:{}", server.write.port());
    let python = |step: &str| {
        let mut command = tokio::process::Command::new("python3");
        command.args(["-c", PYTHON, &gateway, step]);
        command
    };
    run(&mut python("put")).await;
    assert_eq!(external(&server, "queue_depth").await, [(json!({"job": "billing", "queue": "orders"}), json!("17"))]);
    let jobs = format!("{V2}/namespaces/shop/pods/worker-1/jobs_total");
    assert_eq!(server.first_value(&jobs).await, Ok("3".into()));
    // pushadd_to_gateway replaces the family queue_depth only.
    run(&mut python("post")).await;
    assert_eq!(external(&server, "queue_depth").await, [(json!({"job": "billing", "queue": "billing"}), json!("2"))]);
    assert_eq!(server.first_value(&jobs).await, Ok("3".into()));
    run(&mut python("delete")).await;
    assert_eq!(server.first_value(&jobs).await, Err(404));
    assert_eq!(external(&server, "queue_depth").await, []);
    server.stop().await;
}
