//! `auth.access` (issue 18): the host decides who may pull, push or delete
//! which repositories, with rules of users, groups and anonymous access
//! over repository globs; default deny. A denied caller who signed in gets
//! 403 DENIED, one who did not a 401 challenge; the catalog lists only
//! what the caller may pull; a mount needs pull on the source; a malformed
//! rule stops the start with its line.

use crate::support::{Caller, Served, sha256_digest, wharf_run};
use reqwest::{Client, Method, StatusCode};
use std::path::Path;

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
  access:
    groups:
      developers: [alice, bob]
    rules:
      - repositories: [team-a/**]
        groups: [developers]
        actions: [pull, push, delete]
      - repositories: [team-a/**]
        users: [carol]
        actions: [pull]
      - repositories: [team-b/**]
        users: [dave]
        actions: [pull, push]
      - repositories: [public/**]
        users: [alice]
        actions: [push]
      - repositories: [public/**]
        anonymous: true
        actions: [pull]
";

const USERS: [(&str, &str); 4] = [
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("dave", "dave-pw"),
];

fn write_config(dir: &Path, text: &str) -> String {
    let mut htpasswd = Vec::new();
    for (user, password) in USERS {
        let entry = wharf_run(&["htpasswd", user, "--password-stdin"], &[], password);
        assert!(entry.status.success(), "wharf htpasswd: {entry:?}");
        htpasswd.extend(entry.stdout);
    }
    std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
    let config = dir.join("config.yml");
    let text = text
        .replace("ROOT", dir.join("data").to_str().unwrap())
        .replace("HTPASSWD", dir.join("htpasswd").to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    config.to_str().unwrap().to_string()
}

/// A caller of `served`, signed in as one of USERS or not at all.
fn caller(served: &Served, user: Option<&'static str>) -> Caller {
    Caller::new(
        format!("http://{}", served.addr()),
        user.map(|u| *USERS.iter().find(|(name, _)| *name == u).unwrap()),
    )
}

impl Caller {
    /// Push `blob` to `repository` monolithically: the status of the step
    /// that failed, or of the PUT.
    async fn push_blob(&self, repository: &str, blob: &[u8]) -> StatusCode {
        let started = self
            .request(Method::POST, &format!("/v2/{repository}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        if started.status() != StatusCode::ACCEPTED {
            return started.status();
        }
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        self.request(
            Method::PUT,
            &format!("{location}{sep}digest={}", sha256_digest(blob)),
        )
        .body(blob.to_vec())
        .send()
        .await
        .unwrap()
        .status()
    }

    /// Push an image manifest of one layer under `tag`: its status.
    async fn push_manifest(&self, repository: &str, tag: &str, layer: &str) -> StatusCode {
        self.request(Method::PUT, &format!("/v2/{repository}/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest(layer))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn status(&self, method: Method, path: &str) -> StatusCode {
        self.request(method, path).send().await.unwrap().status()
    }

    async fn catalog(&self) -> Vec<String> {
        let answer = self
            .request(Method::GET, "/v2/_catalog")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    }
}

fn manifest(layer: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": layer, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 1}],
    }))
    .unwrap()
}

#[tokio::test]
async fn rules_decide_who_may_pull_push_and_delete_which_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&[&write_config(dir.path(), CONFIG)], &[]);
    let [alice, bob, carol, dave] =
        ["alice", "bob", "carol", "dave"].map(|u| caller(&served, Some(u)));
    let anonymous = caller(&served, None);
    let layer = b"x";
    let digest = sha256_digest(layer);

    // A group's members push; a reader of the same repositories may not.
    assert_eq!(alice.push_blob("team-a/app", layer).await, 201);
    assert_eq!(alice.push_manifest("team-a/app", "v1", &digest).await, 201);
    assert_eq!(bob.push_manifest("team-a/app", "v2", &digest).await, 201);
    assert_eq!(
        carol
            .status(Method::GET, "/v2/team-a/app/manifests/v1")
            .await,
        200
    );
    assert_eq!(carol.push_blob("team-a/app", b"carol's").await, 403);
    assert_eq!(carol.push_manifest("team-a/app", "v3", &digest).await, 403);
    let denied = carol
        .request(Method::POST, "/v2/team-a/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");

    // Outside their rules, nobody pushes; default deny.
    assert_eq!(alice.push_blob("team-b/api", layer).await, 403);
    assert_eq!(dave.push_blob("team-b/api", layer).await, 201);
    assert_eq!(dave.push_manifest("team-b/api", "v1", &digest).await, 201);
    assert_eq!(
        dave.status(Method::GET, "/v2/team-a/app/manifests/v1")
            .await,
        403
    );
    assert_eq!(
        alice
            .status(Method::GET, "/v2/team-b/api/manifests/v1")
            .await,
        403
    );
    assert_eq!(carol.push_blob("elsewhere/x", layer).await, 403);

    // Public pull: anyone, without credentials too; private repositories
    // ask callers without credentials to sign in.
    assert_eq!(alice.push_blob("public/tools", layer).await, 201);
    assert_eq!(
        alice.push_manifest("public/tools", "latest", &digest).await,
        201
    );
    assert_eq!(
        anonymous
            .status(Method::GET, "/v2/public/tools/manifests/latest")
            .await,
        200
    );
    assert_eq!(
        dave.status(Method::GET, "/v2/public/tools/manifests/latest")
            .await,
        200
    );
    assert_eq!(anonymous.push_blob("public/tools", b"anon").await, 401);
    let challenged = anonymous
        .request(Method::GET, "/v2/team-a/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(challenged.status(), 401);
    assert_eq!(
        challenged.headers()["www-authenticate"],
        "Basic realm=\"wharf\""
    );

    // The catalog lists what the caller may pull.
    assert_eq!(carol.catalog().await, ["public/tools", "team-a/app"]);
    assert_eq!(dave.catalog().await, ["public/tools", "team-b/api"]);
    assert_eq!(alice.catalog().await, ["public/tools", "team-a/app"]);

    // A mount needs pull on the source: dave cannot take team-a's blob
    // (he gets an upload session instead, as the spec says), alice can.
    let other = b"only in team-a";
    let other_digest = sha256_digest(other);
    assert_eq!(alice.push_blob("team-a/app", other).await, 201);
    let mount = |caller: &Caller, to: &str| {
        caller.request(
            Method::POST,
            &format!("/v2/{to}/blobs/uploads/?mount={other_digest}&from=team-a/app"),
        )
    };
    assert_eq!(
        mount(&dave, "team-b/api").send().await.unwrap().status(),
        202
    );
    assert_eq!(
        dave.status(
            Method::HEAD,
            &format!("/v2/team-b/api/blobs/{other_digest}")
        )
        .await,
        404
    );
    assert_eq!(
        mount(&alice, "public/tools").send().await.unwrap().status(),
        201
    );

    // Deletes: only those the rules give delete to.
    let manifest_digest = sha256_digest(&manifest(&digest));
    let path = format!("/v2/team-a/app/manifests/{manifest_digest}");
    assert_eq!(carol.status(Method::DELETE, &path).await, 403);
    assert_eq!(
        dave.status(Method::DELETE, "/v2/team-b/api/manifests/v1")
            .await,
        403
    );
    assert_eq!(bob.status(Method::DELETE, &path).await, 202);
    assert_eq!(
        carol
            .status(Method::GET, "/v2/team-a/app/manifests/v1")
            .await,
        404
    );
}

#[test]
fn a_malformed_rule_stops_the_start_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, says) in [
        ("[public/**]", "Public/**"),
        ("[pull, push, delete]", "unknown action \"remove\""),
        ("groups: [developers]", "group \"devs\" is not defined"),
    ] {
        let broken = match bad {
            "[public/**]" => CONFIG.replacen("[public/**]", "[Public/**]", 1),
            "[pull, push, delete]" => CONFIG.replace(bad, "[pull, remove]"),
            _ => CONFIG.replace(bad, "groups: [devs]"),
        };
        let config = write_config(dir.path(), &broken);
        let out = wharf_run(&["serve", &config], &[], "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "started with {bad} changed: {stderr}"
        );
        assert!(
            stderr.contains(says) && stderr.contains("line "),
            "{stderr}"
        );
    }
}

/// Replace the configuration file as an editor would: a new file renamed
/// over the old one.
fn rewrite(config: &str, text: &str, dir: &Path) {
    let text = text
        .replace("ROOT", dir.join("data").to_str().unwrap())
        .replace("HTPASSWD", dir.join("htpasswd").to_str().unwrap());
    let staged = format!("{config}.new");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, config).unwrap();
}

#[tokio::test]
async fn rules_reload_when_the_file_changes_and_a_broken_file_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);
    let served = Served::start(&[&config], &[]);
    let carol = caller(&served, Some("carol"));
    assert_eq!(carol.push_blob("team-a/app", b"one").await, 403);

    let carol_pushes = CONFIG.replace(
        "users: [carol]\n        actions: [pull]",
        "users: [carol]\n        actions: [pull, push]",
    );
    rewrite(&config, &carol_pushes, dir.path());
    assert_eq!(carol.push_blob("team-a/app", b"two").await, 201);

    // A broken new version: logged, and the rules in force stay.
    rewrite(
        &config,
        &carol_pushes.replace("[team-b/**]", "[Team-B]"),
        dir.path(),
    );
    assert_eq!(carol.push_blob("team-a/app", b"three").await, 201);
    assert_eq!(carol.push_blob("team-b/api", b"three").await, 403);
    assert!(
        served.stderr().contains("access rules cannot be used"),
        "{}",
        served.stderr()
    );

    // Without `auth.access`, every signed-in user may do everything again.
    let open = &CONFIG[..CONFIG.find("  access:").unwrap()];
    rewrite(&config, open, dir.path());
    assert_eq!(carol.push_blob("team-b/api", b"four").await, 201);
}

#[tokio::test]
async fn each_tenant_has_its_own_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, CONFIG); // the htpasswd file of USERS
    let htpasswd = d.join("htpasswd");
    let config = format!(
        "http:\n  addr: 127.0.0.1:0\n\
         tenants:\n\
         \x20 - name: acme\n\
         \x20   hosts: [acme.localhost]\n\
         \x20   storage: {{ filesystem: {{ rootdirectory: {root}/acme }} }}\n\
         \x20   auth:\n\
         \x20     htpasswd: {{ realm: acme, path: {htpasswd} }}\n\
         \x20     access:\n\
         \x20       rules:\n\
         \x20         - {{ repositories: [\"**\"], users: [\"*\"], actions: [pull] }}\n\
         \x20 - name: globex\n\
         \x20   hosts: [globex.localhost]\n\
         \x20   storage: {{ filesystem: {{ rootdirectory: {root}/globex }} }}\n\
         \x20   auth: {{ htpasswd: {{ realm: globex, path: {htpasswd} }} }}\n",
        root = d.display(),
        htpasswd = htpasswd.display(),
    );
    let path = d.join("tenants.yml");
    std::fs::write(&path, config).unwrap();
    let served = Served::start(&[path.to_str().unwrap()], &[]);
    let post = |host: &str| {
        Client::new()
            .post(format!("http://{}/v2/app/blobs/uploads/", served.addr()))
            .header("host", format!("{host}:{}", served.addr().port()))
            .basic_auth("alice", Some("alice-pw"))
            .send()
    };
    assert_eq!(post("acme.localhost").await.unwrap().status(), 403);
    assert_eq!(post("globex.localhost").await.unwrap().status(), 202);
}
