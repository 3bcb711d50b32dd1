//! The status page on the admin listener (docs/architecture.md §14, docs/wire-contract.md §12) through HTTP, against
//! a standalone server on 127.0.0.1: written series appear with their values, filters narrow, pages and sorting,
//! escaping of what the request reflects, the JSON twin, the state and write counts, and `--admin-address=`.

mod common;

use common::{TestServer, start};
use serde_json::{Value, json};

/// A server whose admin listener is on a free loopback port, with `extra` flags.
async fn server(extra: &[&str]) -> (TestServer, String) {
    let mut flags = vec!["--admin-address=127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let server = start(&flags).await;
    let admin = server.running.as_ref().unwrap().admin_addr.expect("the admin listener runs");
    (server, format!("http://{admin}"))
}

/// GET `path` of the page as a browser asks: (status, content type, body).
async fn html(base: &str, path: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response.headers()["content-type"].to_str().unwrap().to_string();
    (status, kind, response.text().await.unwrap())
}

/// GET `path` of the JSON twin: (status, body).
async fn json_view(base: &str, path: &str) -> (u16, Value) {
    let response =
        reqwest::Client::new().get(format!("{base}{path}")).header("accept", "application/json").send().await.unwrap();
    let status = response.status().as_u16();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    (status, response.json().await.unwrap())
}

/// (object or labels, value) of each row of a JSON view.
fn rows(page: &Value) -> Vec<(String, String)> {
    page["series"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let who = match row["object"].as_str() {
                Some(object) => object.to_string(),
                None => serde_json::to_string(&row["labels"]).unwrap(),
            };
            (who, row["value"].as_str().unwrap().to_string())
        })
        .collect()
}

async fn write(server: &TestServer, path: &str, body: &str) {
    let (status, text) = server.post(path, body).await;
    assert_eq!(status, 200, "{path}: {text}");
}

#[tokio::test]
async fn written_series_appear_with_their_values_grouped_and_the_json_twin_says_the_same() {
    let (server, base) = server(&[]).await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/requests?labels=route%3Dcheckout", "42").await;
    // web-2 and the queue are written more than once: their sparklines draw their recent values (a few
    // milliseconds apart: the history keeps one value per millisecond, the last).
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(3));
    for value in ["500m", "1", "1500m"] {
        write(&server, "/write-metrics/namespaces/shop/pods/web-2/requests?ttl=1h", value).await;
        pause().await;
    }
    for value in ["16", "17"] {
        write(&server, "/write-external-metrics/namespaces/shop/queue_depth?labels=queue%3Dorders", value).await;
        pause().await;
    }
    write(&server, "/write-metrics/nodes/node-1/temperature", "300").await;

    let (status, kind, page) = html(&base, "/").await;
    assert_eq!((status, kind.as_str()), (200, "text/html; charset=utf-8"));
    for group in ["shop / pods / requests", "shop / external / queue_depth", "(cluster) / nodes / temperature"] {
        assert!(page.contains(group), "no group {group:?} in {page}");
    }
    for cell in
        ["<td class=\"object\">web-1</td>", ">42</td>", ">1500m</td>", ">17</td>", "route=checkout", "queue=orders"]
    {
        assert!(page.contains(cell), "no {cell:?} in {page}");
    }
    assert!(page.contains("<svg class=\"spark\""), "every row has its sparkline");
    assert!(!page.contains("http://") || !page.contains("src=\"http"), "nothing is loaded from elsewhere");

    let (status, view) = json_view(&base, "/").await;
    assert_eq!(status, 200);
    assert_eq!(view["version"], custom_metrics_apiserver::config::VERSION);
    assert_eq!(view["series"]["total"], 4);
    let first = &view["series"]["rows"][0];
    // External series come first in a namespace; cluster-scoped objects (empty namespace) before everything.
    assert_eq!((first["namespace"].as_str(), first["resource"].as_str()), (Some(""), Some("nodes")));
    let web2 = view["series"]["rows"].as_array().unwrap().iter().find(|r| r["object"] == "web-2").unwrap();
    assert_eq!(web2["value"], "1500m");
    let expires = web2["expires_in_seconds"].as_f64().unwrap();
    assert!(expires > 3000.0 && expires <= 3600.0, "{web2}");
    let values = |row: &Value| -> Vec<f64> {
        row["points"].as_array().unwrap().iter().map(|point| point[1].as_f64().unwrap()).collect()
    };
    assert_eq!(values(web2), [0.5, 1.0, 1.5], "the sparkline draws the series' recent values, oldest first");
    let external = view["series"]["rows"].as_array().unwrap().iter().find(|r| r["metric"] == "queue_depth").unwrap();
    assert_eq!((external["resource"].clone(), external["object"].clone()), (Value::Null, Value::Null));
    assert_eq!(external["labels"], json!({"queue": "orders"}));
    assert_eq!(external["expires_in_seconds"], Value::Null);
    assert_eq!(values(external), [16.0, 17.0]);
    server.stop().await;
}

#[tokio::test]
async fn the_state_shows_the_store_the_label_index_the_certificate_and_the_writes_by_result() {
    let (server, base) = server(&[]).await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/requests", "1").await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/requests", "2").await;
    // A value that is not a quantity (400) and one beyond --max-request-body-bytes (413).
    assert_eq!(server.post("/write-metrics/namespaces/shop/pods/web-1/requests", "lots").await.0, 400);
    assert_eq!(server.post("/write-metrics/namespaces/shop/pods/web-1/requests", &"1".repeat(5000)).await.0, 413);

    let (_, view) = json_view(&base, "/").await;
    let section = |title: &str| {
        view["state"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["title"] == title)
            .unwrap_or_else(|| panic!("{title}: {view}"))["entries"]
            .clone()
    };
    let store = section("Store");
    assert_eq!(store[0], json!({"name": "kind", "level": "info", "detail": "memory"}));
    assert_eq!(store[1], json!({"name": "health", "level": "ok", "detail": "healthy"}));
    assert!(store[2]["detail"].as_str().unwrap().starts_with("1 series"), "{store}");
    assert_eq!(section("Label index")[0]["name"], "standalone");
    let tls = &section("TLS")[0];
    assert_eq!(tls["level"], "ok", "{tls}");
    assert!(tls["detail"].as_str().unwrap().contains("expires at"), "{tls}");
    // The minute under way counts what was answered so far.
    let now = &view["writes"][0];
    assert_eq!(now["accepted"], 2, "{now}");
    assert_eq!(
        now["refused"],
        json!([{"code": 400, "reason": "bad request", "count": 1},
            {"code": 413, "reason": "body or batch too large", "count": 1}])
    );
    let (_, _, page) = html(&base, "/").await;
    assert!(page.contains("1 × 400 bad request, 1 × 413 body or batch too large"), "{page}");
    assert!(page.contains("<td>kind</td><td class=\"level level-info\">info</td><td>memory</td>"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn filters_by_namespace_and_metric_name_narrow_the_list() {
    let (server, base) = server(&[]).await;
    for (namespace, metric, value) in [("shop", "requests", 1), ("shop", "latency", 2), ("bank", "requests", 3)] {
        write(&server, &format!("/write-metrics/namespaces/{namespace}/pods/web/{metric}"), &value.to_string()).await;
    }
    write(&server, "/write-external-metrics/namespaces/bank/queue_depth", "4").await;
    let values = |view: Value| rows(&view).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
    assert_eq!(values(json_view(&base, "/").await.1), ["4", "3", "2", "1"]);
    assert_eq!(values(json_view(&base, "/?namespace=shop").await.1), ["2", "1"]);
    assert_eq!(values(json_view(&base, "/?metric=req").await.1), ["3", "1"]);
    assert_eq!(values(json_view(&base, "/?namespace=bank&metric=queue").await.1), ["4"]);
    let (_, none) = json_view(&base, "/?namespace=nowhere").await;
    assert_eq!((none["series"]["total"].clone(), none["series"]["pages"].clone()), (json!(0), json!(1)));
    let (_, _, page) = html(&base, "/?namespace=shop").await;
    assert!(page.contains("shop / pods / latency") && !page.contains("bank /"), "{page}");
    assert!(page.contains("value=\"shop\""), "the form shows the filter: {page}");
    assert!(page.contains("href=\"/?namespace=shop\">link to this view"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn pages_cover_every_series_once_with_stable_links_and_a_bounded_size() {
    let (server, base) = server(&["--admin-max-page-size=100"]).await;
    let items: Vec<Value> = (0..250)
        .map(|i| json!({"namespace": "shop", "resource": "pods", "name": format!("web-{i:03}"), "metric": "q", "value": i}))
        .collect();
    let (status, text) = server.post("/write-metrics", &json!({ "items": items }).to_string()).await;
    assert_eq!(status, 200, "{text}");

    let mut seen = Vec::new();
    let mut next = Some("/?limit=100".to_string());
    let mut pages = 0;
    while let Some(link) = next {
        let (status, view) = json_view(&base, &link).await;
        assert_eq!(status, 200);
        assert_eq!((view["series"]["total"].clone(), view["series"]["pages"].clone()), (json!(250), json!(3)));
        assert_eq!(
            view["series"]["links"]["self"],
            link.replace("limit=100", "").trim_end_matches(['?', '&']).replace("?&", "?")
        );
        seen.extend(rows(&view).into_iter().map(|(object, _)| object));
        next = view["series"]["links"]["next"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..250).map(|i| format!("web-{i:03}")).collect();
    assert_eq!(seen, expected, "every series once, in name order");
    // A page's link shows the same rows again.
    let (_, third) = json_view(&base, "/?page=3").await;
    assert_eq!(rows(&third).len(), 50);
    assert_eq!(third["series"]["links"]["prev"], "/?page=2");
    assert_eq!(third["series"]["links"]["next"], Value::Null);
    let (_, beyond) = json_view(&base, "/?page=9").await;
    assert!(rows(&beyond).is_empty());
    // The page size is bounded by --admin-max-page-size: a Status saying so.
    let (status, refused) = json_view(&base, "/?limit=101").await;
    assert_eq!(status, 400);
    assert_eq!((refused["kind"].as_str(), refused["code"].as_i64()), (Some("Status"), Some(400)));
    assert!(refused["message"].as_str().unwrap().contains("from 1 to 100 (--admin-max-page-size)"), "{refused}");
    let (status, _, page) = html(&base, "/?limit=101").await;
    assert_eq!(status, 400);
    assert!(page.contains("--admin-max-page-size"), "{page}");
    let (_, _, page) = html(&base, "/?limit=100").await;
    assert!(page.contains("id=\"next\" href=\"/?page=2\""), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn sorting_by_value_age_and_expiry_in_both_directions() {
    let (server, base) = server(&[]).await;
    for (name, value, ttl) in [("a", "5", "ttl=1h"), ("b", "1", "ttl=10m"), ("c", "3k", ""), ("d", "-2", "ttl=30m")] {
        write(&server, &format!("/write-metrics/namespaces/shop/pods/{name}/q?{ttl}"), value).await;
        // Distinct timestamps (milliseconds) for the age order.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let order = |view: Value| rows(&view).into_iter().map(|(object, _)| object).collect::<String>();
    assert_eq!(order(json_view(&base, "/").await.1), "abcd");
    assert_eq!(order(json_view(&base, "/?sort=-name").await.1), "dcba");
    assert_eq!(order(json_view(&base, "/?sort=value").await.1), "dbac");
    assert_eq!(order(json_view(&base, "/?sort=-value").await.1), "cabd");
    assert_eq!(order(json_view(&base, "/?sort=age").await.1), "dcba", "youngest first");
    assert_eq!(order(json_view(&base, "/?sort=expiry").await.1), "bdac", "soonest first, never last");
    assert_eq!(order(json_view(&base, "/?sort=-expiry&limit=2&page=2").await.1), "db", "sorted, then paginated");
    let (status, refused) = json_view(&base, "/?sort=size").await;
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("name, value, age or expiry"), "{refused}");
    // The column headers link to the view sorted by them, and back.
    let (_, _, page) = html(&base, "/?sort=value").await;
    assert!(page.contains("<a href=\"/?sort=-value\">Value ▲</a>"), "{page}");
    assert!(page.contains("<a href=\"/?sort=age\">Age</a>"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn what_the_request_reflects_is_escaped_and_unknown_parameters_refused() {
    let (server, base) = server(&[]).await;
    let hostile = "%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let (status, _, page) = html(&base, &format!("/?namespace={hostile}&metric={hostile}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""), "{page}");
    let (status, _, page) = html(&base, &format!("/?{hostile}=1")).await;
    assert_eq!(status, 400);
    assert!(!page.contains("<script>") && page.contains("unknown query parameter"), "{page}");
    let (status, refused) = json_view(&base, "/?namepsace=shop").await;
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("unknown query parameter \"namepsace\""), "{refused}");
    // Only reads; only the page.
    let response = reqwest::Client::new().post(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_eq!(reqwest::Client::new().get(format!("{base}/metrics")).send().await.unwrap().status().as_u16(), 404);
    server.stop().await;
}

#[tokio::test]
async fn an_empty_admin_address_serves_no_page_and_a_taken_port_does_not_stop_the_adapter() {
    let server = start(&["--admin-address="]).await;
    assert_eq!(server.running.as_ref().unwrap().admin_addr, None);
    server.stop().await;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("--admin-address={}", taken.local_addr().unwrap());
    let server = start(&[&address]).await;
    assert_eq!(server.running.as_ref().unwrap().admin_addr, None, "the port was taken");
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/q", "1").await;
    assert_eq!(
        server.first_value("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/q").await,
        Ok("1".into())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_redis_store_the_page_lists_the_copys_series_and_shows_the_replication_lag() {
    let redis = custom_metrics_apiserver::store::redis_testing::RedisServer::start();
    let (server, base) = server(&[&format!("--store={}", redis.address())]).await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/requests?labels=route%3Dpay", "42").await;
    write(&server, "/write-external-metrics/namespaces/shop/queue_depth", "17").await;
    let (_, view) = json_view(&base, "/").await;
    assert_eq!(rows(&view), [("{}".to_string(), "17".to_string()), ("web-1".to_string(), "42".to_string())]);
    let store = view["state"][0]["entries"].clone();
    assert_eq!(store[0], json!({"name": "kind", "level": "info", "detail": format!("Redis {}", redis.address())}));
    assert_eq!(store[1]["detail"], "healthy", "{store}");
    let lag = store.as_array().unwrap().iter().find(|e| e["name"] == "replication lag").expect("a lag entry");
    assert_eq!(lag["level"], "ok", "{lag}");
    assert!(lag["detail"].as_str().unwrap().ends_with(" s"), "{lag}");
    let loads = store.as_array().unwrap().iter().find(|e| e["name"] == "full loads").expect("a full-loads entry");
    assert!(loads["detail"].as_str().unwrap().contains("start: 1"), "{loads}");
    server.stop().await;
}

#[tokio::test]
async fn in_cluster_mode_the_state_shows_each_watch_and_the_apiservices_as_the_cluster_reports_them() {
    const APISERVICES: &str = "/apis/apiregistration.k8s.io/v1/apiservices";
    let server = common::cluster::ClusterServer::start(&["--admin-address=127.0.0.1:0"]).await;
    server.fake.put_object(
        APISERVICES,
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta2.custom.metrics.k8s.io"}, "spec": {"groupPriorityMinimum": 100, "versionPriority": 100},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Passed"}]}}),
    );
    server.fake.put_object(
        APISERVICES,
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.external.metrics.k8s.io"}, "spec": {"groupPriorityMinimum": 100, "versionPriority": 100},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints",
                "message": "endpoints for service/custom-metrics-apiserver have no addresses"}]}}),
    );
    let base = format!("http://{}", server.running.as_ref().unwrap().admin_addr.unwrap());
    let section = async |title: &str| {
        let (_, view) = json_view(&base, "/").await;
        view["state"].as_array().unwrap().iter().find(|s| s["title"] == title).unwrap()["entries"].clone()
    };
    common::eventually("the pods watch listed", async || section("Label index").await[0]["level"] == "ok").await;
    let index = section("Label index").await;
    assert_eq!(index.as_array().unwrap().len(), 1, "{index}");
    assert_eq!(index[0]["name"], "pods");
    assert!(index[0]["detail"].as_str().unwrap().starts_with("synced, "), "{index}");
    assert_eq!(
        section("APIServices").await,
        json!([
            {"name": "v1beta2.custom.metrics.k8s.io", "level": "ok", "detail": "Available"},
            {"name": "v1beta1.custom.metrics.k8s.io", "level": "warning", "detail": "not registered"},
            {"name": "v1beta1.external.metrics.k8s.io", "level": "error",
                "detail": "Available=False MissingEndpoints: endpoints for service/custom-metrics-apiserver have no addresses"}
        ])
    );
    server.stop().await;
}
