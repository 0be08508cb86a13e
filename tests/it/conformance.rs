//! Wharf's OCI distribution-spec conformance suite: plain HTTP requests to a
//! running `wharf serve` on loopback, one test per requirement of the spec
//! (opencontainers/distribution-spec `spec.md`, main branch).
//!
//! The modules follow the spec's categories: [`pull`], [`push`],
//! [`content_discovery`], [`content_management`], plus [`error_codes`]
//! (the spec's "Error Codes" table). Each test's doc comment names the spec
//! section and endpoint ids (`end-*`) it checks. Tests share one registry
//! process, each under its own repository prefix, so they run in parallel;
//! the few that need a registry to themselves (the catalog, a restart, a
//! configuration) start a private one. Every server is stopped when its
//! last test ends.

use crate::support;
use crate::support::{Wharf, random_bytes, sha256_digest, shared_wharf};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn sha512_digest(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// One `wharf serve` shared by the tests that need no server of their own,
/// while any of them runs: the last one to finish stops it (a later test
/// starts a new one). Each test works under its own repository prefix.
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// A registry and an HTTP client for it, with the test's namespace.
struct Registry {
    wharf: Arc<Wharf>,
    http: reqwest::Client,
    /// Prefix of every repository the test names (empty on a private server).
    ns: String,
}

impl Registry {
    /// A test's view of the shared registry (deletes enabled): its paths
    /// `/v2/<name>/…` become `/v2/<ns>/<name>/…`.
    fn shared() -> Registry {
        let wharf = shared_wharf();
        let ns = format!("t{}", NAMESPACES.fetch_add(1, Ordering::Relaxed));
        Registry::new(wharf, ns)
    }

    /// A private registry (deletes enabled), for tests that need the whole
    /// registry to themselves.
    fn start() -> Registry {
        Registry::with(Wharf::start())
    }

    fn with(wharf: Wharf) -> Registry {
        Registry::new(Arc::new(wharf), String::new())
    }

    fn new(wharf: Arc<Wharf>, ns: String) -> Registry {
        // With WHARF_TEST_AUTH=htpasswd every request carries the test
        // user's credentials.
        let mut headers = HeaderMap::new();
        if let Some(authorization) = support::test_authorization() {
            headers.insert("authorization", authorization.parse().unwrap());
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            // No kept-alive connections: a restarted server is a new peer.
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        Registry { wharf, http, ns }
    }

    /// The full name of the test's repository `name`.
    fn name(&self, name: &str) -> String {
        if self.ns.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.ns)
        }
    }

    /// A request to `target`: a path (`/v2/…`, put in the test's
    /// namespace unless it is there already) or an absolute URL.
    fn request(&self, method: Method, target: &str) -> reqwest::RequestBuilder {
        let own = format!("/v2/{}/", self.ns);
        let path = match target.strip_prefix("/v2/") {
            Some(rest)
                if !self.ns.is_empty()
                    && !rest.is_empty()
                    && !rest.starts_with("_catalog")
                    && !target.starts_with(&own) =>
            {
                format!("{own}{rest}")
            }
            _ => target.to_string(),
        };
        let url = if path.starts_with("http") {
            path
        } else {
            format!("{}{path}", self.wharf.url())
        };
        self.http.request(method, url)
    }

    async fn send(&self, method: Method, target: &str) -> Response {
        self.request(method, target).send().await.expect("request")
    }

    async fn get(&self, target: &str) -> Response {
        self.send(Method::GET, target).await
    }

    async fn head(&self, target: &str) -> Response {
        self.send(Method::HEAD, target).await
    }

    async fn delete(&self, target: &str) -> Response {
        self.send(Method::DELETE, target).await
    }

    /// POST /v2/<name>/blobs/uploads/ (end-4a): the session's location.
    async fn start_upload(&self, name: &str) -> String {
        let response = self
            .request(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
            .header("content-length", "0")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        location(&response)
    }

    /// Push a blob with a single POST (end-4b); returns its sha256 digest.
    async fn push_blob(&self, name: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let response = self
            .request(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        digest
    }

    /// PUT a manifest (end-7) with a content type.
    async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(Method::PUT, &format!("/v2/{name}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("request")
    }

    /// Push an image (config and one layer blob, then the manifest) under
    /// `tag`; returns the manifest bytes and digest.
    async fn push_image(&self, name: &str, tag: &str) -> (Vec<u8>, String) {
        let config = self
            .push_blob(name, br#"{"architecture":"amd64","os":"linux"}"#)
            .await;
        let layer_bytes = random_bytes(1000);
        let layer = self.push_blob(name, &layer_bytes).await;
        let manifest = image_manifest(&config, 37, &layer, 1000, "");
        let response = self.put_manifest(name, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let digest = sha256_digest(&manifest);
        (manifest, digest)
    }
}

/// An OCI image manifest; `extra` is spliced in as further top-level fields
/// (`,"subject":…`).
fn image_manifest(
    config: &str,
    config_size: u64,
    layer: &str,
    layer_size: u64,
    extra: &str,
) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{layer}","size":{layer_size}}}]{extra}}}"#
    )
    .into_bytes()
}

/// An artifact manifest (empty config) with a subject.
fn artifact(subject: &str, artifact_type: Option<&str>, annotation: &str) -> Vec<u8> {
    let empty = sha256_digest(b"{}");
    let at = artifact_type
        .map(|t| format!(r#""artifactType":"{t}","#))
        .unwrap_or_default();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",{at}"config":{{"mediaType":"{OCI_EMPTY}","digest":"{empty}","size":2}},"layers":[{{"mediaType":"{OCI_EMPTY}","digest":"{empty}","size":2}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":123}},"annotations":{{"org.example.note":"{annotation}"}}}}"#
    )
    .into_bytes()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

fn location(response: &Response) -> String {
    header(response, "location").expect("a location header")
}

/// The `code` of the first error of an OCI error body.
async fn code(response: Response) -> String {
    let body: Value = response.json().await.expect("a JSON error body");
    body["errors"][0]["code"]
        .as_str()
        .expect("an error code")
        .to_string()
}

/// Status and error code of a failed request.
async fn failure(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, code(response).await)
}

/// Append `?digest=` (or `&digest=`) to an upload location.
fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

mod pull {
    //! Spec: Pull (end-1, end-2, end-3).
    use super::*;

    /// spec: Determining Support (end-1): `GET /v2/` is 200.
    #[tokio::test]
    async fn api_version_check_is_200() {
        let registry = Registry::shared();
        let response = registry.get("/v2/").await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// spec: Pulling manifests (end-3): by tag and by digest, 200, the exact
    /// bytes, `Docker-Content-Digest` and the pushed `Content-Type`.
    #[tokio::test]
    async fn pull_manifest_by_tag_and_by_digest() {
        let registry = Registry::shared();
        let (manifest, digest) = registry.push_image("team/app", "v1").await;
        for reference in ["v1", digest.as_str()] {
            let response = registry
                .request(Method::GET, &format!("/v2/team/app/manifests/{reference}"))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{reference}");
            assert_eq!(
                header(&response, "docker-content-digest"),
                Some(digest.clone())
            );
            assert_eq!(
                header(&response, "content-type").as_deref(),
                Some(OCI_MANIFEST)
            );
            assert_eq!(response.bytes().await.unwrap(), manifest);
        }
    }

    /// spec: Checking if content exists (end-3 HEAD): 200 with
    /// `Docker-Content-Digest` and `Content-Length`, no body.
    #[tokio::test]
    async fn head_manifest_gives_digest_and_length() {
        let registry = Registry::shared();
        let (manifest, digest) = registry.push_image("app", "latest").await;
        let response = registry.head("/v2/app/manifests/latest").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "docker-content-digest"), Some(digest));
        assert_eq!(
            header(&response, "content-length"),
            Some(manifest.len().to_string())
        );
        assert!(response.bytes().await.unwrap().is_empty());
    }

    /// spec: Pulling manifests: a manifest not in the repository, or a
    /// repository that does not exist, is 404.
    #[tokio::test]
    async fn missing_manifest_is_404() {
        let registry = Registry::shared();
        registry.push_image("app", "latest").await;
        let unknown = sha256_digest(b"nothing");
        for path in [
            "/v2/app/manifests/nope".to_string(),
            format!("/v2/app/manifests/{unknown}"),
            "/v2/no/such/repo/manifests/latest".to_string(),
        ] {
            let response = registry.get(&path).await;
            assert_eq!(
                failure(response).await,
                (404, "MANIFEST_UNKNOWN".into()),
                "{path}"
            );
            assert_eq!(registry.head(&path).await.status(), StatusCode::NOT_FOUND);
        }
    }

    /// spec: Pulling manifests: `Content-Type` is the type the manifest was
    /// pushed with, for OCI and Docker schema2 manifests and lists and for
    /// artifacts of any type.
    #[tokio::test]
    async fn content_type_is_the_pushed_type() {
        let registry = Registry::shared();
        let (_, image) = registry.push_image("app", "base").await;
        let config = sha256_digest(b"c");
        let layer = sha256_digest(b"l");
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{config}","size":1}},"layers":[{{"mediaType":"{DOCKER_LAYER}","digest":"{layer}","size":1}}]}}"#
        );
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{image}","size":10,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{image}","size":10}}]}}"#
        );
        let custom = r#"{"kind":"anything"}"#.to_string();
        for (tag, media_type, body) in [
            ("docker", DOCKER_MANIFEST, docker),
            ("list", DOCKER_LIST, list),
            ("index", OCI_INDEX, index),
            ("custom", "application/vnd.example.thing.v1+json", custom),
        ] {
            let put = registry
                .put_manifest("app", tag, media_type, body.as_bytes())
                .await;
            assert_eq!(put.status(), StatusCode::CREATED, "{media_type}");
            let get = registry.get(&format!("/v2/app/manifests/{tag}")).await;
            assert_eq!(header(&get, "content-type").as_deref(), Some(media_type));
            assert_eq!(
                header(&get, "docker-content-digest"),
                Some(sha256_digest(body.as_bytes()))
            );
            assert_eq!(get.bytes().await.unwrap(), body.as_bytes());
        }
    }

    /// spec: Pulling blobs (end-2): 200, the bytes, and a
    /// `Docker-Content-Digest` matching them.
    #[tokio::test]
    async fn pull_blob_is_200_with_its_digest() {
        let registry = Registry::shared();
        let data = random_bytes(70_000);
        let digest = registry.push_blob("app", &data).await;
        let response = registry.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "docker-content-digest"), Some(digest));
        assert_eq!(response.bytes().await.unwrap(), data);
    }

    /// spec: Checking if content exists (end-2 HEAD): 200 with
    /// `Docker-Content-Digest` and `Content-Length`.
    #[tokio::test]
    async fn head_blob_gives_digest_and_length() {
        let registry = Registry::shared();
        let digest = registry.push_blob("app", &random_bytes(1234)).await;
        let response = registry.head(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "docker-content-digest"), Some(digest));
        assert_eq!(header(&response, "content-length").as_deref(), Some("1234"));
    }

    /// spec: Pulling blobs: a blob not in the repository is 404, also when
    /// another repository has it.
    #[tokio::test]
    async fn missing_blob_is_404() {
        let registry = Registry::shared();
        let digest = registry.push_blob("other", b"elsewhere").await;
        for path in [
            format!("/v2/app/blobs/{digest}"),
            format!("/v2/other/blobs/{}", sha256_digest(b"never pushed")),
        ] {
            let response = registry.get(&path).await;
            assert_eq!(
                failure(response).await,
                (404, "BLOB_UNKNOWN".into()),
                "{path}"
            );
            assert_eq!(registry.head(&path).await.status(), StatusCode::NOT_FOUND);
        }
    }

    /// spec: Pulling blobs: `Range` per RFC 9110 section 14: 206 with
    /// `Content-Range` for `a-b`, `a-` and `-n`.
    #[tokio::test]
    async fn range_get_is_206_with_content_range() {
        let registry = Registry::shared();
        let data = random_bytes(2000);
        let digest = registry.push_blob("app", &data).await;
        let path = format!("/v2/app/blobs/{digest}");
        for (range, first, last) in [
            ("bytes=500-1499", 500, 1499),
            ("bytes=500-", 500, 1999),
            ("bytes=-500", 1500, 1999),
            ("bytes=1500-5000", 1500, 1999),
        ] {
            let response = registry
                .request(Method::GET, &path)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                header(&response, "content-range"),
                Some(format!("bytes {first}-{last}/2000"))
            );
            assert_eq!(response.bytes().await.unwrap(), data[first..=last]);
        }
    }

    /// spec: Pulling blobs: a range that cannot be satisfied (past the end,
    /// or last byte before the first) is 416 with `Content-Range: bytes */<size>`.
    #[tokio::test]
    async fn unsatisfiable_range_is_416() {
        let registry = Registry::shared();
        let digest = registry.push_blob("app", &random_bytes(2000)).await;
        for range in ["bytes=2000-", "bytes=5000-10000", "bytes=500-0"] {
            let response = registry
                .request(Method::GET, &format!("/v2/app/blobs/{digest}"))
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{range}"
            );
            assert_eq!(
                header(&response, "content-range").as_deref(),
                Some("bytes */2000")
            );
        }
    }

    /// spec: Pulling manifests: `<name>` must match the name grammar; a
    /// name that does not is 400 `NAME_INVALID`.
    #[tokio::test]
    async fn invalid_name_is_400_name_invalid() {
        let registry = Registry::shared();
        for path in [
            "/v2/UPPER/manifests/latest",
            "/v2/a__-b/tags/list",
            "/v2/-a/tags/list",
        ] {
            let response = registry.get(path).await;
            assert_eq!(
                failure(response).await,
                (400, "NAME_INVALID".into()),
                "{path}"
            );
        }
    }
}

mod push {
    //! Spec: Push (end-4a, end-4b, end-4c, end-5, end-6, end-7, end-11,
    //! end-13, end-14).
    use super::*;

    /// spec: Pushing a blob monolithically / POST then PUT (end-4a, end-6):
    /// 202 with a `Location`, then 201 with the blob's `Location`.
    #[tokio::test]
    async fn post_then_put_is_202_then_201() {
        let registry = Registry::shared();
        let data = random_bytes(5000);
        let digest = sha256_digest(&data);
        let session = registry.start_upload("app").await;
        let response = registry
            .request(Method::PUT, &with_digest(&session, &digest))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let blob = location(&response);
        assert_eq!(header(&response, "docker-content-digest"), Some(digest));
        assert_eq!(registry.get(&blob).await.bytes().await.unwrap(), data);
    }

    /// spec: Pushing a blob monolithically / Single POST (end-4b): 201 with
    /// a pullable `Location`.
    #[tokio::test]
    async fn single_post_with_digest_is_201() {
        let registry = Registry::shared();
        let data = random_bytes(3000);
        let digest = sha256_digest(&data);
        let response = registry
            .request(
                Method::POST,
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let blob = location(&response);
        assert_eq!(registry.get(&blob).await.bytes().await.unwrap(), data);
    }

    /// spec: Pushing blobs: the empty blob can be pushed and pulled.
    #[tokio::test]
    async fn empty_blob_round_trips() {
        let registry = Registry::shared();
        let digest = registry.push_blob("app", b"").await;
        let response = registry.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.bytes().await.unwrap().is_empty());
    }

    /// PATCH one chunk with an inclusive `Content-Range`: 202 with
    /// `Location` and `Range: 0-<end>`.
    async fn patch_chunk(registry: &Registry, session: &str, data: &[u8], first: usize) -> String {
        let last = first + data.len() - 1;
        let response = registry
            .request(Method::PATCH, session)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{first}-{last}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "range"), Some(format!("0-{last}")));
        location(&response)
    }

    /// spec: Pushing a blob in chunks (end-5, end-6): chunks with inclusive
    /// `Content-Range`, each 202 with `Range: 0-<end>`, closed by a PUT
    /// without a body.
    #[tokio::test]
    async fn chunked_upload_then_empty_put() {
        let registry = Registry::shared();
        let data = random_bytes(3000);
        let digest = sha256_digest(&data);
        let mut session = registry.start_upload("app").await;
        for (i, chunk) in data.chunks(1024).enumerate() {
            session = patch_chunk(&registry, &session, chunk, i * 1024).await;
        }
        let response = registry
            .request(Method::PUT, &with_digest(&session, &digest))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let blob = location(&response);
        assert_eq!(registry.get(&blob).await.bytes().await.unwrap(), data);
    }

    /// spec: Pushing a blob in chunks: the final chunk may come in the
    /// closing PUT (end-6 with a body and `Content-Range`).
    #[tokio::test]
    async fn chunked_upload_with_last_chunk_in_put() {
        let registry = Registry::shared();
        let data = random_bytes(2500);
        let digest = sha256_digest(&data);
        let session = registry.start_upload("app").await;
        let session = patch_chunk(&registry, &session, &data[..2000], 0).await;
        let response = registry
            .request(Method::PUT, &with_digest(&session, &digest))
            .header("content-type", "application/octet-stream")
            .header("content-range", "2000-2499")
            .body(data[2000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let got = registry.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(got.bytes().await.unwrap(), data);
    }

    /// spec: Pushing a blob in chunks: a chunk out of order is 416, and the
    /// session's `Range` (GET, end-13) still says what was received.
    #[tokio::test]
    async fn out_of_order_chunk_is_416() {
        let registry = Registry::shared();
        let data = random_bytes(3000);
        let session = registry.start_upload("app").await;
        let session = patch_chunk(&registry, &session, &data[..1000], 0).await;
        for (first, last) in [(2000, 2999), (0, 999), (500, 1499)] {
            let response = registry
                .request(Method::PATCH, &session)
                .header("content-range", format!("{first}-{last}"))
                .body(data[first..=last].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{first}-{last}"
            );
            assert_eq!(header(&response, "range").as_deref(), Some("0-999"));
        }
        let status = registry.get(&session).await;
        assert_eq!(status.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&status, "range").as_deref(), Some("0-999"));
        // The upload can go on where it stopped.
        let session = patch_chunk(&registry, &location(&status), &data[1000..], 1000).await;
        let put = registry
            .request(Method::PUT, &with_digest(&session, &sha256_digest(&data)))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
    }

    /// spec: Pushing a blob in chunks: "If the final chunk is uploaded out
    /// of order, the registry MUST respond with a 416".
    #[tokio::test]
    async fn out_of_order_final_chunk_in_put_is_416() {
        let registry = Registry::shared();
        let data = random_bytes(2000);
        let session = registry.start_upload("app").await;
        let session = patch_chunk(&registry, &session, &data[..1000], 0).await;
        let response = registry
            .request(Method::PUT, &with_digest(&session, &sha256_digest(&data)))
            .header("content-range", "1500-1999")
            .body(data[1500..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    }

    /// spec: Pushing a blob in chunks / upload status (end-13): 204 with
    /// `Location` and `Range: 0-<end-of-range>`.
    #[tokio::test]
    async fn upload_status_is_204_with_range() {
        let registry = Registry::shared();
        let session = registry.start_upload("app").await;
        let session = patch_chunk(&registry, &session, &random_bytes(100), 0).await;
        let response = registry.get(&session).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&response, "range").as_deref(), Some("0-99"));
        assert!(header(&response, "location").is_some());
    }

    /// spec: Pushing a blob in chunks: a PATCH without `Content-Range`
    /// (streamed) appends the whole body.
    #[tokio::test]
    async fn streamed_patch_without_content_range() {
        let registry = Registry::shared();
        let data = random_bytes(100_000);
        let session = registry.start_upload("app").await;
        let mut session = session;
        for chunk in data.chunks(40_000) {
            let response = registry
                .request(Method::PATCH, &session)
                .header("content-type", "application/octet-stream")
                .body(chunk.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            session = location(&response);
        }
        let put = registry
            .request(Method::PUT, &with_digest(&session, &sha256_digest(&data)))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
    }

    /// spec: Cancel a blob upload (end-14): 204, then the session is gone (404).
    #[tokio::test]
    async fn cancel_upload_is_204_then_404() {
        let registry = Registry::shared();
        let session = registry.start_upload("app").await;
        let session = patch_chunk(&registry, &session, b"partial", 0).await;
        let response = registry
            .request(Method::DELETE, &session)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let gone = registry.get(&session).await;
        assert_eq!(failure(gone).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
    }

    /// spec: Pushing blobs: a digest that does not match the content is 400
    /// `DIGEST_INVALID`, and nothing is stored.
    #[tokio::test]
    async fn wrong_digest_is_400_digest_invalid() {
        let registry = Registry::shared();
        let wrong = sha256_digest(b"something else");
        let post = registry
            .request(
                Method::POST,
                &format!("/v2/app/blobs/uploads/?digest={wrong}"),
            )
            .body(b"content".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(failure(post).await, (400, "DIGEST_INVALID".into()));
        let session = registry.start_upload("app").await;
        let put = registry
            .request(Method::PUT, &with_digest(&session, &wrong))
            .body(b"content".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(failure(put).await, (400, "DIGEST_INVALID".into()));
        let get = registry.get(&format!("/v2/app/blobs/{wrong}")).await;
        assert_eq!(get.status(), StatusCode::NOT_FOUND);
    }

    /// spec: Pushing blobs: "if the client provided digest is invalid or
    /// uses an unsupported algorithm, the registry SHOULD respond with 400";
    /// an unknown `digest-algorithm` (end-4c) is 400 too.
    #[tokio::test]
    async fn unsupported_or_malformed_digest_is_400() {
        let registry = Registry::shared();
        for query in [
            "digest=md5:d41d8cd98f00b204e9800998ecf8427e",
            "digest=sha256:short",
            "digest=nonsense",
        ] {
            let response = registry
                .request(Method::POST, &format!("/v2/app/blobs/uploads/?{query}"))
                .body(b"x".to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(
                failure(response).await,
                (400, "DIGEST_INVALID".into()),
                "{query}"
            );
        }
        let response = registry
            .request(Method::POST, "/v2/app/blobs/uploads/?digest-algorithm=md5")
            .send()
            .await
            .unwrap();
        assert_eq!(failure(response).await, (400, "UNSUPPORTED".into()));
    }

    /// spec: Pushing a blob in chunks / `digest-algorithm` (end-4c): a
    /// sha512 upload is stored natively under its sha512 digest.
    #[tokio::test]
    async fn sha512_upload_is_stored_under_sha512() {
        let registry = Registry::shared();
        let data = random_bytes(4000);
        let digest = sha512_digest(&data);
        let response = registry
            .request(
                Method::POST,
                "/v2/app/blobs/uploads/?digest-algorithm=sha512",
            )
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let session = patch_chunk(&registry, &location(&response), &data, 0).await;
        let put = registry
            .request(Method::PUT, &with_digest(&session, &digest))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        let get = registry.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(header(&get, "docker-content-digest"), Some(digest.clone()));
        assert_eq!(get.bytes().await.unwrap(), data);
        if !registry.wharf.on_s3() {
            let hex = digest.trim_start_matches("sha512:");
            let on_disk = registry.wharf.data_dir().join(format!(
                "docker/registry/v2/blobs/sha512/{}/{hex}/data",
                &hex[..2]
            ));
            assert_eq!(std::fs::read(on_disk).expect("the blob under sha512"), data);
        }
    }

    /// spec: Pushing blobs: sha512 content pushed with a single POST and a
    /// sha512 `?digest=`, or closing a default session with a sha512
    /// digest, is verified and stored under sha512.
    #[tokio::test]
    async fn sha512_digest_without_digest_algorithm() {
        let registry = Registry::shared();
        let data = random_bytes(777);
        let digest = sha512_digest(&data);
        let post = registry
            .request(
                Method::POST,
                &format!("/v2/a/blobs/uploads/?digest={digest}"),
            )
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::CREATED);
        let session = registry.start_upload("b").await;
        let put = registry
            .request(Method::PUT, &with_digest(&session, &digest))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        let get = registry.get(&format!("/v2/b/blobs/{digest}")).await;
        assert_eq!(get.bytes().await.unwrap(), data);
    }

    /// spec: Mounting a blob from another repository (end-11): 201 with the
    /// blob's `Location`.
    #[tokio::test]
    async fn mount_from_another_repository_is_201() {
        let registry = Registry::shared();
        let data = random_bytes(500);
        let digest = registry.push_blob("source/repo", &data).await;
        let response = registry
            .request(
                Method::POST,
                &format!(
                    "/v2/target/blobs/uploads/?mount={digest}&from={}",
                    registry.name("source/repo")
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            location(&response),
            format!("/v2/{}/blobs/{digest}", registry.name("target"))
        );
        assert_eq!(
            header(&response, "docker-content-digest"),
            Some(digest.clone())
        );
        let get = registry.get(&format!("/v2/target/blobs/{digest}")).await;
        assert_eq!(get.bytes().await.unwrap(), data);
    }

    /// spec: Mounting a blob: a blob the source does not have is not
    /// mounted: 202 and an ordinary upload session that works.
    #[tokio::test]
    async fn mount_of_missing_blob_is_202_with_a_session() {
        let registry = Registry::shared();
        registry.push_blob("source", b"other").await;
        let data = b"not in source".to_vec();
        let digest = sha256_digest(&data);
        let response = registry
            .request(
                Method::POST,
                &format!(
                    "/v2/target/blobs/uploads/?mount={digest}&from={}",
                    registry.name("source")
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let put = registry
            .request(Method::PUT, &with_digest(&location(&response), &digest))
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
    }

    /// spec: Mounting a blob: "The registry MAY treat the from parameter as
    /// optional". Without `from`, a blob the repository already has is 201,
    /// and so is one another repository has that the caller may pull (here
    /// everyone may pull everything); a blob nowhere to be seen is 202 and
    /// a session.
    #[tokio::test]
    async fn mount_without_from() {
        let registry = Registry::shared();
        let mount = |digest: String| {
            let registry = &registry;
            async move {
                registry
                    .request(
                        Method::POST,
                        &format!("/v2/target/blobs/uploads/?mount={digest}"),
                    )
                    .send()
                    .await
                    .unwrap()
            }
        };
        let here = registry.push_blob("target", b"here").await;
        assert_eq!(mount(here).await.status(), StatusCode::CREATED);
        let elsewhere = registry.push_blob("private", b"elsewhere").await;
        let response = mount(elsewhere.clone()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let get = registry
            .request(Method::GET, &format!("/v2/target/blobs/{elsewhere}"))
            .send()
            .await
            .unwrap();
        assert_eq!(get.bytes().await.unwrap().as_ref(), b"elsewhere");
        let missing = sha256_digest(b"nowhere");
        let response = mount(missing.clone()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let put = registry
            .request(Method::PUT, &with_digest(&location(&response), &missing))
            .body(b"nowhere".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
    }

    /// spec: Pushing Manifests (end-7a): by tag, 201 with a pullable
    /// `Location` and the `Docker-Content-Digest` of the bytes.
    #[tokio::test]
    async fn push_manifest_by_tag_is_201() {
        let registry = Registry::shared();
        let config = registry.push_blob("app", b"{}").await;
        let layer = registry.push_blob("app", b"layer").await;
        let manifest = image_manifest(&config, 2, &layer, 5, "");
        let digest = sha256_digest(&manifest);
        let response = registry
            .put_manifest("app", "v1", OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            header(&response, "docker-content-digest"),
            Some(digest.clone())
        );
        let pulled = registry.get(&location(&response)).await;
        assert_eq!(pulled.bytes().await.unwrap(), manifest);
    }

    /// spec: Pushing Manifests (end-7a): by digest; sha512 digests are
    /// verified and kept as given.
    #[tokio::test]
    async fn push_manifest_by_digest() {
        let registry = Registry::shared();
        let manifest = image_manifest(&sha256_digest(b"c"), 1, &sha256_digest(b"l"), 1, "");
        for digest in [sha256_digest(&manifest), sha512_digest(&manifest)] {
            let response = registry
                .put_manifest("app", &digest, OCI_MANIFEST, &manifest)
                .await;
            assert_eq!(response.status(), StatusCode::CREATED, "{digest}");
            assert_eq!(
                header(&response, "docker-content-digest"),
                Some(digest.clone())
            );
            let get = registry.get(&format!("/v2/app/manifests/{digest}")).await;
            assert_eq!(header(&get, "docker-content-digest"), Some(digest.clone()));
            assert_eq!(get.bytes().await.unwrap(), manifest);
        }
        let wrong = sha256_digest(b"not this manifest");
        let response = registry
            .put_manifest("app", &wrong, OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(failure(response).await, (400, "DIGEST_INVALID".into()));
    }

    /// spec: Pushing Manifests (end-7b): `?tag=` parameters on a push by
    /// digest set every tag and answer an `OCI-Tag` header for each.
    #[tokio::test]
    async fn push_by_digest_with_tags_answers_oci_tag() {
        let registry = Registry::shared();
        let manifest = image_manifest(&sha256_digest(b"c"), 1, &sha256_digest(b"l"), 1, "");
        let digest = sha256_digest(&manifest);
        let tags = ["1.2.3", "1.2", "1", "latest", "a", "b", "c", "d", "e", "f"];
        let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
        let response = registry
            .put_manifest(
                "app",
                &format!("{digest}?{}", query.join("&")),
                OCI_MANIFEST,
                &manifest,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let answered: Vec<String> = response
            .headers()
            .get_all("oci-tag")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(',').map(|t| t.trim().to_string()))
            .collect();
        assert_eq!(answered, tags);
        for tag in tags {
            let get = registry.head(&format!("/v2/app/manifests/{tag}")).await;
            assert_eq!(
                header(&get, "docker-content-digest"),
                Some(digest.clone()),
                "{tag}"
            );
        }
    }

    /// spec: Pushing Manifests: "The registry MUST store the manifest in the
    /// exact byte representation provided by the client": whitespace, key
    /// order, unknown fields and number spellings survive.
    #[tokio::test]
    async fn manifest_bytes_are_preserved() {
        let registry = Registry::shared();
        let config = sha256_digest(b"c");
        let body = format!(
            "{{\n  \"x-custom\" : {{\"z\": 1.50, \"a\": [\"\\u00e9\", null]}},\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"{OCI_CONFIG}\", \"size\": 1, \"digest\": \"{config}\"}},\n  \"layers\": []\n}}\n"
        );
        let response = registry
            .put_manifest("app", "t", OCI_MANIFEST, body.as_bytes())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let get = registry.get("/v2/app/manifests/t").await;
        assert_eq!(get.bytes().await.unwrap(), body.as_bytes());
    }

    /// spec: Pushing Manifests: registries should accept manifests of at
    /// least 4 MiB, and answer 413 beyond their limit.
    #[tokio::test]
    async fn four_mib_manifest_is_accepted_and_larger_is_413() {
        let registry = Registry::shared();
        let limit = 4 * 1024 * 1024;
        let manifest = |size: usize| {
            let head = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},"layers":[],"annotations":{{"pad":""#,
                sha256_digest(b"c")
            );
            let tail = r#""}}"#;
            let mut body = head.into_bytes();
            body.resize(size - tail.len(), b'x');
            body.extend_from_slice(tail.as_bytes());
            body
        };
        let exactly = manifest(limit);
        let response = registry
            .put_manifest("app", "big", OCI_MANIFEST, &exactly)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let get = registry.get("/v2/app/manifests/big").await;
        assert_eq!(get.bytes().await.unwrap().len(), limit);
        // The 413 may come before the body is sent, and the server then
        // closes the connection: a client must read the answer while still
        // writing, which reqwest cannot, so this one goes over a plain socket.
        let status = raw_put(
            &registry,
            "/v2/app/manifests/bigger",
            OCI_MANIFEST,
            manifest(limit + 1),
        );
        assert_eq!(status, 413);
    }

    /// PUT `body` over a plain TCP connection, writing on a thread while
    /// the answer is read; returns the status code.
    fn raw_put(registry: &Registry, path: &str, content_type: &str, body: Vec<u8>) -> u16 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(registry.wharf.addr()).unwrap();
        let authorization = support::test_authorization()
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{authorization}Connection: close\r\n\r\n",
            registry.wharf.addr(),
            body.len()
        );
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            // The server may stop reading once it has answered.
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&body);
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        sender.join().unwrap();
        let line = String::from_utf8_lossy(&answer);
        line.split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status line in {line:?}"))
    }

    /// spec: Push: a manifest whose descriptors reference blobs that were
    /// never pushed (sparse manifests, non-distributable layers with
    /// `urls`) is accepted.
    #[tokio::test]
    async fn manifest_referencing_missing_blobs_is_accepted() {
        let registry = Registry::shared();
        let foreign = sha256_digest(b"foreign layer");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{foreign}","size":1234,"urls":["https://example.com/layer"]}}]}}"#,
            sha256_digest(b"missing config")
        );
        let response = registry
            .put_manifest("app", "sparse", OCI_MANIFEST, body.as_bytes())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":99}}]}}"#,
            sha256_digest(b"missing child")
        );
        let response = registry
            .put_manifest("app", "sparse-index", OCI_INDEX, index.as_bytes())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    /// spec: Push (image-spec descriptors): a descriptor with the `data`
    /// field is accepted and kept.
    #[tokio::test]
    async fn descriptor_data_field_is_accepted() {
        let registry = Registry::shared();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_EMPTY}","digest":"{}","size":2,"data":"e30="}},"layers":[]}}"#,
            sha256_digest(b"{}")
        );
        let response = registry
            .put_manifest("app", "data", OCI_MANIFEST, body.as_bytes())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let get = registry.get("/v2/app/manifests/data").await;
        assert_eq!(get.bytes().await.unwrap(), body.as_bytes());
    }

    /// spec: Pushing Manifests with Subject: `OCI-Subject` answers a push
    /// of a manifest with a `subject`, also when the subject is not stored
    /// ("MUST initially accept … a subject … that does not exist").
    #[tokio::test]
    async fn subject_is_answered_with_oci_subject() {
        let registry = Registry::shared();
        let missing = sha256_digest(b"subject pushed later");
        let body = artifact(&missing, Some("application/vnd.example.sig"), "x");
        let response = registry
            .put_manifest("app", "sig", OCI_MANIFEST, &body)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(header(&response, "oci-subject"), Some(missing));
        let (_, image) = registry.push_image("app", "image").await;
        let response = registry
            .put_manifest("app", "sig2", OCI_MANIFEST, &artifact(&image, None, "y"))
            .await;
        assert_eq!(header(&response, "oci-subject"), Some(image));
        let plain = registry.push_image("app", "plain").await;
        let response = registry
            .put_manifest("app", "plain", OCI_MANIFEST, &plain.0)
            .await;
        assert_eq!(header(&response, "oci-subject"), None);
    }

    /// spec: Pushing Manifests: a body that is not a valid manifest of its
    /// declared type is 400 `MANIFEST_INVALID`.
    #[tokio::test]
    async fn invalid_manifest_is_400_manifest_invalid() {
        let registry = Registry::shared();
        for (media_type, body) in [
            (OCI_MANIFEST, "not json"),
            (
                OCI_MANIFEST,
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
            ),
            (OCI_MANIFEST, r#"{"schemaVersion":2,"layers":[]}"#),
            (OCI_INDEX, r#"{"schemaVersion":2}"#),
        ] {
            let response = registry
                .put_manifest("app", "bad", media_type, body.as_bytes())
                .await;
            assert_eq!(
                failure(response).await,
                (400, "MANIFEST_INVALID".into()),
                "{body}"
            );
        }
    }
}

mod content_discovery {
    //! Spec: Content Discovery (end-8a, end-8b, end-12a, end-12b) and the
    //! catalog.
    use super::*;

    async fn tag_all(registry: &Registry, name: &str, tags: &[&str]) {
        let manifest = image_manifest(&sha256_digest(b"c"), 1, &sha256_digest(b"l"), 1, "");
        let digest = sha256_digest(&manifest);
        let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
        let response = registry
            .put_manifest(
                name,
                &format!("{digest}?{}", query.join("&")),
                OCI_MANIFEST,
                &manifest,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn tags(response: Response) -> Vec<String> {
        let body: Value = response.json().await.unwrap();
        serde_json::from_value(body["tags"].clone()).unwrap()
    }

    /// spec: Listing Tags (end-8a): 200, `{"name", "tags"}`, in
    /// "ASCIIbetical" order (Go's sort.Strings).
    #[tokio::test]
    async fn tags_are_listed_in_asciibetical_order() {
        let registry = Registry::shared();
        tag_all(
            &registry,
            "team/app",
            &["v2", "latest", "V1", "_x", "1.0", "v10"],
        )
        .await;
        let response = registry.get("/v2/team/app/tags/list").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({
                "name": registry.name("team/app"),
                "tags": ["1.0", "V1", "_x", "latest", "v10", "v2"],
            })
        );
    }

    /// spec: Listing Tags (end-8b): `n` limits the list, and a `Link:
    /// <…>; rel="next"` header leads to the rest.
    #[tokio::test]
    async fn tags_page_with_n_and_link() {
        let registry = Registry::shared();
        tag_all(&registry, "app", &["a", "b", "c", "d", "e"]).await;
        let mut next = Some("/v2/app/tags/list?n=2".to_string());
        let mut pages = Vec::new();
        while let Some(target) = next {
            let response = registry.get(&target).await;
            assert_eq!(response.status(), StatusCode::OK);
            next = header(&response, "link").map(|link| {
                assert!(link.ends_with(r#">; rel="next""#), "{link}");
                link.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            });
            pages.push(tags(response).await);
        }
        assert_eq!(pages, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    }

    /// spec: Listing Tags (end-8b): `last` starts after the named tag
    /// (non-inclusively), with or without `n`.
    #[tokio::test]
    async fn tags_continue_after_last() {
        let registry = Registry::shared();
        tag_all(&registry, "app", &["a", "b", "c", "d"]).await;
        let response = registry.get("/v2/app/tags/list?n=2&last=b").await;
        assert_eq!(tags(response).await, ["c", "d"]);
        let response = registry.get("/v2/app/tags/list?last=a").await;
        assert_eq!(tags(response).await, ["b", "c", "d"]);
    }

    /// spec: Listing Tags: "When n is zero, this endpoint MUST return an
    /// empty list, and MUST NOT include a Link header."
    #[tokio::test]
    async fn tags_with_n_zero_is_empty_without_link() {
        let registry = Registry::shared();
        tag_all(&registry, "app", &["a", "b"]).await;
        let response = registry.get("/v2/app/tags/list?n=0").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "link"), None);
        assert!(tags(response).await.is_empty());
    }

    /// spec: Listing Tags (end-8a failure): a repository that does not
    /// exist is 404 `NAME_UNKNOWN`.
    #[tokio::test]
    async fn tags_of_unknown_repository_is_404() {
        let registry = Registry::shared();
        let response = registry.get("/v2/no/such/tags/list").await;
        assert_eq!(failure(response).await, (404, "NAME_UNKNOWN".into()));
    }

    /// The catalog (`/v2/_catalog`, registry:2's API) pages like the tag
    /// list: sorted, `n`, `last` and `Link`.
    #[tokio::test]
    async fn catalog_pages_with_n_last_and_link() {
        let registry = Registry::start();
        for name in ["b/two", "a/one", "c", "b/one"] {
            registry.push_blob(name, b"x").await;
        }
        let response = registry.get("/v2/_catalog?n=3").await;
        assert_eq!(
            header(&response, "link").as_deref(),
            Some(r#"</v2/_catalog?last=b/two&n=3>; rel="next""#)
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["repositories"], json!(["a/one", "b/one", "b/two"]));
        let response = registry.get("/v2/_catalog?n=3&last=b/one").await;
        assert_eq!(header(&response, "link"), None);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["repositories"], json!(["b/two", "c"]));
    }

    /// GET a referrers list: its headers and its descriptors.
    async fn referrers(registry: &Registry, target: &str) -> (HeaderMap, Vec<Value>) {
        let response = registry.get(target).await;
        assert_eq!(response.status(), StatusCode::OK, "{target}");
        assert_eq!(
            header(&response, "content-type").as_deref(),
            Some(OCI_INDEX)
        );
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["schemaVersion"], 2);
        assert_eq!(body["mediaType"], OCI_INDEX);
        (headers, body["manifests"].as_array().unwrap().clone())
    }

    fn value(headers: &HeaderMap, name: &str) -> Option<String> {
        headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    /// spec: Listing Referrers (end-12a): an image index of the manifests
    /// whose subject is the digest, each descriptor with `mediaType`,
    /// `size`, `digest`, `artifactType` (the manifest's, else its config's
    /// media type) and the manifest's annotations.
    #[tokio::test]
    async fn referrers_are_an_index_of_descriptors() {
        let registry = Registry::shared();
        let (_, subject) = registry.push_image("app", "v1").await;
        let sig = artifact(&subject, Some("application/vnd.example.sig"), "signed");
        let sbom = artifact(&subject, None, "sbom");
        for body in [&sig, &sbom] {
            let put = registry
                .put_manifest("app", &sha256_digest(body), OCI_MANIFEST, body)
                .await;
            assert_eq!(put.status(), StatusCode::CREATED);
        }
        let (_, manifests) = referrers(&registry, &format!("/v2/app/referrers/{subject}")).await;
        assert_eq!(manifests.len(), 2);
        for (body, artifact_type, note) in [
            (&sig, "application/vnd.example.sig", "signed"),
            (&sbom, OCI_EMPTY, "sbom"),
        ] {
            let digest = sha256_digest(body);
            let d = manifests
                .iter()
                .find(|d| d["digest"] == digest.as_str())
                .unwrap_or_else(|| panic!("{digest} listed"));
            assert_eq!(d["mediaType"], OCI_MANIFEST);
            assert_eq!(d["size"], body.len());
            assert_eq!(d["artifactType"], artifact_type);
            assert_eq!(d["annotations"]["org.example.note"], note);
        }
    }

    /// spec: Listing Referrers: "MUST NOT return a 404" for a valid digest:
    /// a digest without referrers, in a repository that may not exist, is
    /// an empty index.
    #[tokio::test]
    async fn referrers_never_404() {
        let registry = Registry::shared();
        let digest = sha256_digest(b"no referrers");
        for target in [
            format!("/v2/app/referrers/{digest}"),
            format!("/v2/no/such/repo/referrers/{digest}"),
            format!("/v2/app/referrers/{}", sha512_digest(b"x")),
        ] {
            let (_, manifests) = referrers(&registry, &target).await;
            assert!(manifests.is_empty(), "{target}");
        }
    }

    /// spec: Listing Referrers: "a `<digest>` with an invalid syntax" is 400.
    #[tokio::test]
    async fn referrers_of_an_invalid_digest_is_400() {
        let registry = Registry::shared();
        for digest in ["sha256:abc", "not-a-digest", "sha256:ZZZZ"] {
            let response = registry.get(&format!("/v2/app/referrers/{digest}")).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{digest}");
        }
    }

    /// spec: Listing Referrers (end-12b): `?artifactType=` filters, and the
    /// response says so with `OCI-Filters-Applied: artifactType`.
    #[tokio::test]
    async fn referrers_filter_by_artifact_type() {
        let registry = Registry::shared();
        let subject = sha256_digest(b"subject");
        let sig = artifact(&subject, Some("application/vnd.example.sig"), "1");
        let sbom = artifact(&subject, Some("application/vnd.example.sbom+json"), "2");
        for body in [&sig, &sbom] {
            registry
                .put_manifest("app", &sha256_digest(body), OCI_MANIFEST, body)
                .await;
        }
        let (headers, manifests) = referrers(
            &registry,
            &format!(
                "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom%2Bjson"
            ),
        )
        .await;
        assert_eq!(
            value(&headers, "oci-filters-applied").as_deref(),
            Some("artifactType")
        );
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0]["digest"], sha256_digest(&sbom).as_str());
        let (headers, manifests) =
            referrers(&registry, &format!("/v2/app/referrers/{subject}")).await;
        assert_eq!(value(&headers, "oci-filters-applied"), None);
        assert_eq!(manifests.len(), 2);
    }

    /// spec: Listing Referrers: an index with a subject is listed with its
    /// annotations and, having no `artifactType`, without one.
    #[tokio::test]
    async fn index_referrer_has_no_artifact_type() {
        let registry = Registry::shared();
        let (_, subject) = registry.push_image("app", "v1").await;
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}},"annotations":{{"k":"v"}}}}"#
        );
        let put = registry
            .put_manifest("app", "idx", OCI_INDEX, index.as_bytes())
            .await;
        assert_eq!(header(&put, "oci-subject"), Some(subject.clone()));
        let (_, manifests) = referrers(&registry, &format!("/v2/app/referrers/{subject}")).await;
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0]["mediaType"], OCI_INDEX);
        assert!(manifests[0].get("artifactType").is_none());
        assert_eq!(manifests[0]["annotations"]["k"], "v");
    }

    /// spec: Listing Referrers: referrers are per repository ("in the same
    /// `<name>` namespace") and are kept in storage across restarts.
    #[tokio::test]
    async fn referrers_are_per_repository_and_durable() {
        let mut registry = Registry::start();
        let subject = sha256_digest(b"subject");
        let sig = artifact(&subject, None, "1");
        registry
            .put_manifest("one", "sig", OCI_MANIFEST, &sig)
            .await;
        let (_, other) = referrers(&registry, &format!("/v2/two/referrers/{subject}")).await;
        assert!(other.is_empty());
        Arc::get_mut(&mut registry.wharf)
            .expect("a private server")
            .restart();
        let (_, listed) = referrers(&registry, &format!("/v2/one/referrers/{subject}")).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["digest"], sha256_digest(&sig).as_str());
    }

    /// spec: Enabling the Referrers API: manifests listed in the image
    /// index under the referrers tag schema (`<alg>-<encoded>`) and naming
    /// the subject are listed. Here the subject uses an algorithm Wharf
    /// cannot index (no `OCI-Subject`), so the client keeps the tag.
    #[tokio::test]
    async fn referrers_tag_schema_is_honoured() {
        let registry = Registry::shared();
        let subject = format!("sha384:{}", "ab".repeat(48));
        let sig = artifact(&subject, Some("application/vnd.example.sig"), "1");
        let put = registry
            .put_manifest("app", &sha256_digest(&sig), OCI_MANIFEST, &sig)
            .await;
        assert_eq!(put.status(), StatusCode::CREATED);
        assert_eq!(header(&put, "oci-subject"), None);
        let fallback = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"artifactType":"application/vnd.example.sig"}}]}}"#,
            sha256_digest(&sig),
            sig.len()
        );
        let tag = format!("sha384-{}", &"ab".repeat(48)[..64]);
        let put = registry
            .put_manifest("app", &tag, OCI_INDEX, fallback.as_bytes())
            .await;
        assert_eq!(put.status(), StatusCode::CREATED);
        let (_, manifests) = referrers(&registry, &format!("/v2/app/referrers/{subject}")).await;
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0]["digest"], sha256_digest(&sig).as_str());
        assert_eq!(manifests[0]["artifactType"], "application/vnd.example.sig");
    }

    /// spec: Listing Referrers: when the list does not fit one response, a
    /// `Link: <…>; rel="next"` header leads to the rest (here forced with
    /// `n`).
    #[tokio::test]
    async fn referrers_page_with_link() {
        let registry = Registry::shared();
        let subject = sha256_digest(b"subject");
        let mut all = Vec::new();
        for i in 0..5 {
            let body = artifact(&subject, None, &i.to_string());
            registry
                .put_manifest("app", &sha256_digest(&body), OCI_MANIFEST, &body)
                .await;
            all.push(sha256_digest(&body));
        }
        all.sort();
        let mut next = Some(format!("/v2/app/referrers/{subject}?n=2"));
        let mut seen = Vec::new();
        while let Some(target) = next {
            let (headers, manifests) = referrers(&registry, &target).await;
            next = value(&headers, "link").map(|l| {
                l.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            });
            seen.extend(
                manifests
                    .iter()
                    .map(|d| d["digest"].as_str().unwrap().to_string()),
            );
        }
        assert_eq!(seen, all);
    }
}

mod content_management {
    //! Spec: Content Management (end-9, end-10).
    use super::*;

    /// spec: Deleting Manifests (end-9): 202, then the manifest and every
    /// tag pointing at it are 404.
    #[tokio::test]
    async fn delete_manifest_by_digest_is_202() {
        let registry = Registry::shared();
        let (_, digest) = registry.push_image("app", "v1").await;
        let response = registry
            .delete(&format!("/v2/app/manifests/{digest}"))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        for reference in [digest.as_str(), "v1"] {
            let get = registry
                .get(&format!("/v2/app/manifests/{reference}"))
                .await;
            assert_eq!(get.status(), StatusCode::NOT_FOUND, "{reference}");
        }
        let again = registry
            .delete(&format!("/v2/app/manifests/{digest}"))
            .await;
        assert_eq!(failure(again).await, (404, "MANIFEST_UNKNOWN".into()));
    }

    /// spec: Deleting tags (end-9): 202, the tag is 404, the manifest stays.
    #[tokio::test]
    async fn delete_tag_is_202_and_keeps_the_manifest() {
        let registry = Registry::shared();
        let (_, digest) = registry.push_image("app", "v1").await;
        let response = registry.delete("/v2/app/manifests/v1").await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            registry.get("/v2/app/manifests/v1").await.status(),
            StatusCode::NOT_FOUND
        );
        let by_digest = registry.get(&format!("/v2/app/manifests/{digest}")).await;
        assert_eq!(by_digest.status(), StatusCode::OK);
    }

    /// spec: Deleting Manifests: "If the repository does not exist, the
    /// response MUST return 404 Not Found."
    #[tokio::test]
    async fn delete_in_unknown_repository_is_404() {
        let registry = Registry::shared();
        let digest = sha256_digest(b"x");
        let response = registry
            .delete(&format!("/v2/no/such/manifests/{digest}"))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    /// spec: Deleting Blobs (end-10): 202, then 404; a blob not found is 404.
    #[tokio::test]
    async fn delete_blob_is_202_then_404() {
        let registry = Registry::shared();
        let digest = registry.push_blob("app", b"to delete").await;
        let path = format!("/v2/app/blobs/{digest}");
        assert_eq!(registry.delete(&path).await.status(), StatusCode::ACCEPTED);
        assert_eq!(registry.get(&path).await.status(), StatusCode::NOT_FOUND);
        let again = registry.delete(&path).await;
        assert_eq!(failure(again).await, (404, "BLOB_UNKNOWN".into()));
    }

    /// spec: Deleting Manifests / Listing Referrers: a deleted referrer
    /// leaves the referrers list.
    #[tokio::test]
    async fn deleted_referrer_leaves_the_list() {
        let registry = Registry::shared();
        let subject = sha256_digest(b"subject");
        let keep = artifact(&subject, None, "keep");
        let drop = artifact(&subject, None, "drop");
        for body in [&keep, &drop] {
            registry
                .put_manifest("app", &sha256_digest(body), OCI_MANIFEST, body)
                .await;
        }
        let response = registry
            .delete(&format!("/v2/app/manifests/{}", sha256_digest(&drop)))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = registry
            .get(&format!("/v2/app/referrers/{subject}"))
            .await
            .json()
            .await
            .unwrap();
        let listed: Vec<&str> = body["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [sha256_digest(&keep)]);
    }

    /// spec: Content Management: "If … deletion is disabled, the registry
    /// MUST respond with either a 400 Bad Request or a 405 Method Not
    /// Allowed": Wharf answers 405 `UNSUPPORTED` for manifests, tags and
    /// blobs, and deletes nothing.
    #[tokio::test]
    async fn deletes_disabled_is_405_unsupported() {
        let registry = Registry::with(Wharf::start_with(&[(
            "REGISTRY_STORAGE_DELETE_ENABLED",
            "false",
        )]));
        let (_, digest) = registry.push_image("app", "v1").await;
        let blob = registry.push_blob("app", b"blob").await;
        for path in [
            format!("/v2/app/manifests/{digest}"),
            "/v2/app/manifests/v1".to_string(),
            format!("/v2/app/blobs/{blob}"),
        ] {
            let response = registry.delete(&path).await;
            assert_eq!(
                failure(response).await,
                (405, "UNSUPPORTED".into()),
                "{path}"
            );
            assert_eq!(registry.get(&path).await.status(), StatusCode::OK, "{path}");
        }
    }
}

mod error_codes {
    //! Spec: Error Codes: 4XX bodies are `{"errors":[{"code","message",
    //! "detail"}]}` with a code of the table. Codes Wharf returns from
    //! requests without credentials are checked here with their status;
    //! `UNAUTHORIZED` and `DENIED` need an authenticating configuration.
    use super::*;

    /// spec: Error Codes: the body format, with `code`, `message` and
    /// `detail`, and the code in upper case and underscores.
    #[tokio::test]
    async fn error_body_has_code_message_and_detail() {
        let registry = Registry::shared();
        let response = registry.get("/v2/app/manifests/missing").await;
        assert_eq!(
            header(&response, "content-type").as_deref(),
            Some("application/json")
        );
        let body: Value = response.json().await.unwrap();
        let error = &body["errors"][0];
        assert_eq!(error["code"], "MANIFEST_UNKNOWN");
        assert!(error["message"].is_string());
        assert!(error.get("detail").is_some());
    }

    /// spec: Error Codes: each reachable code with the status the endpoint
    /// table documents for it.
    #[tokio::test]
    async fn each_code_with_its_status() {
        let registry = Registry::shared();
        let missing = sha256_digest(b"missing");
        let session = registry.start_upload("app").await;
        // BLOB_UNKNOWN (code-1)
        let r = registry.get(&format!("/v2/app/blobs/{missing}")).await;
        assert_eq!(failure(r).await, (404, "BLOB_UNKNOWN".into()));
        // BLOB_UPLOAD_INVALID (code-2): a malformed Content-Range
        let r = registry
            .request(Method::PATCH, &session)
            .header("content-range", "bytes=a-b")
            .body(b"x".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(failure(r).await, (400, "BLOB_UPLOAD_INVALID".into()));
        // BLOB_UPLOAD_UNKNOWN (code-3)
        let r = registry
            .get("/v2/app/blobs/uploads/00000000-0000-4000-8000-000000000000")
            .await;
        assert_eq!(failure(r).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
        // DIGEST_INVALID (code-4)
        let r = registry
            .request(Method::PUT, &with_digest(&session, &missing))
            .body(b"other".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(failure(r).await, (400, "DIGEST_INVALID".into()));
        // MANIFEST_INVALID (code-6)
        let r = registry.put_manifest("app", "t", OCI_MANIFEST, b"{").await;
        assert_eq!(failure(r).await, (400, "MANIFEST_INVALID".into()));
        // MANIFEST_UNKNOWN (code-7)
        let r = registry.get("/v2/app/manifests/nope").await;
        assert_eq!(failure(r).await, (404, "MANIFEST_UNKNOWN".into()));
        // NAME_INVALID (code-8)
        let r = registry.get("/v2/Bad/tags/list").await;
        assert_eq!(failure(r).await, (400, "NAME_INVALID".into()));
        // NAME_UNKNOWN (code-9)
        let r = registry.get("/v2/unknown/tags/list").await;
        assert_eq!(failure(r).await, (404, "NAME_UNKNOWN".into()));
        // SIZE_INVALID (code-10): Content-Length disagrees with Content-Range
        let session = registry.start_upload("app").await;
        let r = registry
            .request(Method::PATCH, &session)
            .header("content-range", "0-9")
            .body(b"five!".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(failure(r).await, (400, "SIZE_INVALID".into()));
        // UNSUPPORTED (code-13): a method an endpoint does not take
        let r = registry.send(Method::POST, "/v2/app/tags/list").await;
        assert_eq!(failure(r).await, (405, "UNSUPPORTED".into()));
    }

    /// spec: Push: a registry that rejects a manifest for missing
    /// references must say `MANIFEST_BLOB_UNKNOWN` (code-5); Wharf accepts
    /// such manifests instead (the spec's MAY), so pushing one succeeds.
    #[tokio::test]
    async fn manifest_blob_unknown_is_never_needed() {
        let registry = Registry::shared();
        let manifest = image_manifest(&sha256_digest(b"c"), 1, &sha256_digest(b"l"), 1, "");
        let response = registry
            .put_manifest("app", "v1", OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}
