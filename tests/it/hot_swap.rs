//! Hot swap of the protocol component: `wharf serve --component PATH`
//! reloads when PATH changes; an upload started before a swap finishes
//! after it; a component that does not compile or does not fit the world
//! is refused (at start: the server does not start; later: logged, and the
//! previous component keeps serving).

use crate::support::components;
use crate::support::{Served, random_bytes, sha256_digest, wharf_run};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Replace `path` the way an operator's deploy does: write aside, rename.
fn install(source: &[u8], path: &Path) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, source).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Start `wharf serve --component PATH` on loopback with `first` installed
/// at PATH, a fresh data directory beside it; returns the directory holding
/// both, PATH, and the server (bound in this order, the server is dropped,
/// and stopped, before the directory is removed).
fn serve_swappable(first: &[u8]) -> (TempDir, PathBuf, Served) {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("registry.wasm");
    install(first, &component);
    let data_dir = dir.path().join("data");
    let served = Served::start(
        &["--component", component.to_str().unwrap()],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data_dir.to_str().unwrap(),
            ),
        ],
    );
    (dir, component, served)
}

/// Polls until `check` holds; the bound only stops a broken run.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_started_before_a_swap_finishes_after_it_and_a_broken_component_is_refused() {
    let misbehave = std::fs::read(components::misbehave()).unwrap();
    let real = std::fs::read(components::real()).unwrap();
    let (_dir, component, served) = serve_swappable(&real);
    let base = format!("http://{}", served.addr());
    let client = reqwest::Client::new();
    let hello = format!("{base}/v2/__misbehave/hello");
    assert_eq!(
        client.get(&hello).send().await.unwrap().status(),
        404,
        "the real component serves"
    );

    // SIGHUP reloads the component even when the file did not change.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &served.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("SIGHUP reloads", async || {
        let log = served.stderr();
        log.contains("reloaded the component") && log.contains("SIGHUP")
    })
    .await;

    // Start an upload and send its first half on the real component.
    let data = random_bytes(300_000);
    let digest = sha256_digest(&data);
    let started = client
        .post(format!("{base}/v2/swap/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let url = |location: &str| format!("{base}{location}");
    let half = client
        .patch(url(&location))
        .header("content-range", format!("0-{}", 149_999))
        .body(data[..150_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(half.status(), 202);
    let location = half.headers()["location"].to_str().unwrap().to_string();

    // Swap to another component (the protocol plus test routes).
    install(&misbehave, &component);
    eventually("the new component serves", async || {
        client
            .get(&hello)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // The upload finishes on it, with the right digest.
    let rest = client
        .patch(url(&location))
        .header("content-range", format!("150000-{}", data.len() - 1))
        .body(data[150_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 202);
    let location = rest.headers()["location"].to_str().unwrap().to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    let done = client
        .put(format!("{}{separator}digest={digest}", url(&location)))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201);
    let got = client
        .get(format!("{base}/v2/swap/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);

    // A broken component is refused; the one serving keeps serving.
    install(b"\0asm not really a component", &component);
    eventually("the broken component is refused", async || {
        served.stderr().contains("refused the new component")
    })
    .await;
    assert_eq!(client.get(&hello).send().await.unwrap().status(), 200);
    let again = client
        .get(format!("{base}/v2/swap/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_finishes_on_the_component_it_started_on() {
    let misbehave = std::fs::read(components::misbehave()).unwrap();
    let real = std::fs::read(components::real()).unwrap();
    let (_dir, component, served) = serve_swappable(&misbehave);
    let base = format!("http://{}", served.addr());
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn(client.get(format!("{base}/v2/__misbehave/sleep")).send());
    // Let the request reach its instance, then swap under it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    install(&real, &component);
    let hello = format!("{base}/v2/__misbehave/hello");
    eventually("the real component serves new requests", async || {
        client
            .get(&hello)
            .send()
            .await
            .is_ok_and(|r| r.status() == 404)
    })
    .await;
    let answered = in_flight.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "slept");
}

#[test]
fn a_component_for_another_world_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = [
        ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            data_dir.to_str().unwrap(),
        ),
    ];
    // A valid WebAssembly module, but a core module, not a component of
    // the wharf:registry/registry world.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = wharf_run(&["serve", "--component", core.to_str().unwrap()], &env, "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("core.wasm"),
        "the error names the file: {stderr}"
    );

    let missing = dir.path().join("missing.wasm");
    let out = wharf_run(
        &["serve", "--component", missing.to_str().unwrap()],
        &env,
        "",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.wasm"), "{stderr}");
}
