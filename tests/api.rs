//! Black-box tests of the Kubernetes APIs and the write API against a standalone server on 127.0.0.1.
//! Expected payloads are the wire contract's examples (docs/wire-contract.md §2.2, §1.2, §3).

mod common;

use common::{items, start};
use serde_json::json;

const V1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

/// The raw body with every `"timestamp":"…Z"` value replaced by `T`.
async fn raw(server: &common::TestServer, path: &str) -> (u16, String) {
    let response = server.client.get(server.api_url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let mut text = response.text().await.unwrap();
    while let Some(start) = text.find("\"timestamp\":\"2") {
        let value_start = start + "\"timestamp\":\"".len();
        let end = value_start + text[value_start..].find('"').unwrap();
        assert!(common::is_whole_second_utc(&text[value_start..end]), "{text}");
        text.replace_range(value_start..end, "T");
    }
    (status, text)
}

#[tokio::test]
async fn the_contract_examples_are_served_byte_for_byte() {
    let server = start(&[]).await;
    assert_eq!(
        server.post("/write-metrics/namespaces/default/pods/web-1/queue_depth?labels=queue=orders", "\"42\"").await.0,
        200
    );

    let (status, body) =
        raw(&server, &format!("{V2}/namespaces/default/pods/web-1/queue_depth?metricLabelSelector=queue%3Dorders"))
            .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "{\"kind\":\"MetricValueList\",\"apiVersion\":\"custom.metrics.k8s.io/v1beta2\",\"metadata\":{},\"items\":[{\"describedObject\":{\"kind\":\"Pod\",\"namespace\":\"default\",\"name\":\"web-1\",\"apiVersion\":\"/v1\"},\"metric\":{\"name\":\"queue_depth\",\"selector\":{\"matchLabels\":{\"queue\":\"orders\"}}},\"timestamp\":\"T\",\"value\":\"42\"}]}\n"
    );
    let (status, body) = raw(&server, &format!("{V1}/namespaces/default/pods/web-1/queue_depth")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "{\"kind\":\"MetricValueList\",\"apiVersion\":\"custom.metrics.k8s.io/v1beta1\",\"metadata\":{},\"items\":[{\"describedObject\":{\"kind\":\"Pod\",\"namespace\":\"default\",\"name\":\"web-1\",\"apiVersion\":\"/v1\"},\"metricName\":\"queue_depth\",\"timestamp\":\"T\",\"value\":\"42\",\"selector\":null}]}\n"
    );

    server.post("/write-external-metrics/namespaces/default/my-external-metric?labels=foo=bar", "\"42\"").await;
    server.post("/write-external-metrics/namespaces/default/my-external-metric?labels=foo=baz", "43").await;
    let (status, body) = raw(&server, &format!("{EXT}/namespaces/default/my-external-metric")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "{\"kind\":\"ExternalMetricValueList\",\"apiVersion\":\"external.metrics.k8s.io/v1beta1\",\"metadata\":{},\"items\":[{\"metricName\":\"my-external-metric\",\"metricLabels\":{\"foo\":\"bar\"},\"timestamp\":\"T\",\"value\":\"42\"},{\"metricName\":\"my-external-metric\",\"metricLabels\":{\"foo\":\"baz\"},\"timestamp\":\"T\",\"value\":\"43\"}]}\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_seed_flow_reads_back_by_name_and_with_the_wildcard() {
    let server = start(&[]).await;
    assert_eq!(
        server.post("/write-metrics/namespaces/default/pods/my-pod/my_custom_metric", "\"42\"").await,
        (200, String::new())
    );
    assert_eq!(
        server.post("/write-metrics/namespaces/default/pods/my-pod/requests_per_second", "\"100\"").await.0,
        200
    );
    assert_eq!(server.post("/write-metrics/namespaces/default/pods/other-pod/requests_per_second", "7").await.0, 200);

    for version in [V1, V2] {
        for star in ["*", "%2A"] {
            let (status, list) =
                server.get(&format!("{version}/namespaces/default/pods/{star}/requests_per_second")).await;
            assert_eq!(status, 200, "{list}");
            let names: Vec<&str> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["describedObject"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["my-pod", "other-pod"]);
            let values: Vec<&str> =
                list["items"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
            assert_eq!(values, ["100", "7"]);
        }
    }
    // Other namespaces see nothing, and that is an empty list, not an error.
    let (status, list) = server.get(&format!("{V2}/namespaces/other/pods/*/requests_per_second")).await;
    assert_eq!((status, list["items"].clone()), (200, json!([])));
    server.stop().await;
}

#[tokio::test]
async fn values_are_canonical_quantities_and_the_last_write_wins() {
    let server = start(&[]).await;
    let path = "/write-metrics/namespaces/default/pods/p/m";
    for (body, canonical) in [
        ("\"1.5\"", "1500m"),
        ("1000", "1k"),
        ("\"+1\"", "1"),
        ("1500m", "1500m"),
        ("\" 1Ki \"", "1Ki"),
        ("4.2e1", "42"),
    ] {
        assert_eq!(server.post(path, body).await.0, 200, "{body}");
        let (_, list) = server.get(&format!("{V2}/namespaces/default/pods/p/m")).await;
        assert_eq!(list["items"][0]["value"], canonical, "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn metric_label_selectors_filter_and_explain_a_miss() {
    let server = start(&[]).await;
    server.post("/write-metrics/namespaces/default/pods/a/q?labels=queue=orders", "1").await;
    server.post("/write-metrics/namespaces/default/pods/b/q?labels=queue=billing", "2").await;

    let (status, list) =
        server.get(&format!("{V2}/namespaces/default/pods/*/q?metricLabelSelector=queue+in+(orders)")).await;
    assert_eq!(status, 200);
    let only = items(&list);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["describedObject"]["name"], "a");
    assert_eq!(
        only[0]["metric"]["selector"],
        json!({"matchExpressions":[{"key":"queue","operator":"In","values":["orders"]}]})
    );

    let (status, status_obj) =
        server.get(&format!("{V1}/namespaces/default/pods/b/q?metricLabelSelector=queue%3Dorders")).await;
    assert_eq!(status, 404);
    assert_eq!(status_obj["message"], "the server could not find the metric q for pods b with selector queue=orders");
    assert_eq!(status_obj["reason"], "NotFound");

    let (status, status_obj) =
        server.get(&format!("{V1}/namespaces/default/pods/b/q?metricLabelSelector=x+nott+in+(y)")).await;
    assert_eq!(status, 400);
    assert_eq!(status_obj["reason"], "BadRequest");
    assert_eq!(
        status_obj["message"],
        "invalid metricLabelSelector: unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt"
    );
    server.stop().await;
}

#[tokio::test]
async fn label_selectors_on_objects_need_cluster_mode_but_are_always_validated() {
    let server = start(&[]).await;
    server.post("/write-metrics/namespaces/default/pods/a/q", "1").await;
    let (status, body) = server.get(&format!("{V2}/namespaces/default/pods/*/q?labelSelector=app%3Dweb")).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("need cluster mode"), "{body}");
    // An empty selector returns every stored object.
    let (status, list) = server.get(&format!("{V2}/namespaces/default/pods/*/q?labelSelector=")).await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 1));
    // A bad selector is a 400 with the Go parser's text, on any route.
    let (status, body) = server.get(&format!("{V2}/namespaces/default/pods/a/q?labelSelector=x%3D%3Da%3D%3Db")).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "found '==', expected: ',' or 'end of string'");
    server.stop().await;
}

#[tokio::test]
async fn namespace_metrics_are_written_and_read_on_the_namespace_object() {
    let server = start(&[]).await;
    assert_eq!(server.post("/write-metrics/namespaces/team-a/metrics/work_queue", "\"5\"").await.0, 200);
    assert_eq!(server.post("/write-metrics/namespaces/team-b/work_queue", "6").await.0, 200);
    let (status, list) = server.get(&format!("{V2}/namespaces/team-a/metrics/work_queue")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        items(&list),
        [
            json!({"describedObject":{"kind":"Namespace","name":"team-a","apiVersion":"/v1"},"metric":{"name":"work_queue","selector":null},"timestamp":"T","value":"5"})
        ]
    );
    let (_, list) = server.get(&format!("{V1}/namespaces/team-b/metrics/work_queue")).await;
    assert_eq!(list["items"][0]["value"], "6");
    // Namespaces are cluster-scoped: discovery says so.
    let (_, discovery) = server.get(V2).await;
    assert!(discovery["resources"].as_array().unwrap().contains(&json!({"name":"namespaces/work_queue","singularName":"","namespaced":false,"kind":"MetricValueList","verbs":["get"]})), "{discovery}");
    server.stop().await;
}

#[tokio::test]
async fn cluster_scoped_and_grouped_resources_are_normalised() {
    let server = start(&[]).await;
    assert_eq!(server.post("/write-metrics/nodes/node-1/temperature", "70").await.0, 200);
    assert_eq!(server.post("/write-metrics/namespaces/default/deployment.apps/web/http_requests", "3").await.0, 200);
    assert_eq!(server.post("/write-metrics/namespaces/default/Pod/p1/m", "1").await.0, 200);

    let (status, list) = server.get(&format!("{V2}/nodes/node-1/temperature")).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["describedObject"], json!({"kind":"Node","name":"node-1","apiVersion":"/v1"}));
    let (_, list) = server.get(&format!("{V2}/nodes/*/temperature")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // HPA asks for Object metrics under its own namespace even for cluster-scoped kinds.
    let (status, _) = server.get(&format!("{V2}/namespaces/default/nodes/node-1/temperature")).await;
    assert_eq!(status, 200);

    for resource in ["deployments.apps", "deployments", "deployment"] {
        let (status, list) = server.get(&format!("{V1}/namespaces/default/{resource}/web/http_requests")).await;
        assert_eq!(status, 200, "{resource}: {list}");
        assert_eq!(
            list["items"][0]["describedObject"],
            json!({"kind":"Deployment","namespace":"default","name":"web","apiVersion":"apps/v1"})
        );
    }
    let (_, list) = server.get(&format!("{V1}/namespaces/default/pods/p1/m")).await;
    assert_eq!(list["items"][0]["value"], "1");

    let (_, discovery) = server.get(V1).await;
    let names: Vec<&str> =
        discovery["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["deployments.apps/http_requests", "nodes/temperature", "pods/m"]);
    server.stop().await;
}

#[tokio::test]
async fn the_per_object_listing_shows_every_metric_of_an_object() {
    let server = start(&[]).await;
    server.post("/write-metrics/namespaces/default/pods/my-pod/my_custom_metric", "\"42\"").await;
    server.post("/write-metrics/namespaces/default/pods/my-pod/requests_per_second", "\"100\"").await;
    server.post("/write-metrics/namespaces/default/pods/other/requests_per_second", "1").await;
    let (status, list) = server.get(&format!("{V1}/namespaces/default/pods/my-pod/")).await;
    assert_eq!(status, 200, "{list}");
    let metrics: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["metricName"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert_eq!(metrics, [("my_custom_metric", "42"), ("requests_per_second", "100")]);
    server.stop().await;
}

#[tokio::test]
async fn external_metrics_are_filtered_by_their_labels() {
    let server = start(&[]).await;
    server.post("/write-external-metrics/namespaces/default/queue_length?labels=queue=orders,region=eu", "10").await;
    server.post("/write-external-metrics/namespaces/default/queue_length?labels=queue=billing,region=eu", "20").await;
    server.post("/write-external-metrics/namespaces/other/queue_length?labels=queue=orders", "30").await;

    let (status, list) =
        server.get(&format!("{EXT}/namespaces/default/queue_length?labelSelector=queue%3Dorders")).await;
    assert_eq!(status, 200);
    assert_eq!(
        items(&list),
        [
            json!({"metricName":"queue_length","metricLabels":{"queue":"orders","region":"eu"},"timestamp":"T","value":"10"})
        ]
    );
    let (_, list) = server.get(&format!("{EXT}/namespaces/default/queue_length?labelSelector=region%3Deu")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (status, list) = server.get(&format!("{EXT}/namespaces/default/unknown")).await;
    assert_eq!((status, list["items"].clone()), (200, json!([])));
    let (status, body) = server.get(&format!("{EXT}/namespaces/default/queue_length?labelSelector=a+(")).await;
    assert_eq!(status, 400, "{body}");

    let (_, discovery) = server.get(EXT).await;
    assert_eq!(
        discovery["resources"],
        json!([{"name":"queue_length","singularName":"","namespaced":true,"kind":"ExternalMetricValueList","verbs":["get"]}])
    );
    // DELETE names the series by its labels.
    assert_eq!(server.delete("/write-external-metrics/namespaces/other/queue_length?labels=queue=orders").await.0, 200);
    let (_, list) = server.get(&format!("{EXT}/namespaces/other/queue_length")).await;
    assert_eq!(list["items"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn discovery_lists_both_versions_and_is_never_empty() {
    let server = start(&[]).await;
    let (status, groups) = server.get("/apis").await;
    assert_eq!(status, 200);
    assert_eq!(
        groups,
        json!({"kind":"APIGroupList","apiVersion":"v1","groups":[
            {"name":"custom.metrics.k8s.io","versions":[{"groupVersion":"custom.metrics.k8s.io/v1beta2","version":"v1beta2"},{"groupVersion":"custom.metrics.k8s.io/v1beta1","version":"v1beta1"}],"preferredVersion":{"groupVersion":"custom.metrics.k8s.io/v1beta2","version":"v1beta2"}},
            {"name":"external.metrics.k8s.io","versions":[{"groupVersion":"external.metrics.k8s.io/v1beta1","version":"v1beta1"}],"preferredVersion":{"groupVersion":"external.metrics.k8s.io/v1beta1","version":"v1beta1"}}]})
    );
    let (_, group) = server.get("/apis/custom.metrics.k8s.io").await;
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(group["preferredVersion"]["version"], "v1beta2");

    // Aggregated discovery is answered with the legacy list as application/json, so the aggregator falls back.
    let response = server
        .client
        .get(server.api_url("/apis"))
        .header("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["kind"], "APIGroupList");

    for (path, placeholder) in [(V1, "/custommetrics"), (V2, "/custommetrics"), (EXT, "externalmetrics")] {
        let (status, list) = server.get(path).await;
        assert_eq!(status, 200);
        assert_eq!(list["resources"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["resources"][0]["name"], placeholder);
    }
    server.stop().await;
}

#[tokio::test]
async fn discovery_is_capped_by_its_flag() {
    let server = start(&["--discovery-max-metrics=2"]).await;
    for metric in ["a", "b", "c"] {
        server.post(&format!("/write-metrics/namespaces/default/pods/p/{metric}"), "1").await;
    }
    let (_, list) = server.get(V2).await;
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pods/a", "pods/b"]);
    server.stop().await;
}

#[tokio::test]
async fn read_errors_are_kubernetes_status_objects() {
    let server = start(&[]).await;
    server.post("/write-metrics/namespaces/default/pods/a/q", "1").await;
    let cases = [
        (
            format!("{V2}/namespaces/default/pods/a/missing"),
            404,
            "NotFound",
            "the server could not find the metric missing for pods a",
        ),
        (
            format!("{V2}/namespaces/default/pods/b/q"),
            404,
            "NotFound",
            "the server could not find the metric q for pods b",
        ),
        (format!("{V2}/nodes/foo"), 404, "NotFound", "the server could not find the requested resource"),
        (format!("{V2}/namespaces/ns/pods/bar"), 404, "NotFound", "the server could not find the requested resource"),
        (format!("{V2}/namespaces/default/foo"), 400, "BadRequest", "invalid request path"),
        (
            format!("{V2}/namespaces/default/foos/a/q"),
            404,
            "NotFound",
            "the server doesn't have a resource type \"foos\"",
        ),
        (
            format!("{V2}/pods/a/q"),
            400,
            "BadRequest",
            "pods is namespaced: read it under /namespaces/{namespace}/pods/...",
        ),
        (
            "/apis/custom.metrics.k8s.io/v1".to_string(),
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        ("/api".to_string(), 404, "NotFound", "the server could not find the requested resource"),
    ];
    for (path, code, reason, message) in cases {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, code, "{path}: {body}");
        assert_eq!(body["kind"], "Status", "{path}");
        assert_eq!(body["code"], code, "{path}");
        assert_eq!(body["reason"], reason, "{path}");
        assert_eq!(body["message"], message, "{path}");
    }
    let response =
        server.client.post(server.api_url(&format!("{V2}/namespaces/default/pods/a/q"))).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let response = server
        .client
        .get(server.api_url(&format!("{V2}/namespaces/default/pods/a/q")))
        .header("Accept", "application/vnd.kubernetes.protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
    server.stop().await;
}

#[tokio::test]
async fn bad_writes_are_refused_with_a_clear_status_and_store_nothing() {
    let server = start(&["--max-request-body-bytes=64", "--max-labels-per-series=2"]).await;
    let p = "/write-metrics/namespaces/default/pods/p";
    let cases: Vec<(String, String, u16, &str)> = vec![
        (format!("{p}/m"), String::new(), 400, "request body is empty"),
        (format!("{p}/m"), "abc".into(), 400, "invalid value \"abc\": quantities must match the regular expression"),
        (format!("{p}/m"), "\"1i\"".into(), 400, "unable to parse quantity's suffix"),
        (format!("{p}/m"), "\"42".into(), 400, "invalid JSON string"),
        (format!("{p}/m"), "null".into(), 400, "invalid value \"null\""),
        (format!("{p}/m"), "1".repeat(65), 413, "request body exceeds 64 bytes"),
        (format!("{p}/m?labels=a"), "1".into(), 400, "invalid query parameter labels"),
        (format!("{p}/m?labels=a=1,b=2,c=3"), "1".into(), 422, "too many labels: 3 given, at most 2"),
        (format!("{p}/m?ttl=soon"), "1".into(), 400, "invalid query parameter ttl"),
        (format!("{p}/m?bogus=1"), "1".into(), 400, "invalid query parameter bogus: unknown parameter"),
        (
            "/write-metrics/namespaces/default/foos/p/m".into(),
            "1".into(),
            404,
            "the server doesn't have a resource type \"foos\"",
        ),
        ("/write-metrics/pods/p/m".into(), "1".into(), 400, "pods is namespaced"),
        ("/write-metrics/namespaces/default/nodes/n/m".into(), "1".into(), 400, "nodes is cluster-scoped"),
        ("/write-metrics/namespaces/Default/pods/p/m".into(), "1".into(), 422, "invalid namespace \"Default\""),
        (
            format!("/write-metrics/namespaces/default/pods/{}/m", "a".repeat(254)),
            "1".into(),
            422,
            "invalid object name",
        ),
        ("/write-metrics/namespaces/default/pods/p/a%20b".into(), "1".into(), 422, "invalid metric name \"a b\""),
        ("/write-metrics/pods".into(), "1".into(), 404, "no write route matches this path"),
    ];
    for (path, body, code, message) in cases {
        let (status, text) = server.post(&path, &body).await;
        let status_obj: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
        assert_eq!(status, code, "{path}: {text}");
        assert_eq!(status_obj["kind"], "Status");
        assert_eq!(status_obj["code"], code);
        assert!(status_obj["message"].as_str().unwrap().contains(message), "{path}: {text}");
    }
    // Nothing was stored by any of them.
    let (_, discovery) = server.get(V2).await;
    assert_eq!(discovery["resources"][0]["name"], "/custommetrics", "{discovery}");
    let response = server.writer.get(server.write_url(&format!("{p}/m"))).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, DELETE");
    server.stop().await;
}

#[tokio::test]
async fn the_series_limit_refuses_new_series_but_not_updates() {
    let server = start(&["--max-series=2"]).await;
    let p = "/write-metrics/namespaces/default/pods";
    assert_eq!(server.post(&format!("{p}/a/m"), "1").await.0, 200);
    assert_eq!(server.post(&format!("{p}/b/m"), "1").await.0, 200);
    let (status, text) = server.post(&format!("{p}/c/m"), "1").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("series limit reached"), "{text}");
    assert_eq!(server.post(&format!("{p}/a/m"), "2").await.0, 200);
    assert_eq!(server.delete(&format!("{p}/b/m")).await.0, 200);
    assert_eq!(server.post(&format!("{p}/c/m"), "1").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn delete_removes_a_value_and_a_second_delete_is_not_found() {
    let server = start(&[]).await;
    let path = "/write-metrics/namespaces/default/pods/p/m";
    server.post(path, "1").await;
    assert_eq!(server.delete(path).await, (200, String::new()));
    let (status, _) = server.get(&format!("{V2}/namespaces/default/pods/p/m")).await;
    assert_eq!(status, 404);
    let (status, text) = server.delete(path).await;
    assert_eq!(status, 404, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_value_with_a_ttl_disappears_like_an_absent_one() {
    let server = start(&[]).await;
    server.post("/write-metrics/namespaces/default/pods/p/m?ttl=1s", "1").await;
    server.post("/write-metrics/namespaces/default/pods/q/m", "2").await;
    let (status, _) = server.get(&format!("{V2}/namespaces/default/pods/p/m")).await;
    assert_eq!(status, 200);
    // Bounded wait for expiry (the store tests cover exact deadlines with a manual clock).
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if server.get(&format!("{V2}/namespaces/default/pods/p/m")).await.0 == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the value did not expire within 5 s");
    let (_, list) = server.get(&format!("{V2}/namespaces/default/pods/*/m")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["describedObject"]["name"], "q");
    server.stop().await;
}

#[tokio::test]
async fn the_write_port_serves_only_writes_and_health() {
    let server = start(&[]).await;
    for path in ["/apis", "/version", "/openapi/v2", "/debug/pprof/"] {
        let response = server.writer.get(server.write_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    for path in ["/healthz", "/livez", "/readyz"] {
        let response = server.writer.get(server.write_url(path)).send().await.unwrap();
        assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "ok".to_string()), "{path}");
        let (status, body) = server.get(path).await;
        assert_eq!((status, body), (200, json!("ok")), "{path}");
    }
    let (_, body) = server.get("/readyz?verbose").await;
    assert_eq!(body, json!("[+]ping ok\n[+]store ok\n[+]informer-sync ok\n[+]shutdown ok\nreadyz check passed\n"));
    server.stop().await;
}

#[tokio::test]
async fn the_secure_port_speaks_http2_by_alpn_with_a_certificate_for_localhost() {
    let server = start(&[]).await;
    let response = server.client.get(server.api_url("/apis")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.cert_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    // 127.0.0.1 is a name of the certificate too.
    let response = http1.get(format!("https://127.0.0.1:{}/apis", server.secure.port())).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.headers()["cache-control"], "no-cache, private");
    assert!(!response.headers().contains_key("audit-id"), "no ID is invented");
    let response = http1
        .get(format!("https://127.0.0.1:{}/apis", server.secure.port()))
        .header("Audit-ID", "e2e-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["audit-id"], "e2e-1234", "the aggregator's audit ID is echoed");
    server.stop().await;
}

#[tokio::test]
async fn pretty_output_follows_the_query_and_the_user_agent() {
    let server = start(&[]).await;
    let text = server.client.get(server.api_url("/apis?pretty=true")).send().await.unwrap().text().await.unwrap();
    assert!(text.starts_with("{\n  \"kind\": \"APIGroupList\""), "{text}");
    assert!(!text.ends_with('\n'));
    let text = server
        .client
        .get(server.api_url("/apis"))
        .header("User-Agent", "curl/8.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("{\n  "), "{text}");
    let text = server.client.get(server.api_url("/apis")).send().await.unwrap().text().await.unwrap();
    assert!(text.starts_with("{\"kind\":\"APIGroupList\"") && text.ends_with("}\n"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn version_and_openapi_documents_are_served_with_etags() {
    let server = start(&[]).await;
    let (status, version) = server.get("/version").await;
    assert_eq!(status, 200);
    assert_eq!(version["gitVersion"], format!("v{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(version["major"], env!("CARGO_PKG_VERSION_MAJOR"));
    // build.rs stamps the commit, as for --version.
    assert_eq!(version["gitCommit"], env!("CUSTOM_METRICS_GIT_COMMIT"));

    let response = server.client.get(server.api_url("/openapi/v2")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let response =
        server.client.get(server.api_url("/openapi/v2")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(response.status(), 304);

    let (_, index) = server.get("/openapi/v3").await;
    for gv in ["custom.metrics.k8s.io/v1beta1", "custom.metrics.k8s.io/v1beta2", "external.metrics.k8s.io/v1beta1"] {
        let url = index["paths"][format!("apis/{gv}")]["serverRelativeURL"].as_str().unwrap().to_string();
        let (status, doc) = server.get(&url).await;
        assert_eq!(status, 200, "{url}");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{url}");
    }
    server.stop().await;
}
