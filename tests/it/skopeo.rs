//! A multi-architecture image copied into Wharf and back out with Debian's
//! `skopeo copy --all`, then compared byte for byte with the original: the
//! image index, both platform manifests, their configs and layers.
//!
//! The image is built here as an OCI image layout (random layer bytes), so
//! the test needs nothing but `skopeo` and a loopback port.

use crate::support::{Wharf, random_bytes, sha256_digest};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const TAG: &str = "v1";

/// The `skopeo` binary: on PATH, or where Debian installs it.
fn skopeo() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("skopeo"));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "skopeo is not installed: this test copies images with it. \
         Run tests/install (as root), or `apt-get install skopeo`."
    );
}

/// An OCI image layout being written: blobs by digest and a descriptor.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Store `bytes` as a blob; returns its descriptor.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256_digest(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), bytes).unwrap();
        json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }

    /// One platform's image: a layer of random bytes, a config, a manifest.
    fn image(&self, architecture: &str) -> Value {
        let layer = random_bytes(64 * 1024 + architecture.len());
        let layer = self.blob(OCI_LAYER, &layer);
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [layer["digest"]] },
        });
        let config = self.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        let mut descriptor = self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        descriptor["platform"] = json!({ "architecture": architecture, "os": "linux" });
        descriptor
    }
}

/// Every blob file of a layout, by name.
fn blobs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut blobs: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect();
    blobs.sort();
    blobs
}

fn run_skopeo(args: &[&str]) {
    let output = Command::new(skopeo())
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {} failed: {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// spec: Push and Pull of an image index with two platform images, through
/// a real client (`skopeo copy --all`); everything comes back byte for byte.
#[test]
fn multi_arch_index_round_trips_through_skopeo() {
    let skopeo = skopeo();
    assert!(skopeo.is_file());
    let work = tempfile::Builder::new()
        .prefix("wharf-skopeo-")
        .tempdir()
        .unwrap();
    let source = work.path().join("source");
    let layout = Layout::create(&source);
    let manifests = vec![layout.image("amd64"), layout.image("arm64")];
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let mut index_descriptor = layout.blob(OCI_INDEX, &index_bytes);
    index_descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": TAG });
    let top =
        json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [index_descriptor] });
    std::fs::write(source.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();

    let wharf = Wharf::start();
    let remote = format!("docker://{}/multi/arch:{TAG}", wharf.addr());
    let source_ref = format!("oci:{}:{TAG}", source.display());
    run_skopeo(&[
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &source_ref,
        &remote,
    ]);
    let copy = work.path().join("copy");
    let copy_ref = format!("oci:{}:{TAG}", copy.display());
    run_skopeo(&[
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &remote,
        &copy_ref,
    ]);

    // The tag names the very same index.
    let copied: Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    let tagged = copied["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == TAG)
        .expect("the tag in the copied layout");
    assert_eq!(tagged["digest"], index_descriptor["digest"]);
    assert_eq!(tagged["mediaType"], OCI_INDEX);
    // Index, manifests, configs and layers: the same files, byte for byte.
    let original = blobs(&source);
    assert_eq!(original.len(), 7, "1 index + 2 × (manifest, config, layer)");
    let names = |b: &[(String, Vec<u8>)]| b.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let returned = blobs(&copy);
    assert_eq!(names(&returned), names(&original));
    for ((name, want), (_, got)) in original.iter().zip(&returned) {
        assert!(want == got, "blob {name} differs after the round trip");
    }
}
