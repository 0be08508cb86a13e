//! Concurrent requests that touch the same objects, against a real `wharf
//! serve`: whatever order they land in, what the registry lists afterwards
//! is consistent.

use crate::support::http::send;
use crate::support::{Wharf, sha256_digest};
use serde_json::{Value, json};
use std::sync::Barrier;
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest PUT by tag stores the manifest and then sets the tag; a DELETE
/// by digest removes the manifest and the tags naming it. Sent together,
/// they must never leave a tag that is listed but resolves to nothing: the
/// PUT either tags the manifest before the delete (which then removes the
/// tag) or fails with 404 MANIFEST_UNKNOWN after it.
#[test]
fn a_tag_put_racing_a_manifest_delete_leaves_no_dangling_tag() {
    let wharf = Wharf::start_with(&[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
    let addr = wharf.addr();
    let repo = "races/tag-vs-delete";
    let rounds = 60;
    let mut tagged = 0;
    let mut refused = 0;
    let mut failed = Vec::new();
    for round in 0..rounds {
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(format!("config {round}").as_bytes()),
                "size": 9,
            },
            "layers": [],
        }))
        .unwrap();
        let digest = sha256_digest(&manifest);
        let tag = format!("t{round}");
        // Present first, so the delete has something to remove whichever
        // request the server handles first.
        let stored = send(
            addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        );
        assert_eq!(stored.status, 201, "round {round}: storing the manifest");

        let start = Barrier::new(2);
        let (put, delete) = std::thread::scope(|s| {
            let put = s.spawn(|| {
                start.wait();
                send(
                    addr,
                    "PUT",
                    &format!("/v2/{repo}/manifests/{tag}"),
                    &[("Content-Type", OCI_MANIFEST)],
                    &manifest,
                )
            });
            let delete = s.spawn(|| {
                start.wait();
                // Land the delete at a different point of the PUT each round.
                std::thread::sleep(Duration::from_millis(round % 10 * 4));
                send(
                    addr,
                    "DELETE",
                    &format!("/v2/{repo}/manifests/{digest}"),
                    &[],
                    b"",
                )
            });
            (put.join().unwrap(), delete.join().unwrap())
        });
        if delete.status != 202 {
            failed.push(format!("round {round}: DELETE answered {}", delete.status));
        }
        match put.status {
            201 => tagged += 1,
            404 => {
                let body: Value = serde_json::from_slice(&put.body).unwrap();
                assert_eq!(
                    body["errors"][0]["code"], "MANIFEST_UNKNOWN",
                    "round {round}"
                );
                refused += 1;
            }
            other => failed.push(format!("round {round}: tag PUT answered {other}")),
        }
    }

    eprintln!("{tagged} tag PUTs answered 201, {refused} answered 404");
    // Listed tags resolve, and so does every tag on disk: no tag names a
    // manifest that is gone, listed or not.
    let listed = send(addr, "GET", &format!("/v2/{repo}/tags/list"), &[], b"");
    let listed: Value = match listed.status {
        200 => serde_json::from_slice(&listed.body).unwrap(),
        status => panic!("tags/list answered {status}"),
    };
    let listed: Vec<String> = listed["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let tags_dir = wharf
        .data_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests/tags");
    let mut on_disk: Vec<String> = std::fs::read_dir(&tags_dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|tag| tags_dir.join(tag).join("current/link").exists())
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    let resolves = |tag: &String| {
        let path = format!("/v2/{repo}/manifests/{tag}");
        send(addr, "GET", &path, &[("Accept", OCI_MANIFEST)], b"").status == 200
    };
    let dangling_listed: Vec<&String> = listed.iter().filter(|t| !resolves(t)).collect();
    let dangling_on_disk: Vec<&String> = on_disk.iter().filter(|t| !resolves(t)).collect();
    assert!(
        dangling_listed.is_empty() && dangling_on_disk.is_empty() && failed.is_empty(),
        "after {rounds} rounds: tags listed that resolve to nothing: {dangling_listed:?}; \
         tags on disk that resolve to nothing: {dangling_on_disk:?}; \
         requests failed: {failed:?} \
         ({tagged} tag PUTs answered 201, {refused} answered 404)"
    );
}
