//! Running Wharf the way registry:2 is run (issue #15), through the real
//! binary on 127.0.0.1: the root answers 200, read-only maintenance mode,
//! `http.headers`, absolute `Location` headers behind a proxy, the debug
//! listener's health and Prometheus metrics, a graceful stop that lets an
//! upload in flight finish, JSON logs without access lines, and a port in
//! use said plainly.

use crate::support::http;
use crate::support::http::{Reply, send};
use crate::support::{
    Served, htpasswd_file, localhost_certs, random_bytes, sha256_digest, wharf_run,
};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A data directory and `wharf serve` environment on a free loopback port.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::Builder::new()
                .prefix("wharf-operations-")
                .tempdir()
                .unwrap(),
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `wharf serve` on this data directory with extra variables.
    fn serve(&self, env: &[(&str, &str)]) -> Served {
        let data = self.data();
        let mut all = vec![
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", data.as_str()),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ];
        all.extend_from_slice(env);
        Served::start(&[], &all)
    }

    /// `wharf serve FILE` with `text` as the configuration file.
    fn serve_file(&self, text: &str, env: &[(&str, &str)]) -> Served {
        let path = self.dir.path().join("config.yml");
        std::fs::write(&path, text).unwrap();
        let data = self.data();
        let mut all = vec![("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", data.as_str())];
        all.extend_from_slice(env);
        Served::start(&[path.to_str().unwrap()], &all)
    }
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// Push `data` as a blob of `repo` in one request; its digest.
fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let reply = send(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(reply.status, 201, "{}", text(&reply));
    digest
}

/// Push a one-layer image manifest as `repo:tag`; its digest.
fn push_image(addr: SocketAddr, repo: &str, tag: &str) -> String {
    let config = push_blob(addr, repo, b"{}");
    let layer_data = random_bytes(4096);
    let layer = push_blob(addr, repo, &layer_data);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":4096}}]}}"#
    );
    let reply = send(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", text(&reply));
    sha256_digest(manifest.as_bytes())
}

#[test]
fn the_root_answers_200_as_registry_2s_does() {
    let setup = Setup::new();
    let wharf = setup.serve(&[]);
    let reply = send(wharf.addr(), "GET", "/", &[], b"");
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(send(wharf.addr(), "HEAD", "/", &[], b"").status, 200);
}

/// registry:2's answer in read-only mode is 405; Wharf adds the OCI body.
fn assert_read_only(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 405, "{what}: {}", text(reply));
    assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{what}");
    let body = text(reply);
    assert!(
        body.contains("\"UNSUPPORTED\"") && body.contains("read-only"),
        "{what}: {body}"
    );
}

#[test]
fn read_only_mode_refuses_pushes_and_deletes_and_serves_pulls() {
    let setup = Setup::new();
    let digest = {
        let wharf = setup.serve(&[]);
        push_image(wharf.addr(), "team/app", "v1")
    };
    // By variable, then by file: both read the same key.
    for by_file in [false, true] {
        let wharf = if by_file {
            setup.serve_file(
                "version: 0.1\nhttp:\n  addr: 127.0.0.1:0\nstorage:\n  delete:\n    enabled: true\n  maintenance:\n    readonly:\n      enabled: true\n",
                &[],
            )
        } else {
            setup.serve(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")])
        };
        let addr = wharf.addr();
        let got = send(
            addr,
            "GET",
            "/v2/team/app/manifests/v1",
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            b"",
        );
        assert_eq!(got.status, 200, "pulls are served");
        assert_read_only(
            &send(addr, "POST", "/v2/team/app/blobs/uploads/", &[], b""),
            "start an upload",
        );
        assert_read_only(
            &send(
                addr,
                "POST",
                &format!("/v2/team/app/blobs/uploads/?digest={}", sha256_digest(b"x")),
                &[],
                b"x",
            ),
            "monolithic upload",
        );
        assert_read_only(
            &send(
                addr,
                "PUT",
                "/v2/team/app/manifests/v2",
                &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                b"{}",
            ),
            "push a manifest",
        );
        assert_read_only(
            &send(
                addr,
                "DELETE",
                &format!("/v2/team/app/manifests/{digest}"),
                &[],
                b"",
            ),
            "delete a manifest",
        );
        assert_read_only(
            &send(addr, "DELETE", "/v2/team/app/manifests/v1", &[], b""),
            "delete a tag",
        );
        assert_eq!(
            send(addr, "GET", "/v2/team/app/tags/list", &[], b"").status,
            200,
            "the tag is still there"
        );
    }
    // Off again, everything works.
    let wharf = setup.serve(&[]);
    push_image(wharf.addr(), "team/app", "v2");
}

#[test]
fn read_only_mode_still_asks_anonymous_callers_to_log_in() {
    let setup = Setup::new();
    let htpasswd = setup.dir.path().join("htpasswd");
    htpasswd_file(&htpasswd, "alice", "secret");
    let wharf = setup.serve(&[
        ("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true"),
        ("REGISTRY_AUTH", "htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", htpasswd.to_str().unwrap()),
    ]);
    let anonymous = send(wharf.addr(), "POST", "/v2/a/blobs/uploads/", &[], b"");
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    let alice = send(
        wharf.addr(),
        "POST",
        "/v2/a/blobs/uploads/",
        &[("Authorization", "Basic YWxpY2U6c2VjcmV0")],
        b"",
    );
    assert_read_only(&alice, "alice starts an upload");
}

#[test]
fn http_headers_from_the_file_and_from_variables_are_sent_on_every_answer() {
    let setup = Setup::new();
    let wharf = setup.serve_file(
        "http:\n  addr: 127.0.0.1:0\n  headers:\n    Access-Control-Allow-Origin: ['*']\n    X-Content-Type-Options: [nosniff]\n    Vary: [Origin, Accept]\n",
        &[("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS", "[DENY]")],
    );
    for (method, path) in [
        ("GET", "/v2/"),
        ("GET", "/v2/nothing/manifests/x"),
        ("GET", "/"),
    ] {
        let reply = send(wharf.addr(), method, path, &[], b"");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        let vary: Vec<&str> = reply
            .headers
            .iter()
            .filter(|(k, _)| k == "vary")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(vary, ["Origin", "Accept"], "{path}");
        let nosniff = reply
            .headers
            .iter()
            .filter(|(k, _)| k == "x-content-type-options")
            .count();
        assert_eq!(nosniff, 1, "{path}: not doubled");
    }
    // A header HTTP cannot carry stops the start, naming it.
    let out = wharf_run(
        &["serve"],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &setup.data()),
            ("REGISTRY_HTTP_HEADERS_BAD NAME", "[x]"),
        ],
        "",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad name"), "{stderr}");
}

#[test]
fn locations_are_absolute_when_asked_honouring_forwarded_headers() {
    let setup = Setup::new();
    let upload = |wharf: &Served, headers: &[(&str, &str)]| {
        let reply = send(wharf.addr(), "POST", "/v2/a/blobs/uploads/", headers, b"");
        assert_eq!(reply.status, 202, "{}", text(&reply));
        reply.header("location").unwrap().to_string()
    };
    let relative = setup.serve(&[]);
    assert!(upload(&relative, &[]).starts_with("/v2/a/blobs/uploads/"));
    drop(relative);

    let proxied = setup.serve(&[("REGISTRY_HTTP_RELATIVEURLS", "false")]);
    let behind = upload(
        &proxied,
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "registry.example, proxy.internal"),
        ],
    );
    assert!(
        behind.starts_with("https://registry.example/v2/a/blobs/uploads/"),
        "{behind}"
    );
    let direct = upload(&proxied, &[]);
    assert!(
        direct.starts_with(&format!("http://{}/v2/a/blobs/uploads/", proxied.addr())),
        "{direct}"
    );
    // The absolute URL works: the upload goes on there.
    let path = direct.trim_start_matches(&format!("http://{}", proxied.addr()));
    assert_eq!(send(proxied.addr(), "GET", path, &[], b"").status, 204);
    drop(proxied);

    let hosted = setup.serve(&[("REGISTRY_HTTP_HOST", "https://registry.example:8443/")]);
    let fixed = upload(&hosted, &[("X-Forwarded-Host", "elsewhere")]);
    assert!(
        fixed.starts_with("https://registry.example:8443/v2/a/blobs/uploads/"),
        "{fixed}"
    );
}

/// The value of the sample `name` (with its labels, exactly) in a
/// Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn the_debug_listener_reports_health_and_metrics() {
    let setup = Setup::new();
    let wharf = setup.serve_file(
        "http:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n    prometheus:\n      enabled: true\n      path: /metrics\n",
        &[],
    );
    let debug = wharf.debug_addr();
    assert_ne!(debug, wharf.addr());
    push_image(wharf.addr(), "team/app", "v1");
    let got = send(
        wharf.addr(),
        "GET",
        "/v2/team/app/manifests/v1",
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    );
    assert_eq!(got.status, 200);
    assert_eq!(
        send(wharf.addr(), "GET", "/v2/team/app/manifests/nope", &[], b"").status,
        404
    );
    let started = send(
        wharf.addr(),
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[],
        b"",
    );
    assert_eq!(started.status, 202);

    let health = send(debug, "GET", "/debug/health", &[], b"");
    assert_eq!(health.status, 200, "{}", text(&health));
    assert_eq!(text(&health), "{}");

    let metrics = send(debug, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .contains("openmetrics-text")
    );
    let m = text(&metrics);
    let count =
        |labels: &str| sample(&m, &format!("wharf_http_requests_total{{{labels}}}")).unwrap_or(0.0);
    assert_eq!(
        count(r#"tenant="default",method="PUT",route="manifest",status="201""#),
        1.0,
        "{m}"
    );
    assert_eq!(
        count(r#"tenant="default",method="POST",route="blob_upload",status="201""#),
        2.0,
        "{m}"
    );
    assert_eq!(
        count(r#"tenant="default",method="GET",route="manifest",status="404""#),
        1.0,
        "{m}"
    );
    assert!(
        sample(&m, "wharf_component_instantiations_total").unwrap() >= 5.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"wharf_upload_sessions_open{tenant="default"}"#),
        Some(1.0),
        "{m}"
    );
    let stored = sample(&m, r#"wharf_storage_bytes{tenant="default"}"#).unwrap();
    assert!(stored >= 4096.0, "{m}");
    let received = sample(&m, r#"wharf_http_received_bytes_total{tenant="default"}"#).unwrap();
    assert!(received >= 4096.0, "{m}");
    assert!(
        sample(&m, r#"wharf_http_sent_bytes_total{tenant="default"}"#).unwrap() > 0.0,
        "{m}"
    );
    assert!(
        m.lines().any(
            |l| l.starts_with("wharf_http_request_duration_seconds_count")
                && l.contains(r#"method="PUT""#)
                && l.contains(r#"route="manifest""#)
                && l.ends_with(" 1")
        ),
        "{m}"
    );
    assert!(m.contains("wharf_guest_traps_total 0"), "{m}");
    assert!(m.contains("wharf_guest_timeouts_total 0"), "{m}");

    // The storage goes away: health says so, naming what failed.
    std::fs::rename(setup.data(), setup.dir.path().join("gone")).unwrap();
    let health = send(debug, "GET", "/debug/health", &[], b"");
    assert_eq!(health.status, 503);
    let body = text(&health);
    assert!(
        body.contains("storage default") && body.contains("cannot list"),
        "{body}"
    );
    std::fs::rename(setup.dir.path().join("gone"), setup.data()).unwrap();
    assert_eq!(send(debug, "GET", "/debug/health", &[], b"").status, 200);
    assert_eq!(send(debug, "GET", "/nothing", &[], b"").status, 404);
}

#[test]
fn credential_checks_are_counted() {
    let setup = Setup::new();
    let htpasswd = setup.dir.path().join("htpasswd");
    htpasswd_file(&htpasswd, "alice", "secret");
    let wharf = setup.serve(&[
        ("REGISTRY_AUTH", "htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", htpasswd.to_str().unwrap()),
        ("REGISTRY_HTTP_DEBUG_ADDR", "127.0.0.1:0"),
        ("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true"),
    ]);
    let good = ("Authorization", "Basic YWxpY2U6c2VjcmV0");
    let bad = ("Authorization", "Basic YWxpY2U6d3Jvbmc=");
    for _ in 0..3 {
        assert_eq!(send(wharf.addr(), "GET", "/v2/", &[good], b"").status, 200);
    }
    assert_eq!(send(wharf.addr(), "GET", "/v2/", &[bad], b"").status, 401);
    let m = text(&send(wharf.debug_addr(), "GET", "/metrics", &[], b""));
    let checks = |result: &str| {
        sample(
            &m,
            &format!(r#"wharf_credential_checks_total{{tenant="default",result="{result}"}}"#),
        )
    };
    assert_eq!(checks("verified"), Some(1.0), "{m}");
    assert_eq!(checks("cached"), Some(2.0), "{m}");
    assert_eq!(checks("failed"), Some(1.0), "{m}");
}

/// Sends SIGTERM to the server.
fn sigterm(wharf: &Served) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &wharf.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_then_exits_0() {
    let setup = Setup::new();
    let mut wharf = setup.serve(&[("REGISTRY_HTTP_DRAINTIMEOUT", "20s")]);
    let addr = wharf.addr();
    let data = random_bytes(8 << 20);
    let digest = sha256_digest(&data);
    // Half the blob, then SIGTERM, then the rest.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v2/a/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    let (first, second) = data.split_at(data.len() / 2);
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&wharf);
    std::thread::sleep(Duration::from_millis(700));
    // The listener is closed: nobody new gets in.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "a new connection was accepted after SIGTERM"
    );
    stream.write_all(second).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut raw).unwrap();
    let (reply, _) = http::parse_reply(&raw).expect("an answer to the upload");
    assert_eq!(reply.status, 201, "{}", text(&reply));
    let status = wharf
        .wait_exit(Duration::from_secs(10))
        .expect("wharf exited after the drain");
    assert!(status.success(), "{status:?}");
    assert!(
        wharf.stderr().contains("every request in flight finished"),
        "{}",
        wharf.stderr()
    );

    let wharf = setup.serve(&[]);
    let got = send(
        wharf.addr(),
        "GET",
        &format!("/v2/a/blobs/{digest}"),
        &[],
        b"",
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), data.len());
}

#[test]
fn a_request_longer_than_the_drain_time_is_cut_and_the_exit_is_still_0() {
    let setup = Setup::new();
    let mut wharf = setup.serve(&[("REGISTRY_HTTP_DRAINTIMEOUT", "500ms")]);
    let addr = wharf.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v2/a/blobs/uploads/?digest={} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000\r\n\r\nabc",
        sha256_digest(b"never")
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&wharf);
    let status = wharf
        .wait_exit(Duration::from_secs(10))
        .expect("wharf exited within the drain time");
    assert!(status.success(), "{status:?}");
    assert!(
        wharf.stderr().contains("http.draintimeout passed"),
        "{}",
        wharf.stderr()
    );
}

#[test]
fn json_logs_with_fields_and_without_access_lines() {
    let setup = Setup::new();
    let quiet = setup.serve(&[
        ("REGISTRY_LOG_FORMATTER", "json"),
        ("REGISTRY_LOG_ACCESSLOG_DISABLED", "true"),
        ("REGISTRY_LOG_FIELDS_SERVICE", "registry"),
    ]);
    assert_eq!(send(quiet.addr(), "GET", "/v2/", &[], b"").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = quiet.stderr();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "wharf serving"),
        "{log}"
    );
    assert!(!lines.iter().any(|l| l["message"] == "request"), "{log}");
    assert!(lines.iter().all(|l| l["service"] == "registry"), "{log}");
    drop(quiet);

    let loud = setup.serve_file("log:\n  formatter: json\nhttp:\n  addr: 127.0.0.1:0\n", &[]);
    assert_eq!(send(loud.addr(), "GET", "/v2/", &[], b"").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = loud.stderr();
    let request = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "request")
        .unwrap_or_else(|| panic!("no request line in {log}"));
    assert_eq!(request["path"], "/v2/");
    assert_eq!(request["status"], 200);
}

#[test]
fn a_port_in_use_is_said_plainly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let setup = Setup::new();
    let out = wharf_run(
        &["serve"],
        &[
            ("REGISTRY_HTTP_ADDR", &addr),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &setup.data()),
        ],
        "",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already in use") && stderr.contains("REGISTRY_HTTP_ADDR"),
        "{stderr}"
    );
}

#[test]
fn the_file_and_the_variables_refuse_the_same_unknown_keys() {
    let setup = Setup::new();
    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let data = setup.data();
        let mut all = vec![("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", data.as_str())];
        all.extend_from_slice(env);
        let out = wharf_run(args, &all, "");
        assert!(!out.status.success(), "{args:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let path = setup.dir.path().join("prefix.yml");
    std::fs::write(&path, "http:\n  prefix: /registry\n").unwrap();
    let e = refused(&["serve", path.to_str().unwrap()], &[]);
    assert!(e.contains("prefix"), "{e}");
    let e = refused(&["serve"], &[("REGISTRY_HTTP_PREFIX", "/registry")]);
    assert!(e.contains("REGISTRY_HTTP_PREFIX"), "{e}");
}

#[test]
fn wharf_health_asks_the_registry_it_is_configured_for() {
    let setup = Setup::new();
    let health = |env: &[(&str, &str)]| {
        let out = wharf_run(&["health"], env, "");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let wharf = setup.serve(&[]);
    let addr = wharf.addr().to_string();
    let (code, said) = health(&[("REGISTRY_HTTP_ADDR", &addr)]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("healthy"), "{said}");
    drop(wharf);
    let (code, said) = health(&[("REGISTRY_HTTP_ADDR", &addr)]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("cannot connect"), "{said}");

    // With a debug listener, its /debug/health: storage counts too.
    let wharf = setup.serve(&[("REGISTRY_HTTP_DEBUG_ADDR", "127.0.0.1:0")]);
    let debug = wharf.debug_addr().to_string();
    let env = [("REGISTRY_HTTP_DEBUG_ADDR", debug.as_str())];
    assert_eq!(health(&env).0, Some(0));
    std::fs::rename(setup.data(), setup.dir.path().join("gone")).unwrap();
    let (code, said) = health(&env);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("503") && said.contains("cannot list"),
        "{said}"
    );
}

#[test]
fn wharf_health_speaks_tls_and_takes_a_client_certificate_demand_as_alive() {
    let setup = Setup::new();
    let certs = localhost_certs(&setup.dir.path().join("certs"));
    let cert = certs.certificate.display().to_string();
    let key = certs.key.display().to_string();
    let ca = certs.ca.display().to_string();
    for clientcas in [None, Some(ca.as_str())] {
        let mut env = vec![
            ("REGISTRY_HTTP_TLS_CERTIFICATE", cert.as_str()),
            ("REGISTRY_HTTP_TLS_KEY", key.as_str()),
        ];
        if let Some(ca) = clientcas {
            env.push(("REGISTRY_HTTP_TLS_CLIENTCAS", ca));
        }
        let wharf = setup.serve(&env);
        let addr = wharf.addr().to_string();
        env.push(("REGISTRY_HTTP_ADDR", addr.as_str()));
        let out = wharf_run(&["health"], &env, "");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{clientcas:?}: {said}");
        assert!(said.contains("https://"), "{said}");
        if clientcas.is_some() {
            assert!(said.contains("client certificate"), "{said}");
        }
    }
}

#[test]
fn a_failing_storage_check_makes_the_registry_unavailable_until_it_passes() {
    let setup = Setup::new();
    let wharf = setup.serve_file(
        "http:\n  addr: 127.0.0.1:0\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 100ms\n    threshold: 2\n",
        &[],
    );
    let addr = wharf.addr();
    let wait_for = |status: u16| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v2 = send(addr, "GET", "/v2/", &[], b"");
            let root = send(addr, "GET", "/", &[], b"");
            if v2.status == status && root.status == status {
                return v2;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still {} and {}, not {status}",
                v2.status,
                root.status
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(wait_for(200).status, 200);
    std::fs::rename(setup.data(), setup.dir.path().join("gone")).unwrap();
    let refused = wait_for(503);
    let body = text(&refused);
    assert!(
        body.contains("UNAVAILABLE") && body.contains("/debug/health"),
        "{body}"
    );
    assert!(refused.header("retry-after").is_some());
    assert!(wharf.stderr().contains("storage health check failing"));
    std::fs::rename(setup.dir.path().join("gone"), setup.data()).unwrap();
    wait_for(200);
}
