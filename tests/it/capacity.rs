//! Capacity: no client and no tenant can starve the others.
//!
//! Each test starts a real `wharf serve` with small capacity settings,
//! holds requests open the ways a hostile or broken client can (a blob GET
//! it never reads, a body it never finishes, wrong passwords), from many
//! loopback addresses, and checks that everyone else is still served
//! promptly and that what is refused is refused with 429 or 503 and an OCI
//! error, never a 500. ARCHITECTURE.md, "Capacity", says what a request
//! may hold and for how long.

use crate::support::http::{Reply, parse_reply};
use crate::support::{Served, random_bytes, sha256_digest, wharf_run};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a request that should be served promptly may take, on a
/// loaded 2-core machine running a debug build.
const PROMPT: Duration = Duration::from_secs(5);

fn serve(dir: &Path, config: &str) -> Served {
    let path = dir.join("config.yml");
    std::fs::write(&path, config).unwrap();
    Served::start(&[path.to_str().unwrap()], &[])
}

/// A single registry with its data under `dir` and `extra` configuration.
fn serve_single(dir: &Path, extra: &str) -> Served {
    let root = dir.display();
    serve(
        dir,
        &format!(
            "http:\n  addr: 127.0.0.1:0\n\
             storage: {{ filesystem: {{ rootdirectory: {root}/data }} }}\n{extra}"
        ),
    )
}

fn htpasswd(dir: &Path, user: &str, password: &str) -> String {
    let out = wharf_run(
        &["htpasswd", user, "--password-stdin", "--cost", "4"],
        &[],
        &format!("{password}\n"),
    );
    assert!(out.status.success(), "wharf htpasswd: {out:?}");
    let path = dir.join(format!("{user}.htpasswd"));
    std::fs::write(&path, &out.stdout).unwrap();
    path.to_str().unwrap().to_string()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `127.0.0.<n>`: Linux answers the whole of 127.0.0.0/8 on loopback, so
/// each is a client address of its own.
fn client(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// One request on its own connection from `from`, with `host` as Host;
/// the whole body is written before the answer is read.
async fn send(
    from: IpAddr,
    to: SocketAddr,
    host: &str,
    head: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = connect_from(from, to).await;
    let mut request = format!("{head}\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.unwrap();
    read_reply(&mut stream, head.starts_with("HEAD "))
        .await
        .unwrap_or_else(|| panic!("no answer to {head}"))
}

/// Reads one answer (a HEAD answer has no body whatever its length).
async fn read_reply(stream: &mut TcpStream, head: bool) -> Option<Reply> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if head && let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut head_only = raw[..end + 4].to_vec();
            head_only.splice(end..end, *b"\r\ncontent-length: 0");
            return parse_reply(&head_only).map(|(r, _)| r);
        }
        if let Some((reply, _)) = parse_reply(&raw)
            && raw.windows(4).any(|w| w == b"\r\n\r\n")
            && (reply.header("content-length").is_some()
                || reply.header("transfer-encoding").is_some())
        {
            return Some(reply);
        }
        match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return parse_reply(&raw).map(|(r, _)| r),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn error_code(reply: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_else(|_| {
        panic!(
            "no OCI error body: {:?}",
            String::from_utf8_lossy(&reply.body)
        )
    });
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Pushes a blob as one monolithic upload; returns its digest.
async fn push_blob(
    to: SocketAddr,
    host: &str,
    auth: Option<&str>,
    repo: &str,
    data: &[u8],
) -> String {
    let digest = sha256_digest(data);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    let reply = send(
        client(1),
        to,
        host,
        &format!("POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1"),
        &headers,
        data,
    )
    .await;
    assert_eq!(
        reply.status,
        201,
        "blob push: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    digest
}

/// A request the client never finishes: a blob GET it never reads, or a
/// manifest PUT whose body never comes. Kept open until dropped.
enum Hold {
    UnreadBlob,
    UnfinishedManifest,
}

async fn hold(
    kind: &Hold,
    from: IpAddr,
    to: SocketAddr,
    host: &str,
    auth: Option<&str>,
    repo: &str,
    digest: &str,
) -> TcpStream {
    let mut stream = connect_from(from, to).await;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = match kind {
        Hold::UnreadBlob => {
            format!("GET /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n")
        }
        Hold::UnfinishedManifest => format!(
            "PUT /v2/{repo}/manifests/held HTTP/1.1\r\nHost: {host}\r\n{auth}\
             Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
             Content-Length: 100000\r\n\r\n{{\"schemaVersion\":"
        ),
    };
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads whatever answer a held connection got without waiting for more:
/// its status, if one came.
async fn status_if_answered(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 12 => std::str::from_utf8(&buf[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

/// A legitimate client's round: the API base, a small blob pushed and
/// pulled back. Each step must answer promptly.
async fn legitimate_round(to: SocketAddr, host: &str, auth: Option<&str>, repo: &str, n: usize) {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    let started = Instant::now();
    let base = send(client(1), to, host, "GET /v2/ HTTP/1.1", &headers, b"").await;
    assert_eq!(
        base.status,
        200,
        "GET /v2/ for {host}: {:?}",
        String::from_utf8_lossy(&base.body)
    );
    let data = format!("legitimate blob {n} of {host}").into_bytes();
    let digest = push_blob(to, host, auth, repo, &data).await;
    let pulled = send(
        client(1),
        to,
        host,
        &format!("GET /v2/{repo}/blobs/{digest} HTTP/1.1"),
        &headers,
        b"",
    )
    .await;
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, data);
    assert!(
        started.elapsed() < PROMPT,
        "a legitimate round for {host} took {:?} while others were held",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_held_against_one_tenant_do_not_starve_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let acme_auth = htpasswd(d, "alice", "alice-pw");
    let server = serve(
        d,
        &format!(
            "http:\n  addr: 127.0.0.1:0\n\
             capacity: {{ instances: 64, queue_timeout: 60s, idle_timeout: 60s }}\n\
             tenants:\n\
             \x20 - name: acme\n\
             \x20   hosts: [acme.localhost]\n\
             \x20   storage: {{ filesystem: {{ rootdirectory: {root}/acme }} }}\n\
             \x20   auth: {{ htpasswd: {{ realm: acme, path: {acme_auth} }} }}\n\
             \x20   limits: {{ concurrent_requests: 40, client_requests: 8 }}\n\
             \x20 - name: globex\n\
             \x20   hosts: [globex.localhost]\n\
             \x20   storage: {{ filesystem: {{ rootdirectory: {root}/globex }} }}\n",
            root = d.display()
        ),
    );
    let to = server.addr();
    let alice = basic("alice", "alice-pw");
    let blob = random_bytes(16 << 20);
    let digest = push_blob(to, "acme.localhost", Some(&alice), "team/big", &blob).await;

    // 300 held requests against acme from 30 addresses: pulls never read,
    // manifest bodies never finished with and without credentials, and
    // wrong passwords. Each address sends one kind ten times (30 is a
    // multiple of 3); those past acme's 40 slots wait in the queue (60 s,
    // longer than this test), holding their client slots meanwhile.
    let mut held = Vec::new();
    let mut wrong = Vec::new();
    for n in 0..300u32 {
        let from = client(2 + (n % 30) as u8);
        let (kind, auth) = match n % 3 {
            0 => (Hold::UnreadBlob, Some(alice.as_str())),
            1 => (Hold::UnfinishedManifest, Some(alice.as_str())),
            _ => (Hold::UnfinishedManifest, None),
        };
        let stream = hold(&kind, from, to, "acme.localhost", auth, "team/big", &digest).await;
        held.push((kind, stream));
        if n % 10 == 0 {
            let bad = basic("mallory", &format!("guess-{n}"));
            let from = client(100 + (n / 10) as u8);
            wrong.push(tokio::spawn(async move {
                send(
                    from,
                    to,
                    "acme.localhost",
                    "GET /v2/ HTTP/1.1",
                    &[("Authorization", &bad)],
                    b"",
                )
                .await
                .status
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // globex answers promptly throughout.
    for n in 0..10 {
        legitimate_round(to, "globex.localhost", None, "globex/app", n).await;
    }

    // What acme's held requests were told: nothing yet (a body being
    // waited for), the head of the blob they do not read, 401 (no
    // credentials), 429 or 503 (past a limit); never a 500.
    let mut answers = std::collections::BTreeMap::new();
    for (kind, stream) in &mut held {
        let status = status_if_answered(stream).await;
        let expected: &[u16] = match kind {
            Hold::UnreadBlob => &[200, 429, 503],
            Hold::UnfinishedManifest => &[401, 429, 503],
        };
        assert!(
            status.is_none_or(|s| expected.contains(&s)),
            "a held request was answered {status:?}"
        );
        *answers.entry(status).or_insert(0) += 1;
    }
    // The 20 addresses holding with credentials each had 8 in flight or
    // queued, so their 9th and 10th were refused at once; anonymous
    // requests are refused too while theirs wait in the queue.
    let refused = answers.get(&Some(429)).copied().unwrap_or(0);
    assert!(
        refused >= 40,
        "clients held to client_requests: {answers:?}"
    );
    for w in wrong {
        assert_eq!(w.await.unwrap(), 401);
    }
    let log = server.stderr();
    assert!(
        !log.contains("concurrent limit"),
        "the instance pool ran out:\n{log}"
    );
    assert!(!log.contains("request failed in the component"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_registry_keeps_serving_a_legitimate_client_while_hundreds_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_single(
        dir.path(),
        "capacity: { queue_timeout: 1s }\nlimits: { client_requests: 8 }\n",
    );
    let to = server.addr();
    let blob = random_bytes(16 << 20);
    let digest = push_blob(to, "localhost", None, "big", &blob).await;
    let mut held = Vec::new();
    for n in 0..360u32 {
        let from = client(2 + (n % 30) as u8);
        let kind = if n % 2 == 0 {
            Hold::UnreadBlob
        } else {
            Hold::UnfinishedManifest
        };
        let stream = hold(&kind, from, to, "localhost", None, "big", &digest).await;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 0..10 {
        legitimate_round(to, "localhost", None, "mine", n).await;
    }
    let mut refused = 0;
    for stream in &mut held {
        match status_if_answered(stream).await {
            None | Some(200) => {}
            Some(429) => refused += 1,
            Some(other) => panic!("a held request was answered {other}"),
        }
    }
    // 30 addresses may hold 8 each: the other 120 were refused at once.
    assert_eq!(refused, 120, "requests past client_requests refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_share_gets_429_with_retry_after_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_single(dir.path(), "limits: { client_requests: 2 }\n");
    let to = server.addr();
    let digest = push_blob(to, "localhost", None, "big", &random_bytes(16 << 20)).await;
    let _a = hold(
        &Hold::UnreadBlob,
        client(7),
        to,
        "localhost",
        None,
        "big",
        &digest,
    )
    .await;
    let _b = hold(
        &Hold::UnreadBlob,
        client(7),
        to,
        "localhost",
        None,
        "big",
        &digest,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = send(client(7), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(third.status, 429);
    assert_eq!(error_code(&third), "TOOMANYREQUESTS");
    assert_eq!(third.header("retry-after"), Some("1"));
    let other = send(client(8), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(other.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_registry_answers_503_and_a_stalled_reader_gives_its_instance_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_single(
        dir.path(),
        "capacity: { instances: 2, queue_timeout: 500ms, idle_timeout: 2s }\n",
    );
    let to = server.addr();
    let digest = push_blob(to, "localhost", None, "big", &random_bytes(32 << 20)).await;
    let mut readers = Vec::new();
    for n in 0..2 {
        readers.push(
            hold(
                &Hold::UnreadBlob,
                client(20 + n),
                to,
                "localhost",
                None,
                "big",
                &digest,
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let full = send(client(30), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(full.status, 503);
    assert_eq!(error_code(&full), "UNAVAILABLE");
    assert_eq!(full.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "answered before the queue timeout"
    );

    // Past the idle timeout the readers' instances are stopped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let served = send(client(30), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(served.status, 200);
    assert!(
        server.stderr().contains("took nothing of the response"),
        "{}",
        server.stderr()
    );
    // The HTTP/1 connections of the stalled readers were closed: reading
    // drains what was buffered, then ends.
    for mut reader in readers {
        let mut sink = vec![0u8; 1 << 20];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match reader.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "a stalled reader's connection stayed open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_is_cut_and_frees_its_instance() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_single(
        dir.path(),
        "capacity: { instances: 2, queue_timeout: 500ms, idle_timeout: 2s }\n",
    );
    let to = server.addr();
    let mut stalled = Vec::new();
    for n in 0..2 {
        stalled.push(
            hold(
                &Hold::UnfinishedManifest,
                client(40 + n),
                to,
                "localhost",
                None,
                "app",
                "",
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full = send(client(50), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(
        full.status, 503,
        "both instances should be held by the stalled bodies"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let served = send(client(50), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(served.status, 200);
    for mut s in stalled {
        let status = read_reply(&mut s, false).await.map(|r| r.status);
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "a cut body was answered {status:?}"
        );
    }
    // Nothing of the unfinished manifest was stored.
    let head = send(
        client(50),
        to,
        "localhost",
        "GET /v2/app/manifests/held HTTP/1.1",
        &[],
        b"",
    )
    .await;
    assert_eq!(head.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_hold_no_instance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let auth = htpasswd(d, "alice", "alice-pw");
    let server = serve_single(
        d,
        &format!(
            "auth: {{ htpasswd: {{ realm: test, path: {auth} }} }}\n\
             capacity: {{ instances: 2, queue_timeout: 300ms }}\n"
        ),
    );
    let to = server.addr();
    // Repeated failures from one address are slowed down by seconds; each
    // used to wait inside a component instance.
    let mut wrong = Vec::new();
    for n in 0..20 {
        let bad = basic("mallory", &format!("guess-{n}"));
        wrong.push(tokio::spawn(async move {
            send(
                client(9),
                to,
                "localhost",
                "GET /v2/ HTTP/1.1",
                &[("Authorization", &bad)],
                b"",
            )
            .await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice = basic("alice", "alice-pw");
    for _ in 0..5 {
        let started = Instant::now();
        let ok = send(
            client(1),
            to,
            "localhost",
            "GET /v2/ HTTP/1.1",
            &[("Authorization", &alice)],
            b"",
        )
        .await;
        assert_eq!(ok.status, 200, "{:?}", String::from_utf8_lossy(&ok.body));
        assert!(started.elapsed() < PROMPT);
    }
    assert!(
        server.stderr().contains("user=\"alice\""),
        "the access log names the user"
    );
    for w in wrong {
        let reply = w.await.unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(error_code(&reply), "UNAUTHORIZED");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"test\"")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_guest_memory_budget_is_503_and_small_requests_still_pass() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_single(
        dir.path(),
        "capacity: { guest_memory_bytes: 6291456, queue_timeout: 500ms }\n",
    );
    let to = server.addr();
    // A 3 MiB manifest needs more guest memory than the 6 MiB budget has
    // left beside the instance's own start-up memory.
    let padding = "a".repeat(3 << 20);
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"size\":2,\
         \"digest\":\"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\"}},\
         \"layers\":[],\"annotations\":{{\"padding\":\"{padding}\"}}}}"
    );
    let big = send(
        client(1),
        to,
        "localhost",
        "PUT /v2/app/manifests/big HTTP/1.1",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    )
    .await;
    assert_eq!(big.status, 503, "{:?}", String::from_utf8_lossy(&big.body));
    assert_eq!(error_code(&big), "UNAVAILABLE");
    assert_eq!(big.header("retry-after"), Some("1"));
    let small = send(client(1), to, "localhost", "GET /v2/ HTTP/1.1", &[], b"").await;
    assert_eq!(small.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_carry_at_most_the_configured_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_single(dir.path(), "capacity: { http2_streams: 7 }\n");
    let mut stream = connect_from(client(1), server.addr()).await;
    // The HTTP/2 preface and an empty SETTINGS frame (prior knowledge, h2c).
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    stream.write_all(&hello).await.unwrap();
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "the server's first frame is SETTINGS");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.unwrap();
    let max_streams = payload
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(max_streams, Some(7));
}
