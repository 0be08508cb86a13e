//! The sandbox holds: a component that traps, loops forever or allocates
//! without bound costs the request that made it do so (500 with an OCI
//! error body, logged with the tenant), and every other request, in flight
//! or later, is served.

use crate::support::components;
use crate::support::{Served, random_bytes, sha256_digest};
use std::time::Duration;

const CONFIG: &str = "
http:
  addr: 127.0.0.1:0
storage:
  filesystem:
    rootdirectory: ROOT
limits:
  memory_bytes: 33554432
  request_timeout: 2s
";

fn start(dir: &std::path::Path) -> Served {
    let wasm = components::misbehave();
    let config = dir.join("config.yml");
    let root = dir.join("data");
    std::fs::write(&config, CONFIG.replace("ROOT", root.to_str().unwrap())).unwrap();
    Served::start(
        &[
            config.to_str().unwrap(),
            "--component",
            wasm.to_str().unwrap(),
        ],
        &[],
    )
}

async fn assert_oci_500(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 500, "{what}");
    let body: serde_json::Value = response.json().await.expect("an OCI error body");
    assert!(body["errors"][0]["code"].is_string(), "{what}: {body}");
}

/// Push a blob monolithically and read it back: real protocol work.
async fn push_and_pull(client: &reqwest::Client, base: &str, n: usize) {
    let data = random_bytes(4096 + n);
    let digest = sha256_digest(&data);
    let put = client
        .post(format!("{base}/v2/normal/blobs/uploads/?digest={digest}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "normal push {n}");
    let got = client
        .get(format!("{base}/v2/normal/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "normal pull {n}");
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        &data[..],
        "normal pull {n}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn traps_loops_and_memory_bombs_cost_only_their_own_request() {
    let dir = tempfile::tempdir().unwrap();
    let served = start(dir.path());
    let base = format!("http://{}", served.addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let hello = client
        .get(format!("{base}/v2/__misbehave/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.text().await.unwrap(), "misbehave");

    let mut bad = Vec::new();
    for what in ["trap", "loop", "oom", "loop", "oom", "trap"] {
        let (client, base) = (client.clone(), base.clone());
        bad.push(tokio::spawn(async move {
            let response = client
                .get(format!("{base}/v2/__misbehave/{what}"))
                .send()
                .await
                .unwrap();
            assert_oci_500(response, what).await;
        }));
    }
    let cut = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            // The head promised 1000 bytes; the guest trapped after 7: the
            // connection ends early (before or after hyper flushed the head).
            let sent = client
                .get(format!("{base}/v2/__misbehave/trap-after-head"))
                .send()
                .await;
            if let Ok(response) = sent {
                assert_eq!(response.status(), 200);
                assert!(response.bytes().await.is_err(), "a cut body is an error");
            }
        })
    };
    let mut normal = Vec::new();
    for n in 0..16 {
        let (client, base) = (client.clone(), base.clone());
        normal.push(tokio::spawn(async move {
            let v2 = client.get(format!("{base}/v2/")).send().await.unwrap();
            assert_eq!(v2.status(), 200);
            push_and_pull(&client, &base, n).await;
        }));
    }
    for task in normal.into_iter().chain(bad).chain([cut]) {
        task.await.unwrap();
    }
    // Later requests are served too.
    push_and_pull(&client, &base, 99).await;

    let log = served.stderr();
    assert!(
        log.contains("request_timeout"),
        "the runaway loop is logged:\n{log}"
    );
    assert!(
        log.contains("misbehave: trapping"),
        "the panic is logged:\n{log}"
    );
    assert!(
        log.contains("tenant") && log.contains("default"),
        "failures are logged with the tenant:\n{log}"
    );
    assert!(
        log.contains("response was cut"),
        "a trap after the head is logged:\n{log}"
    );
}
