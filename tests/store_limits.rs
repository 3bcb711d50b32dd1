//! The store's byte budget, label-size cap and TTL resolution, seen through the write API and the read API.

mod common;

const PODS: &str = "/write-metrics/namespaces/default/pods";

/// `labels=` with 16 labels of the longest plain shape, a 63-character name and a 63-character value (2 KB in all).
fn big_labels(i: usize) -> String {
    (0..16).map(|k| format!("k{k:02}{i:0>60}%3D{:0>63}", i * 16 + k)).collect::<Vec<_>>().join(",")
}

#[tokio::test]
async fn the_store_budget_refuses_writes_with_403_and_deletes_make_room() {
    // 64 KiB: a dozen series with 2 KB of labels each.
    let server = common::start(&["--max-store-bytes=65536"]).await;
    let mut stored = 0;
    let (status, text) = loop {
        let (status, text) = server.post(&format!("{PODS}/p{stored}/m?labels={}", big_labels(stored)), "1").await;
        if status != 200 {
            break (status, text);
        }
        stored += 1;
        assert!(stored < 100, "the budget never refused a write");
    };
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("--max-store-bytes"), "{text}");
    assert!(stored >= 5, "only {stored} series fitted in 64 KiB");
    // Nothing of the refused write is stored.
    let (status, _) =
        server.get(&format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p{stored}/m")).await;
    assert_eq!(status, 404);
    // Label-free writes are cheaper but still counted; a delete gives the room back.
    assert_eq!(server.delete(&format!("{PODS}/p0/m")).await.0, 200);
    assert_eq!(server.post(&format!("{PODS}/p{stored}/m?labels={}", big_labels(stored)), "1").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn labels_over_the_byte_cap_are_refused_with_422() {
    let server = common::start(&["--max-label-bytes-per-series=16"]).await;
    let (status, text) = server.post(&format!("{PODS}/p/m?labels=key%3D0123456789abcd"), "1").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("17 bytes") && text.contains("--max-label-bytes-per-series"), "{text}");
    assert_eq!(server.post(&format!("{PODS}/p/m?labels=key%3D0123456789abc"), "1").await.0, 200);
    let external = "/write-external-metrics/namespaces/default/q?labels=key%3D0123456789abcd";
    assert_eq!(server.post(external, "1").await.0, 422);
    server.stop().await;
}

#[tokio::test]
async fn the_default_label_cap_takes_sixteen_long_plain_labels_but_not_4_kib_of_prefixed_ones() {
    let server = common::start(&[]).await;
    assert_eq!(server.post(&format!("{PODS}/p/m?labels={}", big_labels(0)), "1").await.0, 200);
    // Prefixed names are longer: 16 of them with 63-character values make 4.5 KB.
    let part = "a".repeat(59);
    let prefix = format!("{part}.{part}.{part}.example.com");
    let over: String = (0..16).map(|k| format!("{prefix}%2Fk{k:02}%3D{:0>63}", k)).collect::<Vec<_>>().join(",");
    let (status, text) = server.post(&format!("{PODS}/q/m?labels={over}"), "1").await;
    assert_eq!(status, 422, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_ttl_below_a_millisecond_is_refused_and_a_huge_one_is_kept() {
    let server = common::start(&[]).await;
    for ttl in ["1ns", "500us", "0"] {
        let (status, text) = server.post(&format!("{PODS}/p/m?ttl={ttl}"), "1").await;
        assert_eq!(status, 400, "ttl={ttl}: {text}");
        if ttl != "0" {
            assert!(text.contains("at least 1ms"), "{text}");
        }
    }
    for ttl in ["1000000000h", "18446744073709551615"] {
        assert_eq!(server.post(&format!("{PODS}/p/m?ttl={ttl}"), "1").await.0, 200, "ttl={ttl}");
        let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p/m").await;
        assert_eq!(status, 200, "ttl={ttl}");
    }
    server.stop().await;
}
