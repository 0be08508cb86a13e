//! The container image (issue #15), deployed the way registry:2 is: built
//! by `scripts/image` into a private dockerd, run from the README's compose
//! file with Debian's `docker-compose` (host networking: that dockerd has
//! no bridge), TLS and htpasswd from files mounted as registry:2's compose
//! file mounts them; `docker login`, push and pull; `docker-compose down`
//! and `up` keep the data; `docker stop` ends it with exit code 0 well
//! within its timeout; the image's health check, volume, port and size;
//! `/etc/docker/registry/config.yml` read when mounted.
//!
//! One test with sequential steps: they share one dockerd and one image.
//! Building the image compiles a static `wharf` with the `image-test`
//! profile (release, optimised less; set WHARF_IMAGE_TARGET_DIR to reuse a
//! target directory).

use crate::support::dockerd::{Dockerd, show};
use crate::support::http;
use crate::support::{htpasswd_file, localhost_certs};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed\n{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The compose file of the README, with the image swapped for Wharf's and
/// host networking on a free port instead of `ports: ["5000:5000"]`.
fn compose_file(dir: &Path, port: u16) -> PathBuf {
    let text = format!(
        r#"services:
  registry:
    restart: always
    image: wharf:latest
    network_mode: host
    environment:
      REGISTRY_HTTP_ADDR: 127.0.0.1:{port}
      REGISTRY_HTTP_TLS_CERTIFICATE: /certs/localhost.pem
      REGISTRY_HTTP_TLS_KEY: /certs/localhost-key.pem
      REGISTRY_AUTH: htpasswd
      REGISTRY_AUTH_HTPASSWD_PATH: /auth/htpasswd
      REGISTRY_AUTH_HTPASSWD_REALM: Registry Realm
    volumes: ["{data}:/var/lib/registry", "{certs}:/certs", "{auth}:/auth"]
"#,
        data = dir.join("data").display(),
        certs = dir.join("certs").display(),
        auth = dir.join("auth").display(),
    );
    let path = dir.join("docker-compose.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the registry on `addr` answers TLS (401: it wants a login).
fn wait_serving(addr: SocketAddr, docker: &Dockerd, container: &str) {
    let started = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://{addr}/v2/"))
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout) == "401" {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let logs = docker.docker(&["logs", container]);
            panic!("the container did not serve on {addr}\n{}", show(&logs));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn container_of(docker: &Dockerd, project: &str) -> String {
    let id = docker.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    let id = id.trim().to_string();
    assert!(
        !id.is_empty() && !id.contains('\n'),
        "one container expected: {id:?}"
    );
    id
}

fn image_id(docker: &Dockerd, image: &str) -> String {
    docker
        .docker_ok(&["image", "inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_string()
}

#[test]
fn the_image_runs_from_registry_2s_compose_file() {
    let docker = Dockerd::start();
    let dir = tempfile::Builder::new()
        .prefix("wharf-image-")
        .tempdir()
        .unwrap();
    let dir = dir.path();

    // The image.
    // Optimised less than the release image, to build faster; the same
    // code, target and static linking.
    let built = docker
        .command(&workspace().join("scripts/image"))
        .env("WHARF_IMAGE_PROFILE", "image-test")
        .arg("test")
        .output()
        .expect("run scripts/image");
    ok(built, "scripts/image test");
    let size: u64 = docker
        .docker_ok(&["image", "inspect", "-f", "{{.Size}}", "wharf:latest"])
        .trim()
        .parse()
        .unwrap();
    assert!(size < 64 << 20, "the image is {size} bytes, over 64 MiB");
    assert_eq!(
        image_id(&docker, "wharf:test"),
        image_id(&docker, "wharf:latest")
    );
    let config = docker.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Volumes}} {{json .Config.ExposedPorts}} {{json .Config.Healthcheck.Test}}",
        "wharf:latest",
    ]);
    assert!(config.contains("\"/var/lib/registry\""), "{config}");
    assert!(config.contains("\"5000/tcp\""), "{config}");
    assert!(config.contains("\"health\""), "{config}");

    // registry:2's files: a certificate, an htpasswd file, a data directory.
    for sub in ["data", "certs", "auth"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
    }
    localhost_certs(&dir.join("certs"));
    htpasswd_file(&dir.join("auth/htpasswd"), "alice", "s3cret");

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let compose = compose_file(dir, port);
    let compose_path = compose.to_str().unwrap();
    let project = "wharfimage";
    let compose_cli = Path::new("/usr/bin/docker-compose");
    assert!(
        compose_cli.exists(),
        "docker-compose is missing: apt-get install docker-compose (tests/install does)"
    );
    let up = || {
        ok(
            docker.run_with(
                compose_cli,
                &["-f", compose_path, "-p", project, "up", "-d"],
            ),
            "docker-compose up",
        )
    };
    up();
    let container = container_of(&docker, project);
    wait_serving(addr, &docker, &container);
    // Docker logs in, pushes and pulls over TLS with htpasswd.
    let login = docker.docker(&["login", "-u", "alice", "-p", "s3cret", &addr.to_string()]);
    ok(login, "docker login");
    let image = format!("{addr}/team/app:v1");
    let id = docker.import_random(dir, &image, &[2 << 20]);
    docker.docker_ok(&["push", &image]);
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&docker, &image), id);

    // The health check passes.
    let started = Instant::now();
    loop {
        let health = docker.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &container]);
        if health.trim() == "healthy" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the container is {health:?}, not healthy\n{}",
            docker.docker_ok(&["inspect", "-f", "{{json .State.Health}}", &container])
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // down and up keep the data.
    ok(
        docker.run_with(compose_cli, &["-f", compose_path, "-p", project, "down"]),
        "docker-compose down",
    );
    up();
    let container = container_of(&docker, project);
    wait_serving(addr, &docker, &container);
    docker.docker_ok(&["rmi", &image]);
    docker.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&docker, &image), id);

    // docker stop: SIGTERM, a drained exit 0, well within the 10 s timeout.
    let stopping = Instant::now();
    docker.docker_ok(&["stop", "-t", "10", &container]);
    let took = stopping.elapsed();
    let exit = docker.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &container]);
    assert_eq!(exit.trim(), "0", "docker stop: exit code {exit}");
    assert!(
        took < Duration::from_secs(8),
        "docker stop took {took:?}: SIGTERM was not honoured"
    );
    ok(
        docker.run_with(compose_cli, &["-f", compose_path, "-p", project, "down"]),
        "docker-compose down",
    );

    // /etc/docker/registry/config.yml is read when it is there.
    let other = free_port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!("version: 0.1\nhttp:\n  addr: 127.0.0.1:{other}\nstorage:\n  delete:\n    enabled: true\n"),
    )
    .unwrap();
    let name = "wharf-config-file";
    docker.docker_ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-v",
        &format!("{}:/etc/docker/registry/config.yml:ro", config.display()),
        "-v",
        &format!("{}:/var/lib/registry", dir.join("data").display()),
        "wharf:latest",
    ]);
    let other_addr: SocketAddr = format!("127.0.0.1:{other}").parse().unwrap();
    let started = Instant::now();
    let tags = loop {
        if let Some(reply) = http::request(other_addr, "GET", "/v2/team/app/tags/list", &[], b"") {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the configured address never answered\n{}",
            show(&docker.docker(&["logs", name]))
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(tags.status, 200);
    assert!(String::from_utf8_lossy(&tags.body).contains("v1"));
    docker.docker_ok(&["rm", "-f", name]);
}
