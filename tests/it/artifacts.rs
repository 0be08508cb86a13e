//! WebAssembly components as OCI artifacts: `wkg` (crates.io, the Wasm
//! package tools, which `tests/install` builds) pushes the component that
//! `wharf component export` writes into a `wharf serve`, pulls it back byte
//! for byte, and `wharf serve --component` runs what came back.

use crate::support::{Served, Wharf, sha256_digest, wharf_run};
use std::path::Path;
use std::process::Command;

/// `wkg` as `tests/install` installs it.
const WKG: &str = "/opt/wharf-tools/wkg-0.16.1/bin/wkg";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn wkg_pushes_the_component_into_wharf_and_pulls_it_back_byte_for_byte() {
    assert!(
        Path::new(WKG).exists(),
        "{WKG} is missing: run tests/install"
    );
    let wharf = Wharf::start();
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("registry.wasm");
    let out = wharf_run(
        &["component", "export", component.to_str().unwrap()],
        &[],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registry = wharf.addr().to_string();
    let reference = format!("{registry}/components/wharf-registry:0.4.0");
    // wkg reads its configuration and docker's credentials from HOME: give
    // it an empty one.
    let wkg = |args: &[&str]| {
        let out = Command::new(WKG)
            .args(args)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .output()
            .expect("run wkg");
        assert!(
            out.status.success(),
            "wkg {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let path = component.to_str().unwrap();
    wkg(&["oci", "push", "--insecure", &registry, &reference, path]);
    let pulled = dir.path().join("pulled.wasm");
    let pulled_path = pulled.to_str().unwrap();
    wkg(&[
        "oci",
        "pull",
        "--insecure",
        &registry,
        &reference,
        "-o",
        pulled_path,
    ]);
    let (sent, back) = (
        std::fs::read(&component).unwrap(),
        std::fs::read(&pulled).unwrap(),
    );
    assert!(
        sent == back,
        "wkg pulled other bytes ({} bytes, {} sent)",
        back.len(),
        sent.len()
    );

    // Stored as an artifact: a manifest whose one layer is the component.
    let url = format!(
        "{}/v2/components/wharf-registry/manifests/0.4.0",
        wharf.url()
    );
    let manifest: serde_json::Value = runtime().block_on(async {
        let answer = reqwest::Client::new()
            .get(&url)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "GET {url}");
        answer.json().await.unwrap()
    });
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/wasm", "{manifest}");
    assert_eq!(layers[0]["digest"], sha256_digest(&sent), "{manifest}");

    // And wharf serve runs the component that came back.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let served = Served::start(
        &["--component", pulled_path],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.to_str().unwrap(),
            ),
        ],
    );
    let status = runtime().block_on(async {
        reqwest::get(format!("http://{}/v2/", served.addr()))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200, "the pulled component serves /v2/");
}
