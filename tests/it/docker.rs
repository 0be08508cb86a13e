//! Wharf end to end with a real Docker engine: a private `dockerd` pushes to
//! and pulls from a `wharf serve` on 127.0.0.1 (which Docker treats as an
//! insecure, plain-HTTP registry by itself).
//!
//! One test with sequential steps, since they share one dockerd.

use std::path::Path;
use std::process::Command;

use crate::support::dockerd::{Dockerd, show};
use crate::support::{Wharf, random_bytes, sha256_digest};

/// Writes two files of random bytes (a few MiB) and tars them.
fn random_tarball(dir: &Path) -> std::path::PathBuf {
    let content = dir.join("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("big.bin"), random_bytes(4 * 1024 * 1024 + 17)).unwrap();
    std::fs::write(content.join("small.bin"), random_bytes(700 * 1024)).unwrap();
    let tarball = dir.join("image.tar");
    let out = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&content)
        .args(["big.bin", "small.bin"])
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar failed\n{}", show(&out));
    tarball
}

fn image_id(docker: &Dockerd, image: &str) -> String {
    let id = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", image]);
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:"), "odd image id {id:?} for {image}");
    id
}

/// `docker rmi` the image and check the engine no longer has it, so that
/// the next pull really comes from the registry.
fn remove_image(docker: &Dockerd, image: &str) {
    docker.docker_ok(&["rmi", image]);
    let gone = docker.docker(&["image", "inspect", image]);
    assert!(
        !gone.status.success(),
        "{image} still present after rmi\n{}",
        show(&gone)
    );
}

fn get_json(url: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let res = reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = res.status();
        let body = res.bytes().await.expect("read body");
        assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    })
}

/// The tags that `GET <tags_url>` lists for e2e/random, sorted.
fn tags(tags_url: &str) -> Vec<String> {
    let listed = get_json(tags_url);
    assert_eq!(listed["name"], "e2e/random", "GET {tags_url}: {listed}");
    let mut tags: Vec<String> = listed["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {tags_url}: no tags array in {listed}"))
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    tags.sort();
    tags
}

#[test]
fn docker_push_pull_and_restart_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let tarball = random_tarball(work.path());
    let mut wharf = Wharf::start();
    let docker = Dockerd::start();

    let image = format!("{}/e2e/random:v1", wharf.addr());
    let second = format!("{}/e2e/random:v2", wharf.addr());

    // Import the tarball as a one-layer image.
    docker.docker_ok(&["import", tarball.to_str().unwrap(), &image]);
    let id = image_id(&docker, &image);

    // Push, forget, pull: the same image comes back.
    let pushed = docker.docker_ok(&["push", &image]);
    assert!(
        pushed.contains("digest: sha256:"),
        "push printed no manifest digest:\n{pushed}"
    );
    remove_image(&docker, &image);
    docker.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&docker, &image), id, "pulled image differs");

    // Pushing again uploads nothing.
    let again = docker.docker_ok(&["push", &image]);
    assert!(
        again.contains("Layer already exists"),
        "second push re-uploaded the layer:\n{again}"
    );

    // A second tag of the same image, listed next to the first.
    docker.docker_ok(&["tag", &image, &second]);
    docker.docker_ok(&["push", &second]);
    let tags_url = format!("{}/v2/e2e/random/tags/list", wharf.url());
    assert_eq!(tags(&tags_url), ["v1", "v2"]);

    // The registry serves the layer that docker pushed: the tarball itself.
    let manifest_url = format!("{}/v2/e2e/random/manifests/v1", wharf.url());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manifest: serde_json::Value = runtime.block_on(async {
        let res = reqwest::Client::new()
            .get(&manifest_url)
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(res.status(), 200, "GET {manifest_url}");
        res.json().await.expect("manifest is JSON")
    });
    let layers = manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in manifest {manifest}"));
    assert_eq!(layers.len(), 1, "manifest {manifest}");
    let layer_url = format!(
        "{}/v2/e2e/random/blobs/{}",
        wharf.url(),
        layers[0]["digest"].as_str().unwrap()
    );
    let layer = runtime.block_on(async {
        let res = reqwest::get(&layer_url).await.expect("GET layer");
        assert_eq!(res.status(), 200, "GET {layer_url}");
        res.bytes().await.expect("layer body")
    });
    assert_eq!(
        sha256_digest(&layer),
        layers[0]["digest"].as_str().unwrap(),
        "GET {layer_url} returned other bytes"
    );

    // Stop wharf, start it again on the same data and port: still pullable.
    wharf.restart();
    remove_image(&docker, &second);
    remove_image(&docker, &image);
    docker.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&docker, &image), id, "image pulled after restart");
    docker.docker_ok(&["pull", &second]);
    assert_eq!(image_id(&docker, &second), id, "second tag after restart");
    assert_eq!(tags(&tags_url), ["v1", "v2"], "tags after restart");
}
