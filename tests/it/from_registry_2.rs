//! Coming from registry:2 and going back (issue #15): a data directory
//! written by Debian's `docker-registry` (CNCF Distribution) is served by
//! Wharf, and one Wharf wrote is served by `docker-registry`, with a real
//! Docker engine pushing and pulling on both sides, and every manifest and
//! blob compared byte for byte over the API.
//!
//! One test with sequential steps: the registries take turns on one data
//! directory and one port (Docker names images by host and port).

use crate::support::Served;
use crate::support::distribution::Distribution;
use crate::support::dockerd::Dockerd;
use crate::support::{self, http};
use std::net::SocketAddr;
use std::path::Path;

fn wharf(data: &Path, addr: SocketAddr) -> Served {
    let served = Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", &addr.to_string()),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.to_str().unwrap(),
            ),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ],
    );
    assert_eq!(served.addr(), addr);
    served
}

fn image_id(docker: &Dockerd, image: &str) -> String {
    docker
        .docker_ok(&["image", "inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_string()
}

/// Forget `image` locally, pull it again, and check it is the same image.
fn pull_back(docker: &Dockerd, image: &str, id: &str) {
    docker.docker_ok(&["rmi", "-f", image]);
    docker.docker_ok(&["pull", image]);
    assert_eq!(image_id(docker, image), id, "{image} came back different");
}

/// Everything a registry serves of `repo:tag`: the manifest's bytes and
/// type, and each blob's bytes, read over the API.
#[derive(Debug, PartialEq, Eq)]
struct Image {
    manifest: Vec<u8>,
    media_type: String,
    blobs: Vec<(String, Vec<u8>)>,
    tags: Vec<String>,
}

fn read_image(addr: SocketAddr, repo: &str, tag: &str) -> Image {
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let manifest = http::request(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", accept)],
        b"",
    )
    .expect("manifest answer");
    assert_eq!(
        manifest.status,
        200,
        "{}",
        String::from_utf8_lossy(&manifest.body)
    );
    let media_type = manifest.header("content-type").unwrap().to_string();
    let digest = manifest
        .header("docker-content-digest")
        .unwrap()
        .to_string();
    assert_eq!(digest, support::sha256_digest(&manifest.body));
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let mut digests = vec![parsed["config"]["digest"].as_str().unwrap().to_string()];
    for layer in parsed["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_string());
    }
    let blobs = digests
        .into_iter()
        .map(|d| {
            let blob = http::request(addr, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"")
                .expect("blob answer");
            assert_eq!(blob.status, 200, "blob {d}");
            assert_eq!(support::sha256_digest(&blob.body), d);
            (d, blob.body)
        })
        .collect();
    let by_digest = http::request(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{digest}"),
        &[("Accept", accept)],
        b"",
    )
    .unwrap();
    assert_eq!(by_digest.body, manifest.body);
    let tags = http::request(addr, "GET", &format!("/v2/{repo}/tags/list"), &[], b"").unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags.body).unwrap();
    let mut tags: Vec<String> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    Image {
        manifest: manifest.body,
        media_type,
        blobs,
        tags,
    }
}

#[test]
fn a_data_directory_moves_between_registry_2_and_wharf_both_ways() {
    let dir = tempfile::Builder::new()
        .prefix("wharf-from-registry-2-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let docker = Dockerd::start();

    // registry:2 writes.
    let old = format!("{addr}/team/old:v1");
    let old_id = docker.import_random(dir.path(), &old, &[3 << 20, 5000]);
    let second_tag = format!("{addr}/team/old:stable");
    docker.docker_ok(&["tag", &old, &second_tag]);
    let first = Distribution::start(dir.path(), &data, addr);
    docker.docker_ok(&["push", &old]);
    docker.docker_ok(&["push", &second_tag]);
    let by_distribution = read_image(addr, "team/old", "v1");
    drop(first);

    // Wharf serves what registry:2 wrote, byte for byte, and docker pulls it.
    let served = wharf(&data, addr);
    assert_eq!(read_image(addr, "team/old", "v1"), by_distribution);
    let catalog = http::request(addr, "GET", "/v2/_catalog", &[], b"").unwrap();
    assert!(String::from_utf8_lossy(&catalog.body).contains("team/old"));
    pull_back(&docker, &old, &old_id);
    // And writes its own next to it.
    let new = format!("{addr}/team/new:v1");
    let new_id = docker.import_random(dir.path(), &new, &[3 << 20, 5000]);
    docker.docker_ok(&["push", &new]);
    let by_wharf = read_image(addr, "team/new", "v1");
    drop(served);

    // registry:2 serves what Wharf wrote, and what it wrote itself.
    let second = Distribution::start(dir.path(), &data, addr);
    assert_eq!(read_image(addr, "team/new", "v1"), by_wharf);
    assert_eq!(
        read_image(addr, "team/old", "stable").tags,
        by_distribution.tags
    );
    pull_back(&docker, &new, &new_id);
    pull_back(&docker, &old, &old_id);
    drop(second);
}
