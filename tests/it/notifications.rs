//! registry:2's notifications (issue #15), through the real binary on
//! 127.0.0.1: events for pushes, pulls, mounts and deletes reach a real
//! HTTP receiver in registry:2's envelope, in order, with the endpoint's
//! headers; a receiver that fails at first gets them all once it recovers;
//! a receiver that does not answer delays no request; ignore rules hold.

use crate::support;
use crate::support::http::send;
use crate::support::{Served, random_bytes, sha256_digest};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One POST the receiver took.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
    /// The status the receiver answered.
    status: u16,
}

/// How the receiver behaves.
#[derive(Default)]
struct Script {
    /// Answer this many POSTs to `/events` with 500 first.
    fail_first: usize,
    /// Hold every answer until released.
    held: bool,
}

/// The receiver's script and what it took, and a wake-up for held answers.
type Shared = (Mutex<(Script, Vec<Received>)>, Condvar);

/// An HTTP receiver for events on loopback, answering per its script;
/// stopped when dropped.
struct Receiver {
    addr: SocketAddr,
    state: Arc<Shared>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start(script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((Mutex::new((script, Vec::new())), Condvar::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Receiver { addr, state, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn release(&self) {
        let (lock, wake) = &*self.state;
        lock.lock().unwrap().0.held = false;
        wake.notify_all();
    }

    /// Every POST so far.
    fn received(&self) -> Vec<Received> {
        self.state.0.lock().unwrap().1.clone()
    }

    /// The events delivered (answered 2xx) to `path`, in order.
    fn delivered(&self, path: &str) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && r.status == 200)
            .flat_map(|r| r.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until `path` was delivered `n` events (30 s at most).
    fn wait_for(&self, path: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.delivered(path);
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.release();
        let _ = TcpStream::connect(self.addr);
    }
}

/// Read one request per connection, record it, answer per the script.
fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            if name == "content-length" {
                length = value.parse().unwrap();
            }
            headers.push((name, value));
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let (lock, wake) = shared;
        let mut state = lock.lock().unwrap();
        while state.0.held {
            state = wake.wait(state).unwrap();
        }
        let status = if path == "/events" && state.0.fail_first > 0 {
            state.0.fail_first -= 1;
            500
        } else {
            200
        };
        state.1.push(Received {
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            status,
        });
        drop(state);
        let mut out = &stream;
        let _ = write!(out, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
    }
}

fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let reply = send(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[],
        data,
    );
    assert_eq!(reply.status, 201);
    digest
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest of `config` and `layer` pushed as `repo:tag`: its digest and bytes.
fn push_manifest(
    addr: SocketAddr,
    repo: &str,
    tag: &str,
    config: &str,
    layer: &str,
) -> (String, Vec<u8>) {
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":1000}}]}}"#
    );
    let reply = send(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", MANIFEST_TYPE)],
        manifest.as_bytes(),
    );
    assert_eq!(reply.status, 201);
    (sha256_digest(manifest.as_bytes()), manifest.into_bytes())
}

fn serve_with(dir: &tempfile::TempDir, config: &str) -> Served {
    let path = dir.path().join("config.yml");
    std::fs::write(&path, config).unwrap();
    let data = dir.path().join("data");
    Served::start(
        &[path.to_str().unwrap()],
        &[(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            data.to_str().unwrap(),
        )],
    )
}

#[test]
fn events_reach_an_endpoint_that_fails_at_first_once_it_recovers() {
    let receiver = Receiver::start(Script {
        fail_first: 3,
        ..Script::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let wharf = serve_with(
        &dir,
        &format!(
            "http:\n  addr: 127.0.0.1:0\nstorage:\n  delete:\n    enabled: true\nnotifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: flaky\n      url: {}\n      headers:\n        Authorization: [Bearer t0ken]\n      timeout: 2s\n      threshold: 2\n      backoff: 200ms\n    - name: manifests\n      url: {}\n      ignoredmediatypes: [application/octet-stream]\n      ignore:\n        actions: [pull]\n    - name: off\n      url: {}\n      disabled: true\n",
            receiver.url("/events"),
            receiver.url("/manifests"),
            receiver.url("/off"),
        ),
    );
    let addr = wharf.addr();
    let config = push_blob(addr, "team/app", b"{}");
    let layer_data = random_bytes(1000);
    let layer = push_blob(addr, "team/app", &layer_data);
    let (digest, manifest) = push_manifest(addr, "team/app", "v1", &config, &layer);
    let got = send(
        addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[("Accept", MANIFEST_TYPE)],
        b"",
    );
    assert_eq!(got.body, manifest);
    assert_eq!(
        send(
            addr,
            "GET",
            &format!("/v2/team/app/blobs/{layer}"),
            &[],
            b""
        )
        .status,
        200
    );
    let mount = send(
        addr,
        "POST",
        &format!("/v2/team/other/blobs/uploads/?mount={layer}&from=team/app"),
        &[],
        b"",
    );
    assert_eq!(mount.status, 201);
    // A referrer of the image; listing referrers reads it, but pulls
    // nothing: no pull event.
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","artifactType":"application/example","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[],"subject":{{"mediaType":"{MANIFEST_TYPE}","digest":"{digest}","size":{}}}}}"#,
        manifest.len()
    );
    let referrer_digest = sha256_digest(referrer.as_bytes());
    let put = send(
        addr,
        "PUT",
        &format!("/v2/team/app/manifests/{referrer_digest}"),
        &[("Content-Type", MANIFEST_TYPE)],
        referrer.as_bytes(),
    );
    assert_eq!(put.status, 201);
    let referrers = send(
        addr,
        "GET",
        &format!("/v2/team/app/referrers/{digest}"),
        &[],
        b"",
    );
    assert_eq!(referrers.status, 200);
    assert!(String::from_utf8_lossy(&referrers.body).contains(&referrer_digest));
    assert_eq!(
        send(
            addr,
            "DELETE",
            &format!("/v2/team/app/manifests/{digest}"),
            &[],
            b""
        )
        .status,
        202
    );

    let events = receiver.wait_for("/events", 8);
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"]["repository"].as_str().unwrap().to_string(),
                e["target"]["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("push", "team/app", &config),
        ("push", "team/app", &layer),
        ("push", "team/app", &digest),
        ("pull", "team/app", &digest),
        ("pull", "team/app", &layer),
        ("mount", "team/other", &layer),
        ("push", "team/app", &referrer_digest),
        ("delete", "team/app", &digest),
    ]
    .iter()
    .map(|(a, r, d)| (a.to_string(), r.to_string(), d.to_string()))
    .collect();
    assert_eq!(summary, expected, "{events:#?}");

    let pushed = &events[2];
    assert_eq!(pushed["target"]["mediaType"], MANIFEST_TYPE);
    assert_eq!(pushed["target"]["tag"], "v1");
    assert_eq!(pushed["target"]["size"], manifest.len());
    assert_eq!(
        pushed["target"]["url"],
        format!("http://{addr}/v2/team/app/manifests/{digest}")
    );
    let references: Vec<&str> = pushed["target"]["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(references, [config.as_str(), layer.as_str()]);
    assert_eq!(pushed["request"]["method"], "PUT");
    assert_eq!(pushed["request"]["host"], addr.to_string());
    assert!(pushed["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        pushed["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(pushed["source"]["instanceID"].as_str().is_some());
    assert_eq!(events[1]["target"]["mediaType"], "application/octet-stream");
    assert_eq!(events[1]["target"]["size"], 1000);
    assert_eq!(events[5]["target"]["fromRepository"], "team/app");
    assert!(events[6]["target"].get("tag").is_none());
    assert_eq!(
        events[7]["target"]["url"],
        format!("http://{addr}/v2/team/app/manifests/{digest}")
    );

    // The three failures were retried; the envelope and the headers are
    // registry:2's.
    let posts: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "/events")
        .collect();
    assert_eq!(posts.iter().filter(|r| r.status == 500).count(), 3);
    for post in &posts {
        let header = |name: &str| {
            post.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header("content-type"),
            Some("application/vnd.docker.distribution.events.v1+json")
        );
        assert_eq!(header("authorization"), Some("Bearer t0ken"));
    }

    // The other endpoint ignores blobs and pulls; the disabled one gets nothing.
    let manifests = receiver.wait_for("/manifests", 3);
    let actions: Vec<&str> = manifests
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["push", "push", "delete"], "{manifests:#?}");
    assert!(receiver.received().iter().all(|r| r.path != "/off"));
}

#[test]
fn an_endpoint_that_does_not_answer_delays_no_request() {
    let receiver = Receiver::start(Script {
        held: true,
        ..Script::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let wharf = serve_with(
        &dir,
        &format!(
            "http:\n  addr: 127.0.0.1:0\nnotifications:\n  endpoints:\n    - name: stuck\n      url: {}\n      timeout: 120s\n",
            receiver.url("/events")
        ),
    );
    let addr = wharf.addr();
    // Every request is answered while the endpoint holds the first POST.
    let config = push_blob(addr, "a", b"{}");
    let layer = push_blob(addr, "a", &random_bytes(1000));
    push_manifest(addr, "a", "v1", &config, &layer);
    assert!(receiver.delivered("/events").is_empty());
    receiver.release();
    let events = receiver.wait_for("/events", 3);
    assert_eq!(events.len(), 3, "{events:#?}");
}

#[test]
fn an_endpoint_without_a_usable_url_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(
        &path,
        "notifications:\n  endpoints:\n    - name: x\n      url: ftp://example\n",
    )
    .unwrap();
    let out = support::wharf_run(&["serve", path.to_str().unwrap()], &[], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notifications.endpoints[0].url"),
        "{stderr}"
    );
}
