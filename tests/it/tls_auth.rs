//! `wharf serve` configured like registry:2 (issue #5), tested through the
//! real binary on 127.0.0.1: configuration from a file, from `REGISTRY_*`
//! variables and both; refused configurations; TLS with a certificate from
//! `wharf cert` (HTTP/1.1 and HTTP/2 by ALPN, client certificates, plain HTTP
//! refused); htpasswd authentication with entries from `wharf htpasswd` and
//! Apache's `htpasswd -B`, answered exactly as registry:2 answers.

use crate::support::tls::client_config;
use crate::support::{Served, wharf_run};
use base64::Engine as _;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// registry:2's 401 body, byte for byte.
const UNAUTHORIZED_BODY: &str =
    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;

/// An HTTP response read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn request(path: &str, authorization: Option<&str>) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
}

/// Reads until the peer closes; a TLS peer that closes without
/// close_notify still leaves what it sent.
async fn read_all<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

async fn plain_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request(path, authorization).as_bytes())
        .await
        .unwrap();
    read_all(s).await
}

/// Connects over TLS as `localhost`, checked against `ca`; returns the
/// negotiated ALPN protocol and, for HTTP/1.1, the response to `GET path`.
async fn tls_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<(Option<Vec<u8>>, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() == Some(b"h2".as_slice()) {
        return Ok((alpn, Vec::new()));
    }
    tls.write_all(request(path, authorization).as_bytes())
        .await?;
    let raw = read_all(tls).await;
    Ok((alpn, raw))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A certificate from `wharf cert` and an htpasswd file with one entry from
/// `wharf htpasswd` (alice) and, when Apache's htpasswd is there (tests/run
/// installs apache2-utils), one from `htpasswd -Bbn` (bob).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let out = wharf_run(
            &[
                "cert",
                "--host",
                "localhost",
                "--out",
                certs.to_str().unwrap(),
            ],
            &[],
            "",
        );
        assert!(out.status.success(), "wharf cert: {out:?}");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains("/etc/docker/certs.d/localhost:5000/ca.crt"),
            "wharf cert does not say where Docker wants the CA:\n{printed}"
        );
        let alice = wharf_run(
            &["htpasswd", "alice", "--password-stdin"],
            &[],
            "alice-secret\n",
        );
        assert!(alice.status.success(), "wharf htpasswd: {alice:?}");
        let bob = Command::new("htpasswd")
            .args(["-Bbn", "bob", "bob-secret"])
            .output()
            .expect(
                "Apache's htpasswd is needed: apt-get install apache2-utils (tests/install does)",
            );
        assert!(bob.status.success(), "htpasswd -Bbn: {bob:?}");
        let mut htpasswd = alice.stdout;
        htpasswd.extend_from_slice(&bob.stdout);
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn ca(&self) -> PathBuf {
        self.path("certs/ca.crt")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn env_only_tls_and_htpasswd_like_the_registry_2_compose_file() {
    let f = Fixture::new();
    let (cert, key, htpasswd, data) = (
        f.s("certs/localhost.pem"),
        f.s("certs/localhost-key.pem"),
        f.s("htpasswd"),
        f.s("data"),
    );
    let wharf = Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", &cert),
            ("REGISTRY_HTTP_TLS_KEY", &key),
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", &htpasswd),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
        ],
    );
    let addr = wharf.addr();
    let http1 = client_config(&f.ca(), &[b"http/1.1"], None);

    // No credentials: registry:2's exact challenge and body.
    let (alpn, raw) = tls_get(addr, http1.clone(), "/v2/", None).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    let a = parse(&raw);
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Basic realm="Registry Realm""#)
    );
    assert_eq!(a.body, UNAUTHORIZED_BODY);

    // Wrong password, unknown user: the same 401.
    for (user, password) in [("alice", "wrong"), ("bob", "alice-secret"), ("carol", "x")] {
        let auth = basic(user, password);
        let (_, raw) = tls_get(addr, http1.clone(), "/v2/", Some(&auth))
            .await
            .unwrap();
        let a = parse(&raw);
        assert_eq!(a.status, 401, "{user}:{password} -> {a:?}");
        assert_eq!(a.body, UNAUTHORIZED_BODY);
    }

    // `wharf htpasswd` and Apache entries both work, twice (cached).
    for (user, password) in [
        ("alice", "alice-secret"),
        ("bob", "bob-secret"),
        ("alice", "alice-secret"),
    ] {
        let auth = basic(user, password);
        let (_, raw) = tls_get(addr, http1.clone(), "/v2/_catalog", Some(&auth))
            .await
            .unwrap();
        let a = parse(&raw);
        assert_eq!(a.status, 200, "{user} -> {a:?}");
    }

    // HTTP/2 is offered by ALPN.
    let h2 = client_config(&f.ca(), &[b"h2", b"http/1.1"], None);
    let (alpn, _) = tls_get(addr, h2, "/v2/", None).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()));

    // Plain HTTP to the TLS port: told so, never served.
    let raw = plain_get(addr, "/v2/", Some(&basic("alice", "alice-secret"))).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.0 400") && text.contains("HTTP request to an HTTPS server"),
        "{text}"
    );

    // A client that does not trust the CA is refused by its own check.
    let other = tempfile::tempdir().unwrap();
    let out = wharf_run(
        &[
            "cert",
            "--host",
            "localhost",
            "--out",
            other.path().to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert!(out.status.success());
    let untrusting = client_config(&other.path().join("ca.crt"), &[b"http/1.1"], None);
    let e = tls_get(addr, untrusting, "/v2/", None).await.unwrap_err();
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_only_configuration() {
    let f = Fixture::new();
    let config = f.path("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\nauth:\n  htpasswd:\n    realm: File Realm\n    path: {}\n",
            f.s("data"),
            f.s("htpasswd")
        ),
    )
    .unwrap();
    let wharf = Served::start(&[config.to_str().unwrap()], &[]);
    let a = parse(&plain_get(wharf.addr(), "/v2/", None).await);
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Basic realm="File Realm""#)
    );
    let auth = basic("alice", "alice-secret");
    let a = parse(&plain_get(wharf.addr(), "/v2/", Some(&auth)).await);
    assert_eq!(a.status, 200, "{a:?}");
    // The data directory of the file is the one in use.
    let stderr = wharf.stderr();
    assert!(stderr.contains(&f.s("data")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn env_overrides_the_file() {
    let f = Fixture::new();
    let config = f.path("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\nauth:\n  htpasswd:\n    realm: File Realm\n    path: /nonexistent/htpasswd\n",
            f.s("data"),
        ),
    )
    .unwrap();
    let htpasswd = f.s("htpasswd");
    let wharf = Served::start(
        &[config.to_str().unwrap()],
        &[
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Env Realm"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", &htpasswd),
        ],
    );
    let a = parse(&plain_get(wharf.addr(), "/v2/", None).await);
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Basic realm="Env Realm""#)
    );
}

#[test]
fn no_configuration_serves_plain_http_without_auth() {
    let data = tempfile::tempdir().unwrap();
    let wharf = Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.path().to_str().unwrap(),
            ),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let a = parse(&runtime.block_on(plain_get(wharf.addr(), "/v2/", None)));
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn unknown_keys_and_bad_yaml_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    let refuse = |env: &[(&str, &str)], expected: &[&str]| {
        let mut args = vec!["serve"];
        if config.exists() {
            args.push(config.to_str().unwrap());
        }
        let out = wharf_run(&args, env, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started anyway: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "no {e:?} in:\n{stderr}");
        }
    };
    refuse(
        &[("REGISTRY_HTTP_TLS_MINIMUMTLS", "tls1.3")],
        &["REGISTRY_HTTP_TLS_MINIMUMTLS"],
    );
    std::fs::write(
        &config,
        "version: 0.1\nhttp:\n  addr: 127.0.0.1:0\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n    minimumtls: tls1.3\n",
    )
    .unwrap();
    refuse(&[], &["http.tls", "minimumtls", "line 7 column 5"]);
    std::fs::write(&config, "http:\n  addr: 127.0.0.1:0\n  - x\n").unwrap();
    refuse(&[], &["line 3 column 3"]);
    // A missing htpasswd file and a malformed one: refused, naming them.
    std::fs::write(&config, "http:\n  addr: 127.0.0.1:0\n").unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let h = htpasswd.to_str().unwrap();
    refuse(
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", h),
        ],
        &[h],
    );
    std::fs::write(&htpasswd, "alice:{SHA}abcdef\n").unwrap();
    refuse(
        &[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", h),
        ],
        &[h, "line 1", "bcrypt"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_with_clientcas() {
    let f = Fixture::new();
    // A client CA and a client certificate it signed.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    std::fs::write(f.path("client-ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(f.path("client.pem"), client_cert.pem()).unwrap();
    std::fs::write(f.path("client-key.pem"), client_key.serialize_pem()).unwrap();

    let (cert, key, clientcas, data) = (
        f.s("certs/localhost.pem"),
        f.s("certs/localhost-key.pem"),
        format!("[{}]", f.s("client-ca.pem")),
        f.s("data"),
    );
    let wharf = Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", &cert),
            ("REGISTRY_HTTP_TLS_KEY", &key),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", &clientcas),
        ],
    );
    let with_cert = client_config(
        &f.ca(),
        &[b"http/1.1"],
        Some((&f.path("client.pem"), &f.path("client-key.pem"))),
    );
    let (_, raw) = tls_get(wharf.addr(), with_cert, "/v2/", None)
        .await
        .unwrap();
    assert_eq!(parse(&raw).status, 200);

    // Without a certificate: no answer at all (TLS 1.3 reports the refusal
    // after the client's handshake completes, so look at the response).
    let without = client_config(&f.ca(), &[b"http/1.1"], None);
    let served = tls_get(wharf.addr(), without, "/v2/", None).await;
    assert!(
        !matches!(&served, Ok((_, raw)) if raw.starts_with(b"HTTP/")),
        "served without a client certificate: {served:?}"
    );
}
