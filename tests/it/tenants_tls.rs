//! Tenants chosen over real TLS: one `wharf serve` with one certificate for
//! `acme.localhost` and `globex.localhost` (from `wharf cert`) serves two
//! tenants, and each HTTP/1.x request reaches the tenant its TLS server name
//! (SNI) and `Host` header name, port and case aside. A `Host` of another
//! tenant than the connection's SNI is refused with 421 and an OCI error
//! (also mid-connection, and a refused push stores nothing); an SNI that is
//! no tenant's (or none at all) leaves the choice to the `Host` header;
//! an HTTP/1.0 request without a `Host` header goes to the SNI's tenant,
//! and an HTTP/1.1 one is refused with 400, as HTTP/1.1 requires.

use crate::support::http::{Reply, parse_reply};
use crate::support::tls;
use crate::support::{Served, sha256_digest, wharf_run};
use rustls_pki_types::ServerName;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const ACME: &str = "acme.localhost";
const GLOBEX: &str = "globex.localhost";
/// The same repository name in both tenants.
const REPO: &str = "shared/app";
const ACME_BLOB: &[u8] = b"acme's layer";
const GLOBEX_BLOB: &[u8] = b"globex's layer";

/// The server, stopped on drop before its directory goes.
struct Registry {
    served: Served,
    client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = d.join("certs");
        let out = wharf_run(
            &[
                "cert",
                "--host",
                ACME,
                "--host",
                GLOBEX,
                "--out",
                certs.to_str().unwrap(),
            ],
            &[],
            "",
        );
        assert!(out.status.success(), "wharf cert: {out:?}");
        let config = format!(
            "http:\n  addr: 127.0.0.1:0\n  tls:\n\
             \x20   certificate: {certs}/{ACME}.pem\n\
             \x20   key: {certs}/{ACME}-key.pem\n\
             tenants:\n\
             \x20 - name: acme\n\
             \x20   hosts: [\"{ACME}\"]\n\
             \x20   storage: {{ filesystem: {{ rootdirectory: {root}/acme }} }}\n\
             \x20 - name: globex\n\
             \x20   hosts: [\"{GLOBEX}\"]\n\
             \x20   storage: {{ filesystem: {{ rootdirectory: {root}/globex }} }}\n",
            certs = certs.display(),
            root = d.display()
        );
        let path = d.join("config.yml");
        std::fs::write(&path, config).unwrap();
        let served = Served::start(&[path.to_str().unwrap()], &[]);

        let client = tls::client_config(&certs.join("ca.crt"), &[b"http/1.1"], None);
        Registry {
            served,
            client,
            _dir: dir,
        }
    }

    /// A TLS connection opened for `server_name`: a host name is sent as
    /// SNI, an IP address sends none.
    async fn connect(&self, server_name: &str) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.served.addr()).await.unwrap();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake as {server_name}: {e}"))
    }

    /// One request on a new connection opened for `sni`.
    async fn send(&self, sni: &str, host: Option<&str>, method: &str, path: &str) -> Reply {
        exchange(
            &mut self.connect(sni).await,
            &request(method, path, host, &[]),
        )
        .await
    }

    /// Pushes `data` to `tenant` (SNI and Host both its name), monolithically.
    async fn push(&self, tenant: &str, data: &[u8]) {
        let post = request("POST", &uploads(data), Some(tenant), data);
        let reply = exchange(&mut self.connect(tenant).await, &post).await;
        assert_eq!(reply.status, 201, "push to {tenant}: {}", show(&reply));
    }

    /// `name:port`, as clients that name the port send it.
    fn with_port(&self, name: &str) -> String {
        format!("{name}:{}", self.served.addr().port())
    }
}

fn blob(data: &[u8]) -> String {
    format!("/v2/{REPO}/blobs/{}", sha256_digest(data))
}

fn uploads(data: &[u8]) -> String {
    format!("/v2/{REPO}/blobs/uploads/?digest={}", sha256_digest(data))
}

/// A request as written on the wire: HTTP/1.1 with `Host: host`, or with
/// no host HTTP/1.0 without a `Host` header.
fn request(method: &str, path: &str, host: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = match host {
        Some(host) => format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n"),
        None => format!("{method} {path} HTTP/1.0\r\n"),
    };
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Writes `request` and reads one whole response; the connection stays
/// open for the next.
async fn exchange(tls: &mut TlsStream<TcpStream>, request: &[u8]) -> Reply {
    let read = async {
        tls.write_all(request).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some((reply, _)) = parse_reply(&raw) {
                return reply;
            }
            match tls.read(&mut buf).await {
                Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
                end => panic!(
                    "connection ended ({end:?}) before a whole response: {:?}",
                    String::from_utf8_lossy(&raw)
                ),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("a response within 60s")
}

/// Status and body, for failure messages.
fn show(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}

/// The OCI error code of an error reply.
fn error_code(reply: &Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not an OCI error body ({e}): {}", show(reply)));
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `reply` serves `data` (200 and its bytes).
fn assert_serves(reply: &Reply, data: &[u8], what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", show(reply));
    assert_eq!(reply.body, data, "{what}: another blob's bytes");
}

/// `reply` is 404 BLOB_UNKNOWN.
fn assert_unknown(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 404, "{what}: {}", show(reply));
    assert_eq!(error_code(reply), "BLOB_UNKNOWN", "{what}");
}

/// `reply` is 421 with an OCI DENIED error naming `host`.
fn assert_misdirected(reply: &Reply, host: &str, what: &str) {
    assert_eq!(reply.status, 421, "{what}: {}", show(reply));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(error_code(reply), "DENIED", "{what}");
    let body = String::from_utf8_lossy(&reply.body);
    assert!(body.contains(host), "{what}: {host} not named in {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_is_reached_by_its_server_name_and_host() {
    let r = Registry::start();
    r.push(ACME, ACME_BLOB).await;
    r.push(GLOBEX, GLOBEX_BLOB).await;
    for (tenant, own, other) in [
        (ACME, ACME_BLOB, GLOBEX_BLOB),
        (GLOBEX, GLOBEX_BLOB, ACME_BLOB),
    ] {
        let hosts = [
            tenant.to_string(),
            r.with_port(tenant),
            r.with_port(&tenant.to_ascii_uppercase()),
        ];
        for host in hosts {
            let what = format!("SNI {tenant}, Host {host}");
            assert_serves(
                &r.send(tenant, Some(&host), "GET", &blob(own)).await,
                own,
                &what,
            );
            assert_unknown(
                &r.send(tenant, Some(&host), "GET", &blob(other)).await,
                &what,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_other_than_the_server_name_is_misdirected() {
    let r = Registry::start();
    // Over one kept-alive connection opened for acme: served, refused for
    // globex (port or not), served again.
    let mut tls = r.connect(ACME).await;
    let v2 = |host: &str| request("GET", "/v2/", Some(host), &[]);
    assert_eq!(exchange(&mut tls, &v2(ACME)).await.status, 200);
    for host in [GLOBEX.to_string(), r.with_port(GLOBEX)] {
        let reply = exchange(&mut tls, &v2(&host)).await;
        assert_misdirected(&reply, GLOBEX, &format!("SNI {ACME}, Host {host}"));
    }
    assert_eq!(
        exchange(&mut tls, &v2(&r.with_port(ACME))).await.status,
        200
    );

    // The other way round, and a host no tenant serves.
    let reply = r.send(GLOBEX, Some(ACME), "GET", "/v2/").await;
    assert_misdirected(&reply, ACME, "SNI globex, Host acme");
    let reply = r.send(ACME, Some("initech.localhost"), "GET", "/v2/").await;
    assert_misdirected(&reply, "initech.localhost", "SNI acme, unknown Host");

    // A misdirected push is refused before it is stored, in either tenant.
    let post = request("POST", &uploads(ACME_BLOB), Some(GLOBEX), ACME_BLOB);
    let reply = exchange(&mut r.connect(ACME).await, &post).await;
    assert_misdirected(&reply, GLOBEX, "push with SNI acme, Host globex");
    for tenant in [ACME, GLOBEX] {
        let reply = r.send(tenant, Some(tenant), "GET", &blob(ACME_BLOB)).await;
        assert_unknown(&reply, &format!("{tenant} after a misdirected push"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_name_no_tenant_serves_leaves_the_choice_to_the_host() {
    let r = Registry::start();
    r.push(ACME, ACME_BLOB).await;
    r.push(GLOBEX, GLOBEX_BLOB).await;

    // `localhost` is in the certificate but no tenant's: the Host chooses,
    // and with no Host (HTTP/1.0) there is no tenant.
    let reply = r
        .send("localhost", Some(ACME), "GET", &blob(ACME_BLOB))
        .await;
    assert_serves(&reply, ACME_BLOB, "SNI localhost, Host acme");
    let reply = r
        .send("localhost", Some(ACME), "GET", &blob(GLOBEX_BLOB))
        .await;
    assert_unknown(&reply, "SNI localhost, Host acme");
    let reply = r.send("localhost", None, "GET", "/v2/").await;
    assert_misdirected(&reply, "localhost", "SNI localhost, no Host");

    // Connecting by address sends no SNI: the Host chooses.
    let reply = r
        .send("127.0.0.1", Some(GLOBEX), "GET", &blob(GLOBEX_BLOB))
        .await;
    assert_serves(&reply, GLOBEX_BLOB, "no SNI, Host globex");
    let reply = r
        .send("127.0.0.1", Some(GLOBEX), "GET", &blob(ACME_BLOB))
        .await;
    assert_unknown(&reply, "no SNI, Host globex");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_host_header_the_server_name_chooses() {
    let r = Registry::start();
    r.push(ACME, ACME_BLOB).await;
    r.push(GLOBEX, GLOBEX_BLOB).await;
    // HTTP/1.0 without Host.
    let reply = r.send(GLOBEX, None, "GET", &blob(GLOBEX_BLOB)).await;
    assert_serves(&reply, GLOBEX_BLOB, "SNI globex, no Host");
    let reply = r.send(GLOBEX, None, "GET", &blob(ACME_BLOB)).await;
    assert_unknown(&reply, "SNI globex, no Host");
    let reply = r.send(ACME, None, "GET", &blob(ACME_BLOB)).await;
    assert_serves(&reply, ACME_BLOB, "SNI acme, no Host");
    // HTTP/1.1 requires Host: refused, whatever the SNI.
    let head = format!(
        "GET {} HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        blob(ACME_BLOB)
    );
    let reply = exchange(&mut r.connect(ACME).await, head.as_bytes()).await;
    assert_eq!(reply.status, 400, "HTTP/1.1 without Host: {}", show(&reply));
    assert_eq!(error_code(&reply), "UNSUPPORTED");
}
