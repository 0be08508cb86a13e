//! Wharf against a real OCI client: the `oci-client` crate (and plain HTTP
//! requests with reqwest) talking to a `wharf serve` process on loopback.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value, json};

use crate::support::{Wharf, random_bytes, sha256_digest};

/// A test image: random layers and a config that names them.
struct Image {
    layers: Vec<ImageLayer>,
    config: Config,
}

impl Image {
    /// An image with one layer of `big` random bytes and one of 300 KiB.
    fn random(big: usize) -> Image {
        let layers = vec![
            ImageLayer::oci_v1(random_bytes(big), None),
            ImageLayer::oci_v1(random_bytes(300 * 1024), None),
        ];
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(&l.data)).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        Image {
            layers,
            config: Config::oci_v1(serde_json::to_vec(&config).unwrap(), None),
        }
    }

    fn manifest(&self) -> OciImageManifest {
        OciImageManifest::build(&self.layers, &self.config, None)
    }
}

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// A client that uploads each blob in one PUT instead of POST/PATCH/PUT.
fn monolithic_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: true,
        ..Default::default()
    })
}

fn reference(wharf: &Wharf, name: &str) -> Reference {
    format!("{}/{name}", wharf.addr())
        .parse()
        .unwrap_or_else(|e| panic!("bad reference {name}: {e}"))
}

async fn push(client: &Client, image_ref: &Reference, image: &Image) {
    client
        .push(
            image_ref,
            &image.layers,
            image.config.clone(),
            &RegistryAuth::Anonymous,
            Some(image.manifest()),
        )
        .await
        .unwrap_or_else(|e| panic!("push {image_ref} failed: {e}"));
}

/// Pulls the image and checks that config and layers are byte-identical to
/// what was pushed. Returns the manifest digest the registry reported.
async fn pull_and_compare(client: &Client, image_ref: &Reference, pushed: &Image) -> String {
    let pulled = client
        .pull(
            image_ref,
            &RegistryAuth::Anonymous,
            vec![IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
        .unwrap_or_else(|e| panic!("pull {image_ref} failed: {e}"));

    assert_eq!(pulled.config.media_type, IMAGE_CONFIG_MEDIA_TYPE);
    assert_eq!(
        pulled.config.sha256_digest(),
        pushed.config.sha256_digest(),
        "config digest differs"
    );
    assert!(pulled.config.data == pushed.config.data, "config differs");

    // oci-client downloads layers concurrently and returns them in the order
    // they finished: match them up by digest.
    assert_eq!(pulled.layers.len(), pushed.layers.len(), "layer count");
    for want in &pushed.layers {
        let digest = want.sha256_digest();
        let got = pulled
            .layers
            .iter()
            .find(|l| l.sha256_digest() == digest)
            .unwrap_or_else(|| panic!("layer {digest} missing from the pulled image"));
        assert_eq!(got.media_type, want.media_type, "layer {digest} media type");
        assert_eq!(got.data.len(), want.data.len(), "layer {digest} size");
        assert!(got.data == want.data, "layer {digest} bytes differ");
    }

    let manifest = pulled.manifest.expect("pull returns the manifest");
    assert_eq!(
        serde_json::to_value(&manifest).unwrap(),
        serde_json::to_value(pushed.manifest()).unwrap(),
        "pulled manifest differs from the pushed one"
    );
    pulled.digest.expect("pull returns the manifest digest")
}

/// The manifest as the registry stores it, its reported digest checked
/// against the bytes (oci-client verifies `Docker-Content-Digest`).
async fn raw_manifest(client: &Client, image_ref: &Reference) -> (Vec<u8>, String) {
    let (body, digest) = client
        .pull_manifest_raw(image_ref, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .unwrap_or_else(|e| panic!("GET manifest {image_ref} failed: {e}"));
    assert_eq!(
        digest,
        sha256_digest(&body),
        "manifest digest is not the sha256 of the manifest's bytes"
    );
    (body.to_vec(), digest)
}

/// The OCI error codes in an error from oci-client.
fn error_codes(err: &OciDistributionError) -> Vec<&OciErrorCode> {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().map(|e| &e.code).collect()
        }
        other => panic!("expected a registry error with an OCI error body, got: {other}"),
    }
}

/// GET `url`, returning status, headers and body.
async fn http_get(url: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let res = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.bytes().await.expect("read response body").to_vec();
    (status, headers, body)
}

fn json_body(url: &str, body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "GET {url}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// A JSON array of strings (tags, repositories) as a `Vec`.
fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array of strings, got {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_string()
        })
        .collect()
}

/// The list sorted: the tests compare sets of tags and repositories, not the
/// order the registry lists them in.
fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

/// The `code`s of a distribution-spec error body `{"errors":[{"code":…}]}`.
fn body_error_codes(url: &str, body: &[u8]) -> Vec<String> {
    let value = json_body(url, body);
    value["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {url}: no `errors` array in {value}"))
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_multi_component_name_is_byte_identical() {
    let wharf = Wharf::start();
    let client = client();
    let image_ref = reference(&wharf, "team/project/app:1.0");
    let image = Image::random(5 * 1024 * 1024 + 123);

    push(&client, &image_ref, &image).await;
    let digest = pull_and_compare(&client, &image_ref, &image).await;

    // The digest is that of the stored bytes, the same on HEAD and GET, and
    // the same when the identical image is pushed again.
    let (body, raw_digest) = raw_manifest(&client, &image_ref).await;
    assert_eq!(raw_digest, digest);
    let head_digest = client
        .fetch_manifest_digest(&image_ref, &RegistryAuth::Anonymous)
        .await
        .expect("HEAD manifest");
    assert_eq!(head_digest, digest, "HEAD and GET report different digests");

    push(&client, &image_ref, &image).await;
    let (body_again, digest_again) = raw_manifest(&client, &image_ref).await;
    assert_eq!(
        digest_again, digest,
        "re-pushing changed the manifest digest"
    );
    assert_eq!(body_again, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_pushed_by_tag_is_fetchable_by_digest() {
    let wharf = Wharf::start();
    let client = monolithic_client();
    let image = Image::random(64 * 1024);
    let by_tag = reference(&wharf, "library/hello:latest");

    // Upload the blobs, then our own manifest bytes, so the expected digest
    // is known independently of the registry.
    for layer in &image.layers {
        client
            .push_blob(&by_tag, layer.data.clone(), &layer.sha256_digest())
            .await
            .expect("push layer");
    }
    client
        .push_blob(
            &by_tag,
            image.config.data.clone(),
            &image.config.sha256_digest(),
        )
        .await
        .expect("push config");
    let manifest_bytes = serde_json::to_vec_pretty(&image.manifest()).unwrap();
    let expected = sha256_digest(&manifest_bytes);
    client
        .push_manifest_raw(
            &by_tag,
            manifest_bytes.clone(),
            OCI_IMAGE_MEDIA_TYPE.parse().unwrap(),
        )
        .await
        .expect("PUT manifest by tag");

    let by_digest = reference(&wharf, &format!("library/hello@{expected}"));
    let (body, digest) = raw_manifest(&client, &by_digest).await;
    assert_eq!(digest, expected);
    assert!(
        body == manifest_bytes,
        "manifest fetched by digest is not byte-identical to the pushed one:\n{}",
        String::from_utf8_lossy(&body)
    );
    let (_, tag_digest) = raw_manifest(&client, &by_tag).await;
    assert_eq!(
        tag_digest, expected,
        "tag and digest name different manifests"
    );

    pull_and_compare(&client, &by_digest, &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_listed() {
    let wharf = Wharf::start();
    let client = client();
    let image = Image::random(32 * 1024);
    let other = Image::random(32 * 1024);
    for tag in ["v2", "1.0", "latest"] {
        push(
            &client,
            &reference(&wharf, &format!("org/tool:{tag}")),
            &image,
        )
        .await;
    }
    push(&client, &reference(&wharf, "org/tool:other"), &other).await;
    // Another repository's tags must not show up.
    push(&client, &reference(&wharf, "org/unrelated:nope"), &other).await;

    let tags = client
        .list_tags(
            &reference(&wharf, "org/tool"),
            &RegistryAuth::Anonymous,
            None,
            None,
        )
        .await
        .expect("list tags");
    assert_eq!(tags.name, "org/tool");
    assert_eq!(sorted(tags.tags), ["1.0", "latest", "other", "v2"]);

    // The same over plain HTTP.
    let url = format!("{}/v2/org/tool/tags/list", wharf.url());
    let (status, _, body) = http_get(&url).await;
    assert_eq!(status, 200, "GET {url}");
    let listed = json_body(&url, &body);
    assert_eq!(listed["name"], "org/tool", "GET {url}: {listed}");
    assert_eq!(
        sorted(string_list(&listed["tags"])),
        ["1.0", "latest", "other", "v2"],
        "GET {url}: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_an_unknown_tag_fails_with_manifest_unknown() {
    let wharf = Wharf::start();
    let client = client();
    let image = Image::random(16 * 1024);
    push(&client, &reference(&wharf, "team/app:present"), &image).await;

    let missing = reference(&wharf, "team/app:absent");
    let err = match client
        .pull(
            &missing,
            &RegistryAuth::Anonymous,
            vec![IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
    {
        Ok(_) => panic!("pulling {missing} succeeded"),
        Err(e) => e,
    };
    assert_eq!(
        error_codes(&err),
        [&OciErrorCode::ManifestUnknown],
        "error: {err}"
    );

    let url = format!("{}/v2/team/app/manifests/absent", wharf.url());
    let (status, _, body) = http_get(&url).await;
    assert_eq!(status, 404, "GET {url}");
    assert_eq!(body_error_codes(&url, &body), ["MANIFEST_UNKNOWN"]);

    // The tag that exists still resolves.
    pull_and_compare(&client, &reference(&wharf, "team/app:present"), &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_of_one_repository_is_not_readable_from_another() {
    let wharf = Wharf::start();
    let client = client();
    let secret = Image::random(128 * 1024);
    let public = Image::random(16 * 1024);
    push(&client, &reference(&wharf, "alice/private:1"), &secret).await;
    push(&client, &reference(&wharf, "bob/public:1"), &public).await;

    let digests: Vec<String> = secret
        .layers
        .iter()
        .map(|l| l.sha256_digest())
        .chain([secret.config.sha256_digest()])
        .collect();
    for digest in &digests {
        // Readable where it was pushed...
        let url = format!("{}/v2/alice/private/blobs/{digest}", wharf.url());
        let (status, _, body) = http_get(&url).await;
        assert_eq!(status, 200, "GET {url}");
        assert_eq!(sha256_digest(&body), *digest, "GET {url}: wrong bytes");

        // ...but not through another repository of the same registry.
        let url = format!("{}/v2/bob/public/blobs/{digest}", wharf.url());
        let (status, _, body) = http_get(&url).await;
        assert_eq!(
            status,
            404,
            "GET {url} must be 404, body: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body_error_codes(&url, &body), ["BLOB_UNKNOWN"], "GET {url}");

        let exists = client
            .blob_exists(&reference(&wharf, "bob/public:1"), digest)
            .await
            .expect("HEAD blob");
        assert!(!exists, "HEAD /v2/bob/public/blobs/{digest} found the blob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_version_check_answers_with_registry_2_0() {
    let wharf = Wharf::start();
    let url = format!("{}/v2/", wharf.url());
    let (status, headers, body) = http_get(&url).await;
    assert_eq!(
        status,
        200,
        "GET {url}, body: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        headers
            .get("Docker-Distribution-Api-Version")
            .map(|v| v.to_str().unwrap_or("<not text>")),
        Some("registry/2.0"),
        "GET {url}: headers {headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_pushed_repositories() {
    let wharf = Wharf::start();
    let client = client();
    let url = format!("{}/v2/_catalog", wharf.url());

    let (status, _, body) = http_get(&url).await;
    assert_eq!(status, 200, "GET {url} on an empty registry");
    let empty = json_body(&url, &body);
    assert!(
        empty["repositories"]
            .as_array()
            .is_none_or(|repos| repos.is_empty()),
        "empty registry lists repositories: {empty}"
    );

    let image = Image::random(16 * 1024);
    for name in [
        "zeta:1",
        "alpha/beta:1",
        "team/project/app:1.0",
        "alpha/beta:2",
    ] {
        push(&client, &reference(&wharf, name), &image).await;
    }

    let (status, _, body) = http_get(&url).await;
    assert_eq!(status, 200, "GET {url}");
    let listed = json_body(&url, &body);
    assert_eq!(
        sorted(string_list(&listed["repositories"])),
        ["alpha/beta", "team/project/app", "zeta"],
        "GET {url}: {listed}"
    );

    let catalog = client
        .catalog(
            &reference(&wharf, "zeta"),
            &RegistryAuth::Anonymous,
            None,
            None,
        )
        .await
        .expect("catalog through oci-client");
    assert_eq!(
        sorted(catalog.repositories),
        ["alpha/beta", "team/project/app", "zeta"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let mut wharf = Wharf::start();
    let client = client();
    let image_ref = reference(&wharf, "team/project/app:1.0");
    let image = Image::random(3 * 1024 * 1024);
    push(&client, &image_ref, &image).await;
    let digest = pull_and_compare(&client, &image_ref, &image).await;
    let addr = wharf.addr();

    wharf.restart();
    assert_eq!(wharf.addr(), addr);

    let client = self::client();
    let digest_after = pull_and_compare(&client, &image_ref, &image).await;
    assert_eq!(
        digest_after, digest,
        "manifest digest changed across restart"
    );
    let tags = client
        .list_tags(&image_ref, &RegistryAuth::Anonymous, None, None)
        .await
        .expect("list tags after restart");
    assert_eq!(tags.tags, ["1.0"]);

    let url = format!("{}/v2/_catalog", wharf.url());
    let (status, _, body) = http_get(&url).await;
    assert_eq!(status, 200, "GET {url}");
    let listed = json_body(&url, &body);
    assert_eq!(
        string_list(&listed["repositories"]),
        ["team/project/app"],
        "GET {url}: {listed}"
    );

    // The restarted server also accepts new pushes next to the old data.
    let newer = Image::random(64 * 1024);
    let newer_ref = reference(&wharf, "team/project/app:2.0");
    push(&client, &newer_ref, &newer).await;
    pull_and_compare(&client, &newer_ref, &newer).await;
    pull_and_compare(&client, &image_ref, &image).await;
}
