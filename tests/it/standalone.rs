//! The standalone registry in a stock wasi-http host (issue 17): the
//! component `wharf component export --standalone` writes, served by
//! `wasmtime serve` from crates.io's wasmtime-cli, with the README's command
//! line (tests/it/support/stock.rs). It answers as registry:2 does, keeps its
//! data in registry:2's layout so that `wharf serve` serves the same
//! directory, survives restarts and concurrent instances, and works with
//! Docker. `wharf serve --component` runs the core of a standalone
//! component.

use crate::support;
use crate::support::dockerd::{Dockerd, show};
use crate::support::{Served, Wharf, random_bytes, sha256_digest};
use base64::Engine as _;
use reqwest::StatusCode;

/// registry:2's 401 body, byte for byte.
const UNAUTHORIZED_BODY: &str =
    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

const USER: (&str, &str) = ("alice", "alice-secret");

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// An HTTP client for one registry, sending `authorization` if given.
struct Client {
    base: String,
    http: reqwest::Client,
    authorization: Option<String>,
}

impl Client {
    fn new(wharf: &Wharf, credentials: Option<(&str, &str)>) -> Client {
        Client {
            base: wharf.url(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            authorization: credentials.map(|(u, p)| basic(u, p)),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let request = self.http.request(method, url);
        match &self.authorization {
            Some(a) => request.header("authorization", a),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let answer = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        (status, answer.bytes().await.unwrap().to_vec())
    }

    /// Start an upload session in `name`; its `Location`.
    async fn start_upload(&self, name: &str) -> String {
        let started = self
            .request(reqwest::Method::POST, &format!("/v2/{name}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202, "POST upload of {name}");
        started.headers()["location"].to_str().unwrap().to_string()
    }

    /// PUT `body` to `path` as `content_type`, expecting 201 Created.
    async fn put_created(&self, path: &str, content_type: &str, body: Vec<u8>, what: &str) {
        let put = self
            .request(reqwest::Method::PUT, path)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{what}: {:?}", put.text().await);
    }

    /// Close the session at `location` with `digest`, `body` its last bytes.
    async fn close_upload(&self, name: &str, location: &str, digest: &str, body: Vec<u8>) {
        let sep = if location.contains('?') { '&' } else { '?' };
        let path = format!("{location}{sep}digest={digest}");
        self.put_created(
            &path,
            "application/octet-stream",
            body,
            &format!("closing PUT of {name}"),
        )
        .await;
    }

    /// PATCH `part`, the bytes from `first` on, to the session at
    /// `location`; the session's next location (its path: the other host
    /// may listen elsewhere).
    async fn patch(&self, location: &str, first: usize, part: &[u8]) -> String {
        let path = &location[location.find("/v2/").expect("a /v2/ location")..];
        let patched = self
            .request(reqwest::Method::PATCH, path)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{first}-{}", first + part.len() - 1),
            )
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 202, "PATCH at {first} to {path}");
        let next = patched.headers()["location"].to_str().unwrap();
        next[next.find("/v2/").expect("a /v2/ location")..].to_string()
    }

    /// Push `data` as a blob of `name` monolithically (POST, then PUT).
    async fn push_blob(&self, name: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let location = self.start_upload(name).await;
        self.close_upload(name, &location, &digest, data.to_vec())
            .await;
        digest
    }

    /// Push `data` in chunks of `chunk` bytes (PATCH each, then PUT).
    async fn push_blob_chunked(&self, name: &str, data: &[u8], chunk: usize) -> String {
        let digest = sha256_digest(data);
        let mut location = self.start_upload(name).await;
        for (i, part) in data.chunks(chunk).enumerate() {
            location = self.patch(&location, i * chunk, part).await;
        }
        self.close_upload(name, &location, &digest, Vec::new())
            .await;
        digest
    }

    /// Push a manifest naming `config` and `layers` under `tag`; its digest.
    async fn push_manifest(&self, name: &str, tag: &str, config: &str, layers: &[&str]) -> String {
        let manifest = manifest_json(config, layers);
        let path = format!("/v2/{name}/manifests/{tag}");
        self.put_created(
            &path,
            OCI_MANIFEST,
            manifest.clone(),
            &format!("PUT manifest {name}:{tag}"),
        )
        .await;
        sha256_digest(&manifest)
    }
}

fn manifest_json(config: &str, layers: &[&str]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|d| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": 0})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 0},
        "layers": layers,
    }))
    .unwrap()
}

#[tokio::test]
async fn without_credentials_it_answers_as_registry_2_and_with_them_it_serves() {
    let wharf = Wharf::start_stock(&[], Some(USER));
    let anonymous = reqwest::get(format!("{}/v2/", wharf.url())).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"Registry Realm\""
    );
    assert_eq!(anonymous.headers()["content-type"], "application/json");
    assert_eq!(anonymous.text().await.unwrap(), UNAUTHORIZED_BODY);

    let wrong = Client::new(&wharf, Some((USER.0, "wrong")));
    let (status, body) = wrong.get("/v2/").await;
    assert_eq!(status, 401);
    assert_eq!(String::from_utf8_lossy(&body), UNAUTHORIZED_BODY);
    let (status, _) = wrong.get("/v2/a/tags/list").await;
    assert_eq!(status, 401, "a wrong password reaches no repository");

    let alice = Client::new(&wharf, Some(USER));
    let (status, _) = alice.get("/v2/").await;
    assert_eq!(status, 200);
    let blob = random_bytes(3000);
    let digest = alice.push_blob("team/app", &blob).await;
    let (status, pulled) = alice.get(&format!("/v2/team/app/blobs/{digest}")).await;
    assert_eq!((status, pulled), (StatusCode::OK, blob));
    let (status, _) = Client::new(&wharf, None)
        .get(&format!("/v2/team/app/blobs/{digest}"))
        .await;
    assert_eq!(status, 401, "anonymous pulls are asked to log in");
}

#[tokio::test]
async fn data_survives_restarts_and_moves_between_wasmtime_serve_and_wharf_serve() {
    let mut wharf = Wharf::start_stock(&[("REGISTRY_STORAGE_DELETE_ENABLED", "true")], Some(USER));
    let client = Client::new(&wharf, Some(USER));
    let config = client.push_blob("moves/app", b"{}").await;
    let big = random_bytes(5 * 1024 * 1024 + 3);
    let layer = client.push_blob_chunked("moves/app", &big, 1 << 20).await;
    let empty = client.push_blob("moves/app", b"").await;
    let manifest = client
        .push_manifest("moves/app", "v1", &config, &[&layer, &empty])
        .await;

    // A range read sends only the bytes asked for, though the file goes on.
    let ranged = client
        .request(
            reqwest::Method::GET,
            &format!("/v2/moves/app/blobs/{layer}"),
        )
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &big[10..20]);

    wharf.restart();
    let (status, pulled) = client.get(&format!("/v2/moves/app/blobs/{layer}")).await;
    assert_eq!((status, pulled.len()), (StatusCode::OK, big.len()));
    assert!(pulled == big, "the layer came back changed after a restart");

    // An upload left open in one host is finished in the other.
    let open = random_bytes(300_001);
    let location = client.start_upload("moves/open").await;
    let location = client.patch(&location, 0, &open[..100_000]).await;
    let location = client
        .patch(&location, 100_000, &open[100_000..200_000])
        .await;

    wharf.switch_host();
    assert!(!wharf.is_stock());
    let location = client
        .patch(&location, 200_000, &open[200_000..250_000])
        .await;
    let open_digest = sha256_digest(&open);
    let (status, got) = client.get("/v2/moves/app/manifests/v1").await;
    assert_eq!(
        status, 200,
        "wharf serve serves the tag the standalone component pushed"
    );
    assert_eq!(sha256_digest(&got), manifest);
    let (status, pulled) = client.get(&format!("/v2/moves/app/blobs/{layer}")).await;
    assert_eq!(status, 200);
    assert!(pulled == big, "wharf serve served other bytes");
    let (status, pulled) = client.get(&format!("/v2/moves/app/blobs/{empty}")).await;
    assert_eq!((status, pulled.len()), (StatusCode::OK, 0));
    let native = random_bytes(70_000);
    let native_digest = client.push_blob("moves/native", &native).await;
    client
        .push_manifest("moves/native", "latest", &native_digest, &[])
        .await;

    wharf.switch_host();
    assert!(wharf.is_stock());
    let (status, pulled) = client
        .get(&format!("/v2/moves/native/blobs/{native_digest}"))
        .await;
    assert_eq!((status, pulled), (StatusCode::OK, native));
    client
        .close_upload(
            "moves/open",
            &location,
            &open_digest,
            open[250_000..].to_vec(),
        )
        .await;
    let (status, pulled) = client
        .get(&format!("/v2/moves/open/blobs/{open_digest}"))
        .await;
    assert_eq!(status, 200);
    assert!(
        pulled == open,
        "an upload moved between hosts came back changed"
    );
    let (status, catalog) = client.get("/v2/_catalog").await;
    assert_eq!(status, 200);
    let catalog: serde_json::Value = serde_json::from_slice(&catalog).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["moves/app", "moves/native", "moves/open"])
    );
    let (status, tags) = client.get("/v2/moves/app/tags/list").await;
    assert_eq!(status, 200);
    let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // Deletes, when enabled, reach the same layout.
    let deleted = client
        .request(
            reqwest::Method::DELETE,
            &format!("/v2/moves/app/manifests/{manifest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    let (status, _) = client.get("/v2/moves/app/manifests/v1").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn concurrent_instances_never_corrupt_each_others_writes() {
    let wharf = Wharf::start_stock(&[], None);
    let client = std::sync::Arc::new(Client::new(&wharf, None));
    let shared = std::sync::Arc::new(random_bytes(300_000));
    let mut pushes = Vec::new();
    // The same blob from eight requests at once, and sixteen others.
    for i in 0..24 {
        let (client, shared) = (client.clone(), shared.clone());
        pushes.push(tokio::spawn(async move {
            let data = if i < 8 {
                shared.to_vec()
            } else {
                random_bytes(100_000 + i)
            };
            let digest = if i % 2 == 0 {
                client.push_blob("busy/app", &data).await
            } else {
                client.push_blob_chunked("busy/app", &data, 40_000).await
            };
            (digest, data)
        }));
    }
    let mut pushed = Vec::new();
    for push in pushes {
        pushed.push(push.await.unwrap());
    }
    // Eight manifests onto one tag at once: the tag names one of them.
    let config = client.push_blob("busy/app", b"{}").await;
    let mut tagging = Vec::new();
    for (digest, _) in pushed.iter().skip(8).take(8) {
        let (client, config, digest) = (client.clone(), config.clone(), digest.clone());
        tagging.push(tokio::spawn(async move {
            client
                .push_manifest("busy/app", "latest", &config, &[&digest])
                .await
        }));
    }
    let mut manifests = Vec::new();
    for tag in tagging {
        manifests.push(tag.await.unwrap());
    }
    for (digest, data) in &pushed {
        let (status, got) = client.get(&format!("/v2/busy/app/blobs/{digest}")).await;
        assert_eq!(status, 200, "{digest}");
        assert!(&got == data, "{digest} came back with other bytes");
    }
    let (status, latest) = client.get("/v2/busy/app/manifests/latest").await;
    assert_eq!(status, 200);
    assert!(
        manifests.contains(&sha256_digest(&latest)),
        "the tag names none of the manifests pushed to it"
    );
    // Nothing half-written is left where a blob or link would be read.
    let tmp = wharf.data_dir().join("docker/registry/v2/wharf-tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "temporary files left in {}", tmp.display());
}

#[test]
fn docker_logs_in_pushes_and_pulls_through_wasmtime_serve() {
    let wharf = Wharf::start_stock(&[], Some(USER));
    let docker = Dockerd::start();
    let registry = wharf.addr().to_string();
    let image = format!("{registry}/stock/random:v1");
    let dir = tempfile::tempdir().unwrap();
    let id = docker.import_random(dir.path(), &image, &[3 * 1024 * 1024 + 5, 4096]);

    let refused = docker.docker(&["push", &image]);
    assert!(
        !refused.status.success(),
        "pushed without login:\n{}",
        show(&refused)
    );
    docker.docker_ok(&["login", &registry, "-u", USER.0, "-p", USER.1]);
    docker.docker_ok(&["push", &image]);
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);
    let pulled = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(pulled.trim(), id, "docker pulled another image");
}

#[tokio::test]
async fn wharf_serve_runs_the_core_of_a_standalone_component() {
    let dir = tempfile::tempdir().unwrap();
    let standalone = support::stock::export(&dir.path().join("standalone.wasm"));
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let served = Served::start(
        &["--component", standalone.to_str().unwrap()],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.to_str().unwrap(),
            ),
        ],
    );
    let base = format!("http://{}", served.addr());
    let blob = random_bytes(10_000);
    let digest = sha256_digest(&blob);
    let http = reqwest::Client::new();
    let put = http
        .post(format!("{base}/v2/core/app/blobs/uploads/?digest={digest}"))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let got = http
        .get(format!("{base}/v2/core/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), blob);
}
