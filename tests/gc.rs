//! `wharf gc`: offline garbage collection of a data directory pushed to
//! through a real `wharf serve` (idle while `wharf gc` runs).

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use support::{Wharf, random_bytes, sha256_digest, wharf_run};

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
