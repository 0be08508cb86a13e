//! Issue #5 end to end with a real Docker engine: Wharf configured as the
//! registry:2 compose file configures it (TLS + htpasswd, by `REGISTRY_*`
//! variables), a certificate made by `wharf cert` trusted through Docker's
//! `certs.d`, users from `wharf htpasswd` and Apache's `htpasswd -Bbn`.
//!
//! Docker treats every registry whose name resolves into 127.0.0.0/8 as
//! insecure: it skips certificate checks there and falls back to plain
//! HTTP. To test real trust, the private dockerd runs in its own mount
//! namespace, where `/etc/hosts` maps `wharf-e2e.test` to `::1` only (still
//! loopback, but outside 127.0.0.0/8) and `/etc/docker/certs.d` is the test's
//! own directory. No file of the machine is changed.

use crate::support::dockerd::{Dockerd, show};
use crate::support::{Served, random_bytes, wharf_run};
use std::process::Command;

const HOST: &str = "wharf-e2e.test";

#[test]
fn docker_login_push_pull_over_tls_with_htpasswd() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let s = |name: &str| path(name).to_str().unwrap().to_string();

    // The certificate and the users, made by the tools the README shows.
    let out = wharf_run(&["cert", "--host", HOST, "--out", &s("certs")], &[], "");
    assert!(out.status.success(), "wharf cert: {out:?}");
    let alice = wharf_run(
        &["htpasswd", "alice", "--password-stdin"],
        &[],
        "alice-secret\n",
    );
    assert!(alice.status.success(), "wharf htpasswd: {alice:?}");
    let bob = Command::new("htpasswd")
        .args(["-Bbn", "bob", "bob-secret"])
        .output()
        .expect("Apache's htpasswd is needed: apt-get install apache2-utils (tests/install does)");
    assert!(bob.status.success(), "htpasswd -Bbn: {}", show(&bob));
    let mut htpasswd = alice.stdout;
    htpasswd.extend_from_slice(&bob.stdout);
    std::fs::write(path("htpasswd"), htpasswd).unwrap();
    std::fs::create_dir(path("data")).unwrap();

    let wharf = Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "[::1]:0"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &s("data")),
            (
                "REGISTRY_HTTP_TLS_CERTIFICATE",
                &s(&format!("certs/{HOST}.pem")),
            ),
            (
                "REGISTRY_HTTP_TLS_KEY",
                &s(&format!("certs/{HOST}-key.pem")),
            ),
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", &s("htpasswd")),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
        ],
    );
    let registry = format!("{HOST}:{}", wharf.addr().port());

    // dockerd's private view of /etc: the name, and certs.d (empty for now).
    std::fs::write(path("hosts"), format!("127.0.0.1 localhost\n::1 {HOST}\n")).unwrap();
    let certs_d = path("etc-docker/certs.d").join(&registry);
    std::fs::create_dir_all(&certs_d).unwrap();
    let docker = Dockerd::start_with_private_etc(&path("hosts"), &path("etc-docker"));

    // Not trusted yet: Docker checks the certificate (no insecure fallback).
    let untrusted = docker.docker(&["login", &registry, "-u", "alice", "-p", "alice-secret"]);
    assert!(
        !untrusted.status.success(),
        "login without trusting the CA:\n{}",
        show(&untrusted)
    );
    let text = show(&untrusted);
    assert!(
        text.contains("certificate") && !text.contains("http://"),
        "expected a certificate error over https only:\n{text}"
    );
    std::fs::copy(path("certs/ca.crt"), certs_d.join("ca.crt")).unwrap();

    // An image of random content.
    let content = path("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("blob.bin"), random_bytes(1024 * 1024 + 3)).unwrap();
    let tarball = path("image.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&content)
        .arg("blob.bin")
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "tar: {}", show(&tar));
    let image = format!("{registry}/e2e/secure:v1");
    docker.docker_ok(&["import", tarball.to_str().unwrap(), &image]);

    // Push without login: refused, asking for credentials.
    let anonymous = docker.docker(&["push", &image]);
    assert!(
        !anonymous.status.success(),
        "pushed without login:\n{}",
        show(&anonymous)
    );
    let text = show(&anonymous);
    assert!(
        text.contains("no basic auth credentials") || text.contains("unauthorized"),
        "push without login did not ask for credentials:\n{text}"
    );

    // A wrong password is refused.
    let wrong = docker.docker(&["login", &registry, "-u", "alice", "-p", "not-it"]);
    assert!(
        !wrong.status.success(),
        "wrong password accepted:\n{}",
        show(&wrong)
    );
    assert!(
        show(&wrong).contains("401 Unauthorized"),
        "{}",
        show(&wrong)
    );

    // `wharf htpasswd`'s user logs in, pushes and pulls.
    let login = docker.docker_ok(&["login", &registry, "-u", "alice", "-p", "alice-secret"]);
    assert!(login.contains("Login Succeeded"), "{login}");
    let pushed = docker.docker_ok(&["push", &image]);
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    let id = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);
    let pulled = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(id.trim(), pulled.trim(), "pulled another image");

    // Apache's user too.
    docker.docker_ok(&["logout", &registry]);
    let login = docker.docker_ok(&["login", &registry, "-u", "bob", "-p", "bob-secret"]);
    assert!(login.contains("Login Succeeded"), "{login}");
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);

    // The server saw TLS only and refused the anonymous and wrong attempts.
    let log = wharf.stderr();
    assert!(log.contains("authentication failed"), "{log}");
}
