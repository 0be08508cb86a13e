//! Several registries in one process: each tenant's credentials, blobs,
//! manifests, tags, catalog, mounts and referrers are its own; a push past
//! a tenant's storage quota or upload limit is refused and stores nothing;
//! a request for a host no tenant serves is refused before any component
//! runs.

use crate::support::{Served, random_bytes, sha256_digest, wharf_run};
use base64::Engine as _;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};
use std::path::Path;

const ACME: &str = "acme.localhost";
const GLOBEX: &str = "globex.localhost";

fn htpasswd(dir: &Path, name: &str, user: &str, password: &str) -> String {
    let out = wharf_run(
        &["htpasswd", user, "--password-stdin", "--cost", "4"],
        &[],
        &format!("{password}\n"),
    );
    assert!(out.status.success(), "wharf htpasswd: {out:?}");
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path.to_str().unwrap().to_string()
}

struct Registry {
    _dir: tempfile::TempDir,
    served: Served,
    client: Client,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let acme_auth = htpasswd(d, "acme.htpasswd", "alice", "alice-pw");
        let globex_auth = htpasswd(d, "globex.htpasswd", "bob", "bob-pw");
        let config = format!(
            "http:\n  addr: 127.0.0.1:0\n\
             storage:\n  delete:\n    enabled: true\n\
             tenants:\n\
             \x20 - name: acme\n\
             \x20   hosts: [\"{ACME}\", \"registry.acme.example\"]\n\
             \x20   storage: {{ filesystem: {{ rootdirectory: {root}/acme }} }}\n\
             \x20   auth: {{ htpasswd: {{ realm: acme, path: {acme_auth} }} }}\n\
             \x20   limits: {{ storage_bytes: 20000, request_timeout: 30s }}\n\
             \x20 - name: globex\n\
             \x20   hosts: [\"{GLOBEX}\"]\n\
             \x20   storage: {{ filesystem: {{ rootdirectory: {root}/globex }} }}\n\
             \x20   auth: {{ htpasswd: {{ realm: globex, path: {globex_auth} }} }}\n\
             \x20   limits: {{ concurrent_uploads: 2 }}\n",
            root = d.display()
        );
        let path = d.join("config.yml");
        std::fs::write(&path, config).unwrap();
        let served = Served::start(&[path.to_str().unwrap()], &[]);
        Registry {
            _dir: dir,
            served,
            client: Client::new(),
        }
    }

    fn request(
        &self,
        host: &str,
        user: Option<(&str, &str)>,
        method: Method,
        path: &str,
    ) -> RequestBuilder {
        let url = format!("http://{}{path}", self.served.addr());
        let mut builder = self
            .client
            .request(method, url)
            .header("host", format!("{host}:{}", self.served.addr().port()));
        if let Some((user, password)) = user {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            builder = builder.header("authorization", format!("Basic {token}"));
        }
        builder
    }

    fn acme(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(ACME, Some(("alice", "alice-pw")), method, path)
    }

    fn globex(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(GLOBEX, Some(("bob", "bob-pw")), method, path)
    }
}

async fn send(builder: RequestBuilder) -> Response {
    builder.send().await.expect("request sent")
}

/// Send a request and read its body as JSON.
async fn json(builder: RequestBuilder) -> Value {
    send(builder).await.json().await.expect("a JSON body")
}

async fn push_blob(b: RequestBuilder, data: &[u8]) -> Response {
    let digest = sha256_digest(data);
    // The caller's builder carries host and credentials; add the digest.
    send(b.query(&[("digest", digest)]).body(data.to_vec())).await
}

async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("an OCI error body");
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated_and_limited() {
    let r = Registry::start();
    let repo = "shared/app";
    let uploads = format!("/v2/{repo}/blobs/uploads/");

    // Unknown host: refused by the host, with an OCI error.
    let unknown = send(r.request("initech.localhost", None, Method::GET, "/v2/")).await;
    assert_eq!(unknown.status(), 421);
    assert_eq!(error_code(unknown).await, "DENIED");
    let bare = send(r.client.get(format!("http://{}/v2/", r.served.addr()))).await;
    assert_eq!(bare.status(), 421, "an address is no tenant's host");

    // Credentials open their own tenant only.
    assert_eq!(send(r.acme(Method::GET, "/v2/")).await.status(), 200);
    assert_eq!(send(r.globex(Method::GET, "/v2/")).await.status(), 200);
    let alice_at_globex =
        send(r.request(GLOBEX, Some(("alice", "alice-pw")), Method::GET, "/v2/")).await;
    assert_eq!(alice_at_globex.status(), 401);
    let challenge = alice_at_globex.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("realm=\"globex\""), "{challenge}");
    let bob_at_acme = send(r.request(ACME, Some(("bob", "bob-pw")), Method::GET, "/v2/")).await;
    assert_eq!(bob_at_acme.status(), 401);
    // Another host of the same tenant, case and port aside.
    let other_name = send(r.request(
        "Registry.ACME.example",
        Some(("alice", "alice-pw")),
        Method::GET,
        "/v2/",
    ))
    .await;
    assert_eq!(other_name.status(), 200);

    // acme: a config blob, an image manifest, a tag and a referrer.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let empty = b"{}".to_vec();
    for blob in [&config, &empty] {
        let pushed = push_blob(r.acme(Method::POST, &uploads), blob).await;
        assert_eq!(pushed.status(), 201);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len()},
        "layers": []
    })
    .to_string();
    let manifest_digest = sha256_digest(manifest.as_bytes());
    let put = send(
        r.acme(Method::PUT, &format!("/v2/{repo}/manifests/v1"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone()),
    )
    .await;
    assert_eq!(put.status(), 201);
    let referrer = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(&empty), "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len()}
    })
    .to_string();
    let put = send(
        r.acme(
            Method::PUT,
            &format!(
                "/v2/{repo}/manifests/{}",
                sha256_digest(referrer.as_bytes())
            ),
        )
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(referrer),
    )
    .await;
    assert_eq!(put.status(), 201);
    let listed: Value = json(r.acme(
        Method::GET,
        &format!("/v2/{repo}/referrers/{manifest_digest}"),
    ))
    .await;
    assert_eq!(listed["manifests"].as_array().unwrap().len(), 1, "{listed}");

    // globex: the same repository name is another, empty repository.
    let config_digest = sha256_digest(&config);
    for path in [
        format!("/v2/{repo}/blobs/{config_digest}"),
        format!("/v2/{repo}/manifests/v1"),
        format!("/v2/{repo}/manifests/{manifest_digest}"),
        format!("/v2/{repo}/tags/list"),
    ] {
        let got = send(r.globex(Method::GET, &path)).await;
        assert_eq!(got.status(), 404, "{path} must be unknown in globex");
    }
    let catalog: Value = json(r.globex(Method::GET, "/v2/_catalog")).await;
    assert_eq!(catalog["repositories"], json!([]), "{catalog}");
    let catalog: Value = json(r.acme(Method::GET, "/v2/_catalog")).await;
    assert_eq!(catalog["repositories"], json!([repo]), "{catalog}");
    // Mounting acme's blob into globex starts an upload instead (202): the
    // digest is unknown there.
    let mount = send(r.globex(
        Method::POST,
        &format!("/v2/other/blobs/uploads/?mount={config_digest}&from={repo}"),
    ))
    .await;
    assert_eq!(
        mount.status(),
        202,
        "a mount across tenants must not succeed"
    );
    let location = mount.headers()["location"].to_str().unwrap().to_string();
    let cancel = send(r.globex(Method::DELETE, &location)).await;
    assert_eq!(cancel.status(), 204);
    let listed: Value = json(r.globex(
        Method::GET,
        &format!("/v2/{repo}/referrers/{manifest_digest}"),
    ))
    .await;
    assert_eq!(listed["manifests"], json!([]), "{listed}");

    // acme's quota (20000 bytes): a blob that fits, then one that does not.
    let fits = random_bytes(15000);
    assert_eq!(
        push_blob(r.acme(Method::POST, &uploads), &fits)
            .await
            .status(),
        201
    );
    let too_big = random_bytes(8000);
    let refused = push_blob(r.acme(Method::POST, &uploads), &too_big).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("quota"),
        "{body}"
    );
    let head = send(r.acme(
        Method::HEAD,
        &format!("/v2/{repo}/blobs/{}", sha256_digest(&too_big)),
    ))
    .await;
    assert_eq!(head.status(), 404, "a refused push stores nothing");
    let hex = sha256_digest(&too_big)
        .trim_start_matches("sha256:")
        .to_string();
    let stored = r._dir.path().join(format!(
        "acme/docker/registry/v2/blobs/sha256/{}/{hex}",
        &hex[..2]
    ));
    assert!(!stored.exists(), "no blob file for a refused push");
    // Chunked: the first chunk fits; the one that would pass the quota is
    // refused as it arrives.
    let chunked = random_bytes(6000);
    let started = send(r.acme(Method::POST, &uploads)).await;
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let patched = send(
        r.acme(Method::PATCH, &location)
            .header("content-range", "0-2999")
            .body(chunked[..3000].to_vec()),
    )
    .await;
    assert_eq!(patched.status(), 202);
    let location = patched.headers()["location"].to_str().unwrap().to_string();
    let refused = send(
        r.acme(Method::PATCH, &location)
            .header("content-range", "3000-5999")
            .body(chunked[3000..].to_vec()),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("storage quota"),
        "{body}"
    );
    // The session holds what fitted; cancelling it frees its bytes.
    assert_eq!(send(r.acme(Method::DELETE, &location)).await.status(), 204);
    assert_eq!(send(r.acme(Method::GET, &location)).await.status(), 404);

    // The same push fits in globex, which has no quota.
    assert_eq!(
        push_blob(r.globex(Method::POST, &uploads), &too_big)
            .await
            .status(),
        201
    );

    // globex allows two open upload sessions.
    let first = send(r.globex(Method::POST, &uploads)).await;
    assert_eq!(first.status(), 202);
    let second = send(r.globex(Method::POST, &uploads)).await;
    assert_eq!(second.status(), 202);
    let third = send(r.globex(Method::POST, &uploads)).await;
    assert_eq!(third.status(), 403);
    assert_eq!(error_code(third).await, "DENIED");
    // acme is not limited by globex's sessions.
    assert_eq!(send(r.acme(Method::POST, &uploads)).await.status(), 202);
    // Ending one frees a slot.
    let location = first.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        send(r.globex(Method::DELETE, &location)).await.status(),
        204
    );
    assert_eq!(send(r.globex(Method::POST, &uploads)).await.status(), 202);
}
