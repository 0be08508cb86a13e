//! Access is the host's to give: a component that never asks what the
//! caller may do and calls the capabilities directly (the `escalate` route
//! of `tests/components/misbehave`) gets nothing the caller does not hold,
//! and nothing on disk changes. The real component, asked the same things
//! over HTTP by the same callers, answers as it always has.

use crate::support::components;
use crate::support::{Caller, Served, sha256_digest, wharf_run};
use reqwest::{Client, Method};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CONFIG: &str = "
http:
  addr: 127.0.0.1:0
storage:
  filesystem:
    rootdirectory: ROOT
  delete:
    enabled: true
auth:
  htpasswd:
    realm: wharf
    path: HTPASSWD
";

const USER: (&str, &str) = ("alice", "alice-secret");

fn start(dir: &Path, component: Option<&Path>) -> Served {
    let config = dir.join("config.yml");
    let text = CONFIG
        .replace("ROOT", dir.join("data").to_str().unwrap())
        .replace("HTPASSWD", dir.join("htpasswd").to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let mut args = vec![config.to_str().unwrap().to_string()];
    if let Some(component) = component {
        args.extend(["--component".into(), component.to_str().unwrap().into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Served::start(&args, &[])
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// What team/b holds, for the attempts to aim at.
struct Targets {
    blob: String,
    manifest: String,
    session: String,
}

async fn fill(alice: &Caller) -> Targets {
    let blob = b"team b's layer".to_vec();
    let digest = sha256_digest(&blob);
    let put = alice
        .request(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?digest={digest}"),
        )
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let config = sha256_digest(b"{}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{}}}]}}"#,
        blob.len()
    );
    let manifest_digest = sha256_digest(manifest.as_bytes());
    // team/a holds a manifest of its own, not team/b's.
    let public = manifest.replacen('{', r#"{"annotations":{"team":"a"},"#, 1);
    for (repo, reference, body) in [("team/b", "v1", &manifest), ("team/a", "public", &public)] {
        let put = alice
            .request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{repo}");
    }
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{}}}}}"#,
        manifest.len()
    );
    let put = alice
        .request(
            Method::PUT,
            &format!(
                "/v2/team/b/manifests/{}",
                sha256_digest(referrer.as_bytes())
            ),
        )
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(referrer)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let started = alice
        .request(Method::POST, "/v2/team/b/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    Targets {
        blob: digest,
        manifest: manifest_digest,
        session: location.rsplit('/').next().unwrap().to_string(),
    }
}

/// The component's report: attempt → outcome.
async fn escalate(caller: &Caller, t: &Targets) -> BTreeMap<String, String> {
    let path = format!(
        "/v2/__misbehave/escalate?a=team/a&b=team/b&blob={}&manifest={}&tag=v1&session={}",
        t.blob, t.manifest, t.session
    );
    let response = caller.request(Method::GET, &path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| {
            let (what, outcome) = l.split_once(' ').unwrap();
            (what.to_string(), outcome.to_string())
        })
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_skips_authorization_gets_only_what_the_caller_holds() {
    let dir = tempfile::tempdir().unwrap();
    let entry = wharf_run(
        &["htpasswd", USER.0, "--password-stdin"],
        &[],
        &format!("{}\n", USER.1),
    );
    assert!(entry.status.success(), "wharf htpasswd: {entry:?}");
    std::fs::write(dir.path().join("htpasswd"), entry.stdout).unwrap();
    let hostile = components::misbehave();
    let served = start(dir.path(), Some(&hostile));
    let base = format!("http://{}", served.addr());
    let caller = |user| Caller {
        client: Client::new(),
        base: base.clone(),
        user,
    };
    let (alice, anonymous) = (caller(Some(USER)), caller(None));
    let targets = fill(&alice).await;
    let data = dir.path().join("data");
    let before = snapshot(&data);

    // Anonymous: the host opens nothing, whatever the component asks for.
    let opens = [
        "open-a-pull",
        "open-a-push",
        "open-a-delete",
        "open-b-pull",
        "open-b-push",
        "open-b-delete",
        "open-catalog",
    ];
    let mut want: Vec<(&str, &str)> = opens.iter().map(|o| (*o, "challenged")).collect();
    want.push(("open-traversal", "invalid"));
    assert_eq!(escalate(&anonymous, &targets).await, expect(&want));

    // Alice may do anything, but a handle the component opened for pull
    // alone can only pull, and only what its own repository holds.
    let mut want: Vec<(&str, &str)> = opens.iter().map(|o| (*o, "granted")).collect();
    want.extend([
        ("open-traversal", "invalid"),
        ("push-manifest", "denied"),
        ("start-upload", "denied"),
        ("open-b-session", "denied"),
        ("mount-b-blob", "denied"),
        ("mount-b-blob-from-self", "denied"),
        ("stat-b-blob", "nothing"),
        ("read-b-blob", "nothing"),
        ("b-manifest-by-digest", "nothing"),
        ("b-manifest-by-tag", "nothing"),
        ("b-referrers", "nothing"),
        ("delete-manifest", "denied"),
        ("delete-tag", "denied"),
        ("unlink-blob", "denied"),
    ]);
    assert_eq!(escalate(&alice, &targets).await, expect(&want));
    assert!(
        snapshot(&data) == before,
        "the attempts changed what is stored"
    );
    drop(served);

    // The real component, asked over HTTP by an anonymous caller: 401 for
    // every one of the same things, and still nothing changes.
    let served = start(dir.path(), None);
    let anonymous = Caller {
        base: format!("http://{}", served.addr()),
        ..anonymous
    };
    let t = &targets;
    let attempts = [
        (Method::PUT, "/v2/team/a/manifests/evil".to_string()),
        (Method::POST, "/v2/team/a/blobs/uploads/".into()),
        (
            Method::PATCH,
            format!("/v2/team/b/blobs/uploads/{}", t.session),
        ),
        (
            Method::POST,
            format!("/v2/team/a/blobs/uploads/?mount={}&from=team/b", t.blob),
        ),
        (
            Method::POST,
            format!("/v2/team/a/blobs/uploads/?mount={}", t.blob),
        ),
        (Method::GET, format!("/v2/team/b/blobs/{}", t.blob)),
        (Method::HEAD, format!("/v2/team/b/blobs/{}", t.blob)),
        (Method::GET, format!("/v2/team/b/manifests/{}", t.manifest)),
        (Method::GET, "/v2/team/b/manifests/v1".into()),
        (Method::GET, format!("/v2/team/b/referrers/{}", t.manifest)),
        (Method::GET, "/v2/_catalog".into()),
        (
            Method::DELETE,
            format!("/v2/team/b/manifests/{}", t.manifest),
        ),
        (Method::DELETE, "/v2/team/b/manifests/v1".into()),
        (Method::DELETE, format!("/v2/team/b/blobs/{}", t.blob)),
    ];
    for (method, path) in &attempts {
        let response = anonymous
            .request(method.clone(), path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
    }
    assert!(
        snapshot(&data) == before,
        "the attempts changed what is stored"
    );
    // And alice still gets team/b's manifest through the real component.
    let alice = Caller {
        base: format!("http://{}", served.addr()),
        ..alice
    };
    let got = alice
        .request(Method::GET, "/v2/team/b/manifests/v1")
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["docker-content-digest"].to_str().unwrap(),
        targets.manifest
    );
}
