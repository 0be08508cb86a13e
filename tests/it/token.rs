//! `auth.token` (issue 18): Docker's token authentication, decided by the
//! host. A real Docker engine logs in, pushes and pulls through a token
//! server written for these tests (`support/token_server.rs`); a pull-only
//! grant cannot push; and every answer to a token, good or bad, is checked
//! beside Debian's `docker-registry` (registry:2) configured alike, which
//! also checks that Wharf names the bundle's key as registry:2 does.

use crate::support::Served;
use crate::support::distribution::Distribution;
use crate::support::dockerd::{Dockerd, show};
use crate::support::token_server::{ISSUER, Signer, TokenServer, claims, repository, tampered};
use crate::support::{self, http, token_server};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;

const SERVICE: &str = "wharf-token-test";

/// Wharf with token authentication, configured by `REGISTRY_*` variables
/// as a registry:2 compose file would.
fn wharf(realm: &str, bundle: &Path, data: &Path) -> Served {
    Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.to_str().unwrap(),
            ),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", realm),
            ("REGISTRY_AUTH_TOKEN_SERVICE", SERVICE),
            ("REGISTRY_AUTH_TOKEN_ISSUER", ISSUER),
            (
                "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
                bundle.to_str().unwrap(),
            ),
        ],
    )
}

#[test]
fn docker_logs_in_pushes_and_pulls_through_the_token_server() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate(dir.path(), "token-signer");
    let bundle = signer.certificate.clone();
    let tokens = TokenServer::start(
        signer,
        vec![
            (
                "alice",
                "alice-secret",
                vec![("team/app", vec!["pull", "push", "delete"])],
            ),
            ("bob", "bob-secret", vec![("team/app", vec!["pull"])]),
        ],
    );
    let data = dir.path().join("data");
    let registry = wharf(&tokens.realm(), &bundle, &data);
    let host = format!("127.0.0.1:{}", registry.addr().port());
    let docker = Dockerd::start();
    let image = format!("{host}/team/app:v1");
    let id = docker.import_random(dir.path(), &image, &[4096, 300_000]);

    // No token: Docker is sent to the token server, which will not issue
    // one without credentials.
    let out = docker.docker(&["push", &image]);
    assert!(
        !out.status.success(),
        "pushed without login:\n{}",
        show(&out)
    );
    let wrong = docker.docker(&["login", &host, "-u", "alice", "-p", "not-it"]);
    assert!(!wrong.status.success(), "{}", show(&wrong));

    let login = docker.docker_ok(&["login", &host, "-u", "alice", "-p", "alice-secret"]);
    assert!(login.contains("Login Succeeded"), "{login}");
    docker.docker_ok(&["push", &image]);
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);
    let pulled = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(pulled.trim(), id);

    // Bob may pull, not push.
    docker.docker_ok(&["logout", &host]);
    docker.docker_ok(&["login", &host, "-u", "bob", "-p", "bob-secret"]);
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);
    let other = format!("{host}/team/app:bob");
    docker.docker_ok(&["tag", &image, &other]);
    let refused = docker.docker(&["push", &other]);
    let text = show(&refused);
    assert!(!refused.status.success(), "bob pushed:\n{text}");
    assert!(
        text.contains("denied")
            || text.contains("unauthorized")
            || text.contains("authentication required"),
        "{text}"
    );
    let tags = http::send(
        registry.addr(),
        "GET",
        "/v2/team/app/tags/list",
        &[(
            "Authorization",
            &format!(
                "Bearer {}",
                tokens.sign(&claims(SERVICE, "check", repository("team/app", &["pull"])))
            ),
        )],
        b"",
    );
    assert_eq!(tags.status, 200, "{}", String::from_utf8_lossy(&tags.body));
    let listed: serde_json::Value = serde_json::from_slice(&tags.body).unwrap();
    assert_eq!(listed["tags"], json!(["v1"]), "bob's push left a tag");
    assert!(
        registry
            .stderr()
            .contains("user=\"alice\" method=PUT path=/v2/team/app/manifests/v1"),
        "the access log names the token's subject as the user:\n{}",
        support::tail(&registry.stderr(), 20)
    );
}

/// A reply's status and challenge, the challenge's scope actions sorted
/// (registry:2 lists them in map order).
fn answer(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|a| ("Authorization", a.as_str()))
        .collect();
    let reply = http::send(addr, method, path, &headers, b"");
    let challenge = reply
        .header("www-authenticate")
        .map(sorted_scope)
        .unwrap_or_default();
    (reply.status, challenge)
}

fn sorted_scope(challenge: &str) -> String {
    let Some(start) = challenge.find("scope=\"") else {
        return challenge.to_string();
    };
    let rest = &challenge[start + 7..];
    let end = rest.find('"').unwrap();
    let scope = &rest[..end];
    let (resource, actions) = scope.rsplit_once(':').unwrap();
    let mut actions: Vec<&str> = actions.split(',').collect();
    actions.sort();
    format!(
        "{}scope=\"{resource}:{}\"{}",
        &challenge[..start],
        actions.join(","),
        &rest[end + 1..]
    )
}

#[test]
fn every_answer_to_a_token_is_registry_2s() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate(dir.path(), "token-signer");
    let stranger = Signer::generate(dir.path(), "stranger");
    let realm = "http://127.0.0.1:9/token";
    let served = wharf(realm, &signer.certificate, &dir.path().join("wharf-data"));
    let reference_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let reference_dir = dir.path().join("reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let _reference = Distribution::start_with(
        &reference_dir,
        &dir.path().join("reference-data"),
        reference_addr,
        &format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            signer.certificate.display()
        ),
    );

    let token = |access: serde_json::Value| signer.sign(&claims(SERVICE, "alice", access));
    let pull = token(repository("team/app", &["pull"]));
    let push = token(repository("team/app", &["pull", "push"]));
    let catalog = token(json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]));
    let expired = signer.sign(&{
        let mut c = claims(SERVICE, "alice", repository("team/app", &["pull"]));
        c["exp"] = json!(token_server::now() - 3600);
        c
    });
    let elsewhere = signer.sign(&claims(
        "another-registry",
        "alice",
        repository("team/app", &["pull"]),
    ));
    let untrusted = stranger.sign(&claims(SERVICE, "alice", repository("team/app", &["pull"])));
    let forged = tampered(&pull, |c| {
        c["access"] = repository("team/app", &["pull", "push", "delete"]);
    });
    let digest = format!("sha256:{}", "0".repeat(64));
    let manifest = format!("/v2/team/app/manifests/{digest}");

    let base = format!(r#"Bearer realm="{realm}",service="{SERVICE}""#);
    let scoped = |scope: &str, error: Option<&str>| {
        let mut c = format!(r#"{base},scope="{scope}""#);
        if let Some(e) = error {
            c.push_str(&format!(r#",error="{e}""#));
        }
        c
    };
    // (method, path, token, status, challenge): the same from both.
    let cases: Vec<(&str, &str, Option<&str>, u16, String)> = vec![
        ("GET", "/v2/", None, 401, base.clone()),
        ("GET", "/v2/", Some(&pull), 200, String::new()),
        (
            "GET",
            "/v2/team/app/tags/list",
            None,
            401,
            scoped("repository:team/app:pull", None),
        ),
        (
            "GET",
            "/v2/team/app/tags/list",
            Some(&pull),
            404,
            String::new(),
        ),
        (
            "GET",
            "/v2/team/other/tags/list",
            Some(&pull),
            401,
            scoped("repository:team/other:pull", Some("insufficient_scope")),
        ),
        (
            "POST",
            "/v2/team/app/blobs/uploads/",
            Some(&pull),
            401,
            scoped("repository:team/app:pull,push", Some("insufficient_scope")),
        ),
        (
            "POST",
            "/v2/team/app/blobs/uploads/",
            Some(&push),
            202,
            String::new(),
        ),
        (
            "DELETE",
            &manifest,
            Some(&push),
            401,
            scoped("repository:team/app:delete", Some("insufficient_scope")),
        ),
        (
            "GET",
            "/v2/_catalog",
            Some(&pull),
            401,
            scoped("registry:catalog:*", Some("insufficient_scope")),
        ),
        ("GET", "/v2/_catalog", Some(&catalog), 200, String::new()),
    ];
    for (method, path, token, status, challenge) in &cases {
        for (who, addr) in [("wharf", served.addr()), ("registry:2", reference_addr)] {
            let (got, header) = answer(addr, method, path, *token);
            assert_eq!(
                (got, header.as_str()),
                (*status, challenge.as_str()),
                "{who}: {method} {path} with {}",
                if token.is_some() {
                    "a token"
                } else {
                    "no token"
                }
            );
        }
    }
    // Tokens that prove nothing: 401 from both, sent back to the realm.
    // (registry:2 adds the request's scope, and names no error for a bad
    // signature; Wharf answers before the request is routed: invalid_token.)
    for (what, bad) in [
        ("expired", &expired),
        ("for another service", &elsewhere),
        ("signed by an untrusted key", &untrusted),
        ("tampered with", &forged),
    ] {
        for path in ["/v2/", "/v2/team/app/tags/list"] {
            let (status, header) = answer(reference_addr, "GET", path, Some(bad));
            assert_eq!(status, 401, "registry:2, a token {what}: {header}");
            assert!(header.starts_with(&base), "registry:2: {header}");
            let (status, header) = answer(served.addr(), "GET", path, Some(bad));
            assert_eq!(
                (status, header),
                (401, format!(r#"{base},error="invalid_token""#)),
                "wharf, a token {what}"
            );
        }
    }
    let log = served.stderr();
    for why in [
        "ExpiredSignature",
        "InvalidAudience",
        "untrusted key",
        "InvalidSignature",
    ] {
        assert!(
            log.contains(why),
            "the log says why a token was refused ({why}):\n{}",
            support::tail(&log, 30)
        );
    }
}
