//! Hostile and malformed input against a real `wharf serve`: every request
//! here gets a 4xx with an OCI error body carrying the right code, and the
//! data stored before it (a blob, a manifest and a tag seeded by each test)
//! is still there, byte for byte, afterwards.
//!
//! Requests are written by hand on a raw TCP connection so that nothing
//! (no URL library) normalizes `..`, percent-encodings or lengths on the
//! way. Tests share one server, each under its own repository prefix; the
//! connection-limit tests start their own.

use crate::support::http::{Reply, parse_reply};
use crate::support::{Wharf, random_bytes, sha256_digest, shared_wharf};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

impl Reply {
    /// Asserts the status and that the body is an OCI error with `code`.
    fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an OCI error body ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        });
        assert_eq!(body["errors"][0]["code"], code, "error body {body}");
        assert!(
            body["errors"][0]["message"].is_string(),
            "error body {body}"
        );
    }
}

/// A response head with its content-length header dropped.
fn strip_length(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

/// Reads everything until the server closes (or `timeout` passes).
fn read_all(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `head` (request line and headers, without the blank line) plus
/// `body` on a fresh connection, asking the server to close it after.
fn send_raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to wharf");
    let mut request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    // The server may answer (and close) before reading a refused body.
    let _ = stream.write_all(&request);
    let raw = read_all(&mut stream, Duration::from_secs(60));
    let parsed = if head.starts_with("HEAD ") {
        // No body follows a HEAD response, whatever its content-length.
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |e| e + 4);
        parse_reply(&strip_length(&raw[..end]))
    } else {
        parse_reply(&raw)
    };
    parsed
        .unwrap_or_else(|| {
            panic!(
                "no HTTP response to {head:?}: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
        .0
}

/// A test's registry: the shared server and a repository prefix, with a
/// blob, a manifest and a tag already pushed.
struct Registry {
    wharf: Arc<Wharf>,
    ns: String,
    seed: Seed,
}

struct Seed {
    repo: String,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Registry {
    fn start() -> Registry {
        let wharf = shared_wharf();
        let ns = format!("h{}", NAMESPACES.fetch_add(1, Ordering::Relaxed));
        let mut registry = Registry {
            wharf,
            seed: Seed {
                repo: format!("{ns}/app"),
                layer: random_bytes(3000),
                manifest: Vec::new(),
            },
            ns,
        };
        registry.seed();
        registry
    }

    fn addr(&self) -> SocketAddr {
        self.wharf.addr()
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1");
        let has_length = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        for (k, v) in headers {
            head.push_str(&format!("\r\n{k}: {v}"));
        }
        if !has_length && (!body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH")) {
            head.push_str(&format!("\r\nContent-Length: {}", body.len()));
        }
        send_raw(self.addr(), &head, body)
    }

    /// Pushes a blob monolithically; returns its digest.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let reply = self.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(
            reply.status,
            201,
            "{:?}",
            String::from_utf8_lossy(&reply.body)
        );
        digest
    }

    fn seed(&mut self) {
        let repo = self.seed.repo.clone();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let config_digest = self.push_blob(&repo, config);
        let layer_digest = self.push_blob(&repo, &self.seed.layer);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": self.seed.layer.len()}],
        }))
        .unwrap();
        let reply = self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        );
        assert_eq!(reply.status, 201);
        self.seed.manifest = manifest;
    }

    /// Asserts the seeded blob, manifest and tag are all still served as
    /// pushed, and the tag list is exactly the seed's.
    fn assert_seed_intact(&self) {
        let repo = &self.seed.repo;
        let blob = self.send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", sha256_digest(&self.seed.layer)),
            &[],
            b"",
        );
        assert_eq!(blob.status, 200);
        assert_eq!(blob.body, self.seed.layer, "the seeded blob changed");
        let by_tag = self.send(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        );
        assert_eq!(by_tag.status, 200);
        assert_eq!(
            by_tag.body, self.seed.manifest,
            "the seeded manifest changed"
        );
        let tags = self.send("GET", &format!("/v2/{repo}/tags/list"), &[], b"");
        let tags: Value = serde_json::from_slice(&tags.body).unwrap();
        assert_eq!(tags["tags"], json!(["v1"]));
    }

    /// Starts an upload session in the seeded repository; its path.
    fn session(&self) -> String {
        let reply = self.send(
            "POST",
            &format!("/v2/{}/blobs/uploads/", self.seed.repo),
            &[],
            b"",
        );
        assert_eq!(reply.status, 202);
        let location = reply.header("location").expect("location").to_string();
        match location.find("/v2/") {
            Some(at) => location[at..].to_string(),
            None => location,
        }
    }

    fn upload_offset(&self, session: &str) -> String {
        let reply = self.send("GET", session, &[], b"");
        assert_eq!(reply.status, 204);
        reply.header("range").expect("range").to_string()
    }

    fn assert_blob_absent(&self, digest: &str) {
        let reply = self.send(
            "HEAD",
            &format!("/v2/{}/blobs/{digest}", self.seed.repo),
            &[],
            b"",
        );
        assert_eq!(reply.status, 404, "{digest} is stored");
    }
}

fn manifest_put(r: &Registry, reference: &str, content_type: &str, body: &[u8]) -> Reply {
    r.send(
        "PUT",
        &format!("/v2/{}/manifests/{reference}", r.seed.repo),
        &[("Content-Type", content_type)],
        body,
    )
}

#[test]
fn repository_names_with_dot_dot_are_name_invalid() {
    let r = Registry::start();
    for path in [
        format!("/v2/{}/../x/manifests/v1", r.ns),
        format!("/v2/{}/app/../../etc/manifests/v1", r.ns),
        "/v2/../tags/list".to_string(),
        format!("/v2/{}/./app/tags/list", r.ns),
    ] {
        r.send("GET", &path, &[], b"")
            .expect_error(400, "NAME_INVALID");
    }
    r.send(
        "POST",
        &format!("/v2/{}/../escape/blobs/uploads/", r.ns),
        &[],
        b"",
    )
    .expect_error(400, "NAME_INVALID");
    r.assert_seed_intact();
}

#[test]
fn percent_encoded_dots_and_slashes_in_names_are_name_invalid() {
    let r = Registry::start();
    for name in [
        format!("{}/%2e%2e/app", r.ns),
        format!("{}/%2E%2E", r.ns),
        format!("{}%2fapp", r.ns),
        format!("{}/app%2F..%2F..", r.ns),
        format!("{}/a%00b", r.ns),
    ] {
        r.send("GET", &format!("/v2/{name}/tags/list"), &[], b"")
            .expect_error(400, "NAME_INVALID");
        r.send("PUT", &format!("/v2/{name}/manifests/v1"), &[], b"{}")
            .expect_error(400, "NAME_INVALID");
    }
    r.assert_seed_intact();
}

#[test]
fn upper_case_names_are_name_invalid() {
    let r = Registry::start();
    r.send("GET", &format!("/v2/{}/App/tags/list", r.ns), &[], b"")
        .expect_error(400, "NAME_INVALID");
    r.send(
        "POST",
        &format!("/v2/{}/APP/blobs/uploads/", r.ns),
        &[],
        b"",
    )
    .expect_error(400, "NAME_INVALID");
    r.assert_seed_intact();
}

#[test]
fn names_over_255_characters_are_name_invalid() {
    let r = Registry::start();
    let long = format!("{}/{}", r.ns, "a".repeat(256 - r.ns.len()));
    assert!(long.len() > 255);
    r.send("GET", &format!("/v2/{long}/tags/list"), &[], b"")
        .expect_error(400, "NAME_INVALID");
    r.send("POST", &format!("/v2/{long}/blobs/uploads/"), &[], b"")
        .expect_error(400, "NAME_INVALID");
    r.assert_seed_intact();
}

#[test]
fn names_with_too_many_components_are_name_invalid() {
    let r = Registry::start();
    let deep = format!("{}/{}", r.ns, vec!["a"; 200].join("/"));
    r.send("POST", &format!("/v2/{deep}/blobs/uploads/"), &[], b"")
        .expect_error(400, "NAME_INVALID");
    let empty_components = format!("{}//app", r.ns);
    r.send(
        "GET",
        &format!("/v2/{empty_components}/tags/list"),
        &[],
        b"",
    )
    .expect_error(400, "NAME_INVALID");
    r.assert_seed_intact();
}

#[test]
fn tags_breaking_the_grammar_are_refused() {
    let r = Registry::start();
    let long = "t".repeat(129);
    for tag in [".hidden", "-dash", long.as_str(), "a+b", "%2e%2e", "a%2Fb"] {
        manifest_put(&r, tag, OCI_MANIFEST, &r.seed.manifest).expect_error(400, "MANIFEST_INVALID");
        let get = r.send(
            "GET",
            &format!("/v2/{}/manifests/{tag}", r.seed.repo),
            &[],
            b"",
        );
        assert!(
            (400..500).contains(&get.status),
            "GET with tag {tag:?}: {}",
            get.status
        );
    }
    r.assert_seed_intact();
}

#[test]
fn digests_with_unknown_algorithms_are_digest_invalid() {
    let r = Registry::start();
    let repo = &r.seed.repo;
    r.send(
        "GET",
        &format!("/v2/{repo}/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"),
        &[],
        b"",
    )
    .expect_error(400, "DIGEST_INVALID");
    r.send(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e"),
        &[],
        b"x",
    )
    .expect_error(400, "DIGEST_INVALID");
    r.assert_seed_intact();
}

#[test]
fn digests_with_wrong_lengths_or_non_hex_are_digest_invalid() {
    let r = Registry::start();
    let repo = &r.seed.repo;
    let good = sha256_digest(b"x");
    for bad in [
        good[..good.len() - 1].to_string(),
        format!("{good}0"),
        good.replace(&good[7..9], "zz"),
        good.to_uppercase().replace("SHA256", "sha256"),
        "sha256:..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
    ] {
        r.send("GET", &format!("/v2/{repo}/blobs/{bad}"), &[], b"")
            .expect_error(400, "DIGEST_INVALID");
        // A manifest reference that cannot name a manifest is unknown.
        r.send("DELETE", &format!("/v2/{repo}/manifests/{bad}"), &[], b"")
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    r.assert_seed_intact();
}

#[test]
fn upload_ids_that_try_to_escape_are_blob_upload_unknown() {
    let r = Registry::start();
    let repo = &r.seed.repo;
    let layer = sha256_digest(&r.seed.layer);
    let hex = &layer["sha256:".len()..];
    for id in [
        "..%2f..%2f..%2fblobs".to_string(),
        "..%2F..%2F_layers".to_string(),
        "..".to_string(),
        "%2e%2e".to_string(),
        format!("..%2f..%2f..%2f..%2fblobs%2fsha256%2f{}%2f{hex}", &hex[..2]),
        "00000000-0000-0000-0000-000000000000%2f..".to_string(),
    ] {
        let session = format!("/v2/{repo}/blobs/uploads/{id}");
        r.send("GET", &session, &[], b"")
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        r.send("PATCH", &session, &[], b"overwrite")
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        r.send("PUT", &format!("{session}?digest={layer}"), &[], b"")
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        r.send("DELETE", &session, &[], b"")
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
    r.assert_seed_intact();
}

#[test]
fn wrong_digest_on_upload_finish_stores_nothing_under_either_digest() {
    let r = Registry::start();
    let data = random_bytes(5000);
    let actual = sha256_digest(&data);
    let claimed = sha256_digest(b"something else");
    let session = r.session();
    let sep = if session.contains('?') { '&' } else { '?' };
    r.send(
        "PUT",
        &format!("{session}{sep}digest={claimed}"),
        &[],
        &data,
    )
    .expect_error(400, "DIGEST_INVALID");
    r.assert_blob_absent(&claimed);
    r.assert_blob_absent(&actual);
    // Monolithic too.
    r.send(
        "POST",
        &format!("/v2/{}/blobs/uploads/?digest={claimed}", r.seed.repo),
        &[],
        &data,
    )
    .expect_error(400, "DIGEST_INVALID");
    r.assert_blob_absent(&claimed);
    r.assert_blob_absent(&actual);
    r.assert_seed_intact();
}

#[test]
fn manifests_over_the_size_limit_are_413() {
    let r = Registry::start();
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    manifest_put(&r, "v1", OCI_MANIFEST, &big).expect_error(413, "SIZE_INVALID");
    // A declared length over the limit is refused before the body is read.
    r.send(
        "PUT",
        &format!("/v2/{}/manifests/v1", r.seed.repo),
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Content-Length", "1000000000"),
        ],
        b"{",
    )
    .expect_error(413, "SIZE_INVALID");
    r.assert_seed_intact();
}

#[test]
fn invalid_json_manifests_are_manifest_invalid() {
    let r = Registry::start();
    for body in [
        &b"{"[..],
        b"not json",
        b"[]",
        b"\"a string\"",
        b"{\"schemaVersion\":2,}",
        b"\xff\xfe{}",
    ] {
        manifest_put(&r, "v1", OCI_MANIFEST, body).expect_error(400, "MANIFEST_INVALID");
    }
    r.assert_seed_intact();
}

#[test]
fn json_nested_hundreds_of_thousands_deep_is_manifest_invalid() {
    let r = Registry::start();
    let depth = 300_000;
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let mut body = format!("{{\"mediaType\":\"{OCI_MANIFEST}\",\"x\":");
        body.push_str(&open.repeat(depth));
        body.push_str(&close.repeat(depth));
        body.push('}');
        manifest_put(&r, "v1", OCI_MANIFEST, body.as_bytes()).expect_error(400, "MANIFEST_INVALID");
    }
    r.assert_seed_intact();
}

#[test]
fn manifests_with_duplicate_keys_are_manifest_invalid() {
    let r = Registry::start();
    let original: Value = serde_json::from_slice(&r.seed.manifest).unwrap();
    let layers = original["layers"].to_string();
    let config = original["config"].to_string();
    for body in [
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":{layers},"layers":[]}}"#
        ),
        format!(
            r#"{{"schemaVersion":2,"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":{layers}}}"#
        ),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{{"a":1,"a":2}}]}}"#
        ),
    ] {
        manifest_put(&r, "v1", OCI_MANIFEST, body.as_bytes()).expect_error(400, "MANIFEST_INVALID");
    }
    r.assert_seed_intact();
}

#[test]
fn manifests_with_wrong_media_types_are_manifest_invalid() {
    let r = Registry::start();
    // Declared as an index, but the body says image manifest.
    manifest_put(
        &r,
        "v1",
        "application/vnd.oci.image.index.v1+json",
        &r.seed.manifest,
    )
    .expect_error(400, "MANIFEST_INVALID");
    // An image manifest whose body lacks its required fields.
    manifest_put(
        &r,
        "v1",
        OCI_MANIFEST,
        format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#).as_bytes(),
    )
    .expect_error(400, "MANIFEST_INVALID");
    // Docker schema 1.
    manifest_put(
        &r,
        "v1",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        br#"{"schemaVersion":1,"name":"x","tag":"v1","fsLayers":[]}"#,
    )
    .expect_error(400, "MANIFEST_INVALID");
    r.assert_seed_intact();
}

#[test]
fn manifests_of_types_browsers_render_are_manifest_invalid() {
    // Served back from the registry's origin under their type, these would
    // be stored script.
    let r = Registry::start();
    let repo = &r.seed.repo;
    for (media_type, markup) in [
        ("text/html", "<script>alert(document.domain)</script>"),
        (
            "image/svg+xml",
            "<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        ),
    ] {
        let body = serde_json::to_vec(&json!({ "x": markup })).unwrap();
        let digest = sha256_digest(&body);
        let reply = manifest_put(&r, &digest, media_type, &body);
        reply.expect_error(400, "MANIFEST_INVALID");
        let error: Value = serde_json::from_slice(&reply.body).unwrap();
        let message = error["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("application/<subtype>+json") && message.contains(OCI_MANIFEST),
            "{media_type}: the message names the accepted types: {message}"
        );
        // The same type from the body's mediaType, with no Content-Type.
        let body = serde_json::to_vec(&json!({ "mediaType": media_type, "x": markup })).unwrap();
        let digest_in_body = sha256_digest(&body);
        r.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{digest_in_body}"),
            &[],
            &body,
        )
        .expect_error(400, "MANIFEST_INVALID");
        for digest in [digest, digest_in_body] {
            let get = r.send("GET", &format!("/v2/{repo}/manifests/{digest}"), &[], b"");
            assert_eq!(get.status, 404, "{media_type}: nothing is stored");
        }
    }
    // An artifact manifest of a `+json` type is stored and served as pushed.
    let artifact = "application/vnd.example.thing.v1+json";
    let body = br#"{"thing":"<b>not rendered</b>"}"#;
    let digest = sha256_digest(body);
    assert_eq!(manifest_put(&r, &digest, artifact, body).status, 201);
    let get = r.send("GET", &format!("/v2/{repo}/manifests/{digest}"), &[], b"");
    assert_eq!(
        (get.status, get.header("content-type")),
        (200, Some(artifact))
    );
    // An image manifest's artifactType is its own field: the manifest's type
    // is what it is served under.
    let mut image: Value = serde_json::from_slice(&r.seed.manifest).unwrap();
    image["artifactType"] = json!("text/html");
    let body = serde_json::to_vec(&image).unwrap();
    let digest = sha256_digest(&body);
    assert_eq!(manifest_put(&r, &digest, OCI_MANIFEST, &body).status, 201);
    let get = r.send("GET", &format!("/v2/{repo}/manifests/{digest}"), &[], b"");
    assert_eq!(
        (get.status, get.header("content-type")),
        (200, Some(OCI_MANIFEST))
    );
    r.assert_seed_intact();
}

#[test]
fn pushes_setting_thousands_of_tags_are_tag_invalid_and_store_nothing() {
    // Each tag set is answered with an OCI-Tag header; 5,000 of them would
    // overflow wasi-http's header limit after everything was stored.
    let r = Registry::start();
    let repo = &r.seed.repo;
    let mut image: Value = serde_json::from_slice(&r.seed.manifest).unwrap();
    image["annotations"] = json!({ "org.example.tags": "many" });
    let body = serde_json::to_vec(&image).unwrap();
    let digest = sha256_digest(&body);
    let tags: Vec<String> = (0..5_000).map(|i| format!("tag=t{i}")).collect();
    r.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{digest}?{}", tags.join("&")),
        &[("Content-Type", OCI_MANIFEST)],
        &body,
    )
    .expect_error(400, "TAG_INVALID");
    let get = r.send("GET", &format!("/v2/{repo}/manifests/{digest}"), &[], b"");
    assert_eq!(get.status, 404, "the manifest was stored");
    let get = r.send("GET", &format!("/v2/{repo}/manifests/t0"), &[], b"");
    assert_eq!(get.status, 404, "a tag was set");
    r.assert_seed_intact();
}

#[test]
fn content_range_that_overlaps_is_range_invalid() {
    let r = Registry::start();
    let session = r.session();
    let first = r.send(
        "PATCH",
        &session,
        &[("Content-Range", "0-9")],
        b"0123456789",
    );
    assert_eq!(first.status, 202);
    let overlap = r.send(
        "PATCH",
        &session,
        &[("Content-Range", "5-14")],
        b"abcdefghij",
    );
    overlap.expect_error(416, "RANGE_INVALID");
    assert_eq!(overlap.header("range"), Some("0-9"));
    assert_eq!(r.upload_offset(&session), "0-9");
    r.assert_seed_intact();
}

#[test]
fn content_range_that_goes_backwards_is_refused() {
    let r = Registry::start();
    let session = r.session();
    assert_eq!(
        r.send("PATCH", &session, &[("Content-Range", "0-4")], b"01234")
            .status,
        202
    );
    r.send("PATCH", &session, &[("Content-Range", "9-5")], b"56789")
        .expect_error(400, "BLOB_UPLOAD_INVALID");
    r.send("PATCH", &session, &[("Content-Range", "0-4")], b"01234")
        .expect_error(416, "RANGE_INVALID");
    assert_eq!(r.upload_offset(&session), "0-4");
    r.assert_seed_intact();
}

#[test]
fn content_range_that_overflows_is_refused() {
    let r = Registry::start();
    let session = r.session();
    for range in [
        "0-18446744073709551615",
        "0-99999999999999999999999",
        "18446744073709551615-18446744073709551615",
        "-1-5",
    ] {
        let reply = r.send("PATCH", &session, &[("Content-Range", range)], b"abc");
        assert!(
            reply.status == 400 || reply.status == 416,
            "{range}: {}",
            reply.status
        );
        let code = if reply.status == 400 {
            "BLOB_UPLOAD_INVALID"
        } else {
            "RANGE_INVALID"
        };
        reply.expect_error(reply.status, code);
    }
    assert_eq!(r.upload_offset(&session), "0-0");
    r.assert_seed_intact();
}

#[test]
fn range_headers_past_the_end_are_416() {
    let r = Registry::start();
    let path = format!("/v2/{}/blobs/{}", r.seed.repo, sha256_digest(&r.seed.layer));
    for range in [
        "bytes=3000-",
        "bytes=5000-6000",
        "bytes=99999999999999999999-",
    ] {
        let reply = r.send("GET", &path, &[("Range", range)], b"");
        if range.contains("9999999999") {
            // Not a number Wharf can hold: ignored as malformed (RFC 9110).
            assert!(reply.status == 200 || reply.status == 416, "{range}");
            continue;
        }
        reply.expect_error(416, "RANGE_INVALID");
        assert_eq!(reply.header("content-range"), Some("bytes */3000"));
    }
    r.assert_seed_intact();
}

#[test]
fn inverted_range_headers_are_416() {
    let r = Registry::start();
    let path = format!("/v2/{}/blobs/{}", r.seed.repo, sha256_digest(&r.seed.layer));
    let reply = r.send("GET", &path, &[("Range", "bytes=500-10")], b"");
    reply.expect_error(416, "RANGE_INVALID");
    assert_eq!(reply.header("content-range"), Some("bytes */3000"));
    r.assert_seed_intact();
}

#[test]
fn body_shorter_than_content_length_stores_nothing() {
    let r = Registry::start();
    let data = random_bytes(1000);
    let digest = sha256_digest(&data);
    // Monolithic upload: 1000 bytes promised, 400 sent, then the client
    // stops sending.
    let mut stream = TcpStream::connect(r.addr()).unwrap();
    write!(
        stream,
        "POST /v2/{}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        r.seed.repo
    )
    .unwrap();
    stream.write_all(&data[..400]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let raw = read_all(&mut stream, Duration::from_secs(30));
    if let Some((reply, _)) = parse_reply(&raw) {
        assert!(
            (400..500).contains(&reply.status),
            "a truncated upload answered {}",
            reply.status
        );
        reply.expect_error(reply.status, "BLOB_UPLOAD_INVALID");
    }
    r.assert_blob_absent(&digest);
    // A truncated manifest.
    let mut stream = TcpStream::connect(r.addr()).unwrap();
    write!(
        stream,
        "PUT /v2/{}/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        r.seed.repo,
        r.seed.manifest.len() + 10,
    )
    .unwrap();
    stream.write_all(&r.seed.manifest).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let raw = read_all(&mut stream, Duration::from_secs(30));
    if let Some((reply, _)) = parse_reply(&raw) {
        reply.expect_error(400, "MANIFEST_INVALID");
    }
    r.assert_seed_intact();
}

#[test]
fn body_longer_than_content_length_is_cut_at_the_length() {
    let r = Registry::start();
    let session = r.session();
    // 5 bytes declared, 5 more follow: those are not part of the chunk;
    // they are read as the next request on the connection, which is
    // malformed and refused with 400 and the connection closed.
    let mut stream = TcpStream::connect(r.addr()).unwrap();
    write!(
        stream,
        "PATCH {session} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n01234EXTRA\r\n\r\n"
    )
    .unwrap();
    let raw = read_all(&mut stream, Duration::from_secs(30));
    let (first, used) = parse_reply(&raw).expect("a response to the chunk");
    assert_eq!(first.status, 202);
    assert_eq!(first.header("range"), Some("0-4"));
    let (second, _) = parse_reply(&raw[used..]).expect("a response to the extra bytes");
    assert_eq!(second.status, 400);
    assert_eq!(r.upload_offset(&session), "0-4");
    // A manifest with trailing bytes beyond its length is stored as the
    // declared bytes only, i.e. exactly the seed's manifest.
    let mut stream = TcpStream::connect(r.addr()).unwrap();
    let mut request = format!(
        "PUT /v2/{}/manifests/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        r.seed.repo,
        r.seed.manifest.len()
    )
    .into_bytes();
    request.extend_from_slice(&r.seed.manifest);
    request.extend_from_slice(b"garbage garbage\r\n\r\n");
    stream.write_all(&request).unwrap();
    let raw = read_all(&mut stream, Duration::from_secs(30));
    let (put, _) = parse_reply(&raw).expect("a response to the manifest");
    assert_eq!(put.status, 201);
    assert_eq!(
        put.header("docker-content-digest"),
        Some(sha256_digest(&r.seed.manifest).as_str())
    );
    let tags = r.send(
        "DELETE",
        &format!("/v2/{}/manifests/v2", r.seed.repo),
        &[],
        b"",
    );
    assert_eq!(tags.status, 202);
    r.assert_seed_intact();
}

/// A private server with a short header read timeout.
fn limited_wharf() -> Wharf {
    Wharf::start_with(&[
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ("WHARF_HEADER_READ_TIMEOUT", "2"),
    ])
}

fn ping(addr: SocketAddr) -> u16 {
    send_raw(addr, "GET /v2/ HTTP/1.1", b"").status
}

#[test]
fn a_request_without_a_host_header() {
    let wharf = shared_wharf();
    let addr = wharf.addr();
    let send = |request: &str| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let raw = read_all(&mut stream, Duration::from_secs(60));
        parse_reply(&raw)
            .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)))
            .0
    };
    // HTTP/1.0 has no Host header: served, as the address it reached.
    let reply = send("GET /v2/ HTTP/1.0\r\n\r\n");
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    // HTTP/1.1 requires one (RFC 9112, section 3.2).
    let reply = send("GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(reply.status, 400);
    assert!(
        String::from_utf8_lossy(&reply.body).contains(r#""code":"UNSUPPORTED""#),
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[test]
fn connections_that_send_no_headers_in_time_are_closed() {
    let wharf = limited_wharf();
    let started = Instant::now();
    let mut silent = TcpStream::connect(wharf.addr()).unwrap();
    let mut slow = TcpStream::connect(wharf.addr()).unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    for stream in [&mut silent, &mut slow] {
        let raw = read_all(stream, Duration::from_secs(30));
        // Closed by the server (EOF), perhaps after a 408.
        if let Some((reply, _)) = parse_reply(&raw) {
            assert_eq!(reply.status, 408);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "idle connections were not closed by the header read timeout"
    );
    // An idle kept-alive connection is closed too.
    let mut kept = TcpStream::connect(wharf.addr()).unwrap();
    kept.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let raw = read_all(&mut kept, Duration::from_secs(30));
    let (reply, _) = parse_reply(&raw).expect("a response");
    assert_eq!(reply.status, 200);
    assert_eq!(ping(wharf.addr()), 200);
}

#[test]
fn request_heads_over_the_limits_are_431() {
    let wharf = limited_wharf();
    let addr = wharf.addr();
    let mut many = String::from("GET /v2/ HTTP/1.1");
    for i in 0..150 {
        many.push_str(&format!("\r\nX-Header-{i}: v"));
    }
    assert_eq!(send_raw(addr, &many, b"").status, 431);
    let huge = format!("GET /v2/ HTTP/1.1\r\nX-Big: {}", "a".repeat(1024 * 1024));
    let mut stream = TcpStream::connect(addr).unwrap();
    let _ = stream.write_all(format!("{huge}\r\n\r\n").as_bytes());
    let raw = read_all(&mut stream, Duration::from_secs(30));
    let (reply, _) = parse_reply(&raw).expect("a response to an oversized head");
    assert_eq!(reply.status, 431);
    assert_eq!(ping(addr), 200);
}

#[test]
fn hundreds_of_idle_and_slow_connections_do_not_starve_real_clients() {
    let wharf = Wharf::start();
    let addr = wharf.addr();
    let mut hogs = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            // Slow: a request head that never ends.
            let _ = stream.write_all(b"PUT /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        hogs.push(stream);
    }
    // Slow body: a chunk that promises a megabyte and sends ten bytes.
    let session = {
        let reply = send_raw(
            addr,
            "POST /v2/slow/blobs/uploads/ HTTP/1.1\r\nContent-Length: 0",
            b"",
        );
        assert_eq!(reply.status, 202);
        reply.header("location").unwrap().to_string()
    };
    let path = &session[session.find("/v2/").unwrap()..];
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr).unwrap();
        let _ = stream.write_all(
            format!(
                "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n0123456789"
            )
            .as_bytes(),
        );
        hogs.push(stream);
    }
    let data = random_bytes(100_000);
    let digest = sha256_digest(&data);
    for _ in 0..10 {
        assert_eq!(ping(addr), 200);
        let reply = send_raw(
            addr,
            &format!(
                "POST /v2/real/blobs/uploads/?digest={digest} HTTP/1.1\r\nContent-Length: {}",
                data.len()
            ),
            &data,
        );
        assert_eq!(reply.status, 201);
        let reply = send_raw(addr, &format!("GET /v2/real/blobs/{digest} HTTP/1.1"), b"");
        assert_eq!(reply.body, data);
    }
    drop(hogs);
}

/// A resident-memory field (`RssAnon`, `RssFile`) of process `pid`, in KiB.
fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
}

#[test]
fn clients_that_stop_reading_a_large_blob_do_not_pin_memory() {
    let wharf = Wharf::start();
    let addr = wharf.addr();
    let size = 64 * 1024 * 1024;
    let data = random_bytes(size);
    let digest = sha256_digest(&data);
    let reply = send_raw(
        addr,
        &format!("POST /v2/big/blobs/uploads/?digest={digest} HTTP/1.1\r\nContent-Length: {size}"),
        &data,
    );
    assert_eq!(reply.status, 201);
    drop(data);
    let pid = wharf.pid();
    let before = (rss_kib(pid, "RssAnon"), rss_kib(pid, "RssFile"));
    // Eight clients ask for the 64 MiB blob and read nothing.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(format!("GET /v2/big/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        stalled.push(stream);
    }
    std::thread::sleep(Duration::from_secs(3));
    let during = (rss_kib(pid, "RssAnon"), rss_kib(pid, "RssFile"));
    // Downloads send windows of the blob file's mapping: the page cache's
    // own pages, shared and clean, which show up as RssFile. The eight
    // readers share one mapping of the blob, so only the windows some of
    // them are stuck on are resident (measured: 4 MiB); a window per reader
    // would be 8 × 4 MiB or more, holding the blob 64 MiB per reader.
    // Private memory should hardly move at all (measured: under 1 MiB).
    assert!(
        during.0 < before.0 + 32 * 1024,
        "private memory grew from {} KiB to {} KiB with 8 stalled readers of a 64 MiB blob",
        before.0,
        during.0
    );
    assert!(
        during.1 < before.1 + 24 * 1024,
        "mapped blob pages grew from {} KiB to {} KiB with 8 stalled readers of a 64 MiB blob",
        before.1,
        during.1
    );
    assert_eq!(ping(addr), 200);
    drop(stalled);
}

#[test]
fn a_client_that_sends_its_whole_body_before_reading_reads_the_413() {
    // Python's http.client and requests write the whole body, then read:
    // the server must read what it refused instead of resetting.
    let r = Registry::start();
    let big = vec![b' '; 32 << 20];
    let mut stream = TcpStream::connect(r.addr()).unwrap();
    let head = format!(
        "PUT /v2/{}/manifests/v1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        r.seed.repo,
        r.addr(),
        big.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .write_all(&big)
        .expect("the server reset the connection instead of reading the refused body");
    let raw = read_all(&mut stream, Duration::from_secs(30));
    parse_reply(&raw)
        .expect("an answer after the whole body")
        .0
        .expect_error(413, "SIZE_INVALID");
    r.assert_seed_intact();
}

#[test]
fn manifests_and_blobs_are_served_with_nosniff() {
    let r = Registry::start();
    let manifest = r.send(
        "GET",
        &format!("/v2/{}/manifests/v1", r.seed.repo),
        &[],
        b"",
    );
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.header("x-content-type-options"), Some("nosniff"));
    let digest = sha256_digest(&r.seed.layer);
    let blob = r.send(
        "GET",
        &format!("/v2/{}/blobs/{digest}", r.seed.repo),
        &[],
        b"",
    );
    assert_eq!(blob.status, 200);
    assert_eq!(blob.header("x-content-type-options"), Some("nosniff"));
    let missing = r.send(
        "GET",
        &format!("/v2/{}/manifests/nope", r.seed.repo),
        &[],
        b"",
    );
    assert_eq!(missing.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn the_access_log_names_client_user_agent_and_query_and_sees_whole_replies_as_complete() {
    let wharf = Wharf::start();
    let send = |head: &str| {
        send_raw(
            wharf.addr(),
            &format!("{head}\r\nUser-Agent: wharf-test/1.0"),
            b"",
        )
    };
    assert_eq!(send("GET /v2/ HTTP/1.1").status, 200);
    assert_eq!(send("GET /v2/_catalog?n=1 HTTP/1.1").status, 200);
    assert_eq!(send("HEAD /v2/x/manifests/latest HTTP/1.1").status, 404);
    let log = wharf.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" request ")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    for line in &lines {
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        assert!(line.contains("user=\"-\""), "{line}");
        assert!(line.contains("user_agent=\"wharf-test/1.0\""), "{line}");
        assert!(line.contains("complete=true"), "{line}");
    }
    assert!(lines[1].contains("query=\"n=1\""), "{}", lines[1]);
}
