//! `wharf gc`: offline garbage collection of a data directory pushed to
//! through a real `wharf serve` (idle while `wharf gc` runs).

use crate::support;
use crate::support::{Wharf, random_bytes, sha256_digest, wharf_run};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One request on a fresh connection: status and body.
fn request(addr: SocketAddr, method: &str, path: &str, ct: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nAccept: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&raw[..end])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, raw[end + 4..].to_vec())
}

fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
    assert_eq!(
        request(addr, "POST", &path, "application/octet-stream", data).0,
        201
    );
    digest
}

/// Pushes an image (config + one layer), optionally with a subject, under
/// `reference`; returns (manifest digest, layer digest).
fn push_image(
    addr: SocketAddr,
    repo: &str,
    reference: &str,
    subject: Option<&str>,
) -> (String, String) {
    let config = format!(r#"{{"image":"{reference}"}}"#).into_bytes();
    let config_digest = push_blob(addr, repo, &config);
    let layer = random_bytes(10_000);
    let layer_digest = push_blob(addr, repo, &layer);
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    if let Some(subject) = subject {
        manifest["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 1});
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256_digest(&bytes);
    let target = if reference.is_empty() {
        digest.clone()
    } else {
        reference.to_string()
    };
    let path = format!("/v2/{repo}/manifests/{target}");
    assert_eq!(request(addr, "PUT", &path, OCI_MANIFEST, &bytes).0, 201);
    (digest, layer_digest)
}

fn blob_status(addr: SocketAddr, repo: &str, digest: &str) -> u16 {
    request(addr, "GET", &format!("/v2/{repo}/blobs/{digest}"), "x", b"").0
}

fn manifest_status(addr: SocketAddr, repo: &str, digest: &str) -> u16 {
    request(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{digest}"),
        "x",
        b"",
    )
    .0
}

fn gc(wharf: &Wharf, flags: &[&str]) -> String {
    let root = wharf.data_dir();
    let mut args = vec!["gc"];
    args.extend_from_slice(flags);
    let out = wharf_run(
        &args,
        &[(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            root.to_str().unwrap(),
        )],
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wharf gc failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Pushed {
    tagged: (String, String),
    untagged: (String, String),
    referrer: (String, String),
    orphan: String,
}

fn push_all(wharf: &Wharf) -> Pushed {
    let addr = wharf.addr();
    let tagged = push_image(addr, "gc/app", "v1", None);
    let untagged = push_image(addr, "gc/app", "", None);
    let referrer = push_image(addr, "gc/app", "", Some(&tagged.0));
    let orphan = push_blob(addr, "gc/app", &random_bytes(7_777));
    Pushed {
        tagged,
        untagged,
        referrer,
        orphan,
    }
}

#[test]
fn dry_run_reports_unreferenced_blobs_and_removes_nothing() {
    let wharf = Wharf::start();
    let p = push_all(&wharf);
    let out = gc(&wharf, &["--dry-run"]);
    assert!(
        out.contains(&format!("would remove blob {} (7777 bytes)", p.orphan)),
        "{out}"
    );
    assert!(out.contains("7777 bytes would be reclaimed"), "{out}");
    assert_eq!(blob_status(wharf.addr(), "gc/app", &p.orphan), 200);
}

#[test]
fn gc_sweeps_unreferenced_blobs_and_their_links_and_keeps_every_manifest() {
    let wharf = Wharf::start();
    let p = push_all(&wharf);
    let out = gc(&wharf, &[]);
    assert!(out.contains(&format!("removed blob {}", p.orphan)), "{out}");
    assert!(
        out.contains("0 manifests, 1 blobs, 1 layer links; 7777 bytes reclaimed"),
        "{out}"
    );
    let addr = wharf.addr();
    assert_eq!(blob_status(addr, "gc/app", &p.orphan), 404);
    let link = wharf.data_dir().join(format!(
        "docker/registry/v2/repositories/gc/app/_layers/sha256/{}",
        &p.orphan["sha256:".len()..]
    ));
    assert!(!link.exists(), "the layer link to a swept blob stayed");
    for (manifest, layer) in [&p.tagged, &p.untagged, &p.referrer] {
        assert_eq!(manifest_status(addr, "gc/app", manifest), 200);
        assert_eq!(blob_status(addr, "gc/app", layer), 200);
    }
    // A second run finds nothing.
    assert!(gc(&wharf, &[]).contains("0 manifests, 0 blobs, 0 layer links; 0 bytes reclaimed"));
}

#[test]
fn delete_untagged_removes_untagged_manifests_but_keeps_referrers_of_tagged_ones() {
    let wharf = Wharf::start();
    let p = push_all(&wharf);
    let out = gc(&wharf, &["--delete-untagged"]);
    assert!(
        out.contains(&format!("removed manifest gc/app@{}", p.untagged.0)),
        "{out}"
    );
    let addr = wharf.addr();
    assert_eq!(manifest_status(addr, "gc/app", &p.untagged.0), 404);
    assert_eq!(blob_status(addr, "gc/app", &p.untagged.1), 404);
    assert_eq!(blob_status(addr, "gc/app", &p.orphan), 404);
    for (manifest, layer) in [&p.tagged, &p.referrer] {
        assert_eq!(manifest_status(addr, "gc/app", manifest), 200);
        assert_eq!(blob_status(addr, "gc/app", layer), 200);
    }
    assert_eq!(
        request(addr, "GET", "/v2/gc/app/manifests/v1", "x", b"").0,
        200
    );
}

/// Pushes an image whose layers are `layers` (a unique config added),
/// pausing `pause` between its blobs and its manifest as a slow client
/// does; returns the manifest digest and every blob with its bytes.
fn push_slowly(
    addr: SocketAddr,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
    pause: std::time::Duration,
) -> (String, Vec<(String, Vec<u8>)>) {
    let config = format!(r#"{{"image":"{repo}:{tag}"}}"#).into_bytes();
    let mut blobs = vec![(push_blob(addr, repo, &config), config)];
    for layer in layers {
        blobs.push((push_blob(addr, repo, layer), layer.clone()));
    }
    std::thread::sleep(pause);
    let descriptor = |(digest, bytes): &(String, Vec<u8>)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": bytes.len()});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0].0, "size": blobs[0].1.len()},
        "layers": blobs[1..].iter().map(descriptor).collect::<Vec<_>>(),
    }))
    .unwrap();
    let (status, body) = request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        OCI_MANIFEST,
        &manifest,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    (sha256_digest(&manifest), blobs)
}

#[test]
fn online_gc_under_concurrent_pushes_keeps_every_pushed_image_whole_and_collects_old_garbage() {
    let wharf = Wharf::start_with(&[
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_ENABLED", "true"),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "50ms"),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "2s"),
    ]);
    let addr = wharf.addr();
    // Garbage from before the pushes: an orphan blob, and the layer of an
    // image whose manifest was deleted.
    let orphan = push_blob(addr, "gc/old", &random_bytes(5_000));
    let (deleted, deleted_layer) = push_image(addr, "gc/old", "", None);
    let path = format!("/v2/gc/old/manifests/{deleted}");
    assert_eq!(request(addr, "DELETE", &path, "x", b"").0, 202);

    // Four clients push eight images each while the collector runs every
    // 50 ms: each uploads a layer every image shares and one of its own,
    // then waits up to 400 ms (within the grace period) before the
    // manifest that references them.
    let base = random_bytes(20_000);
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let base = base.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|i| {
                        let repo = format!("gc/client{client}");
                        let pause = std::time::Duration::from_millis((client * 8 + i) % 5 * 100);
                        let layers = [base.clone(), random_bytes(3_000 + i as usize)];
                        let (manifest, blobs) =
                            push_slowly(addr, &repo, &format!("v{i}"), &layers, pause);
                        (repo, manifest, blobs)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let pushed: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a pushing client failed"))
        .collect();
    assert_eq!(pushed.len(), 32);

    // The old garbage goes once it is older than the grace period.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while blob_status(addr, "gc/old", &orphan) != 404
        || blob_status(addr, "gc/old", &deleted_layer) != 404
    {
        assert!(
            std::time::Instant::now() < deadline,
            "old unreferenced blobs were not collected:\n{}",
            support::tail(&wharf.stderr(), 20)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Every pushed image is whole: its manifest, and every blob it names
    // with the bytes pushed.
    for (repo, manifest, blobs) in &pushed {
        assert_eq!(
            manifest_status(addr, repo, manifest),
            200,
            "{repo}@{manifest}"
        );
        for (digest, bytes) in blobs {
            let (status, body) =
                request(addr, "GET", &format!("/v2/{repo}/blobs/{digest}"), "x", b"");
            assert_eq!(status, 200, "{repo}@{manifest}: blob {digest} is gone");
            assert!(&body == bytes, "{repo}: blob {digest} changed");
        }
    }
    let runs = wharf.stderr().matches("online garbage collection").count();
    assert!(runs >= 10, "the collector ran only {runs} times");
}
