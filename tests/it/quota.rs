//! `storage_bytes` holds while bytes arrive, against a real `wharf serve`:
//! one PATCH far larger than the quota is refused with 403 `DENIED` once
//! the quota is full, and nothing past the quota reaches the disk; parallel
//! sessions share the quota, never passing it together.
//!
//! Bodies are written on raw TCP connections by a thread of their own, so
//! the test reads the server's early answer while the body is still being
//! sent, as a real client must.

use crate::support::http::{Reply, parse_reply};
use crate::support::{Served, random_bytes, sha256_digest};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const QUOTA: u64 = 1 << 20;

struct Registry {
    dir: tempfile::TempDir,
    served: Served,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "http:\n  addr: 127.0.0.1:0\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             limits:\n  storage_bytes: {QUOTA}\n  request_timeout: 60s\n",
            root = dir.path().join("data").display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let served = Served::start(&[path.to_str().unwrap()], &[]);
        Registry { dir, served }
    }

    fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    fn v2(&self) -> PathBuf {
        self.dir.path().join("data/docker/registry/v2")
    }
}

/// Sends `method path` with a body of `len` bytes made by `body(offset)`
/// in pieces, from a thread of its own, while this thread reads the answer.
/// Returns the answer and how many body bytes the server took before it.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    len: u64,
    body: impl Fn(u64) -> Vec<u8> + Send + 'static,
) -> (Reply, u64) {
    let mut stream = TcpStream::connect(addr).expect("connect to wharf");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut sent = 0u64;
        if writer.write_all(head.as_bytes()).is_err() {
            return sent;
        }
        while sent < len {
            let piece = body(sent);
            let piece = &piece[..piece.len().min((len - sent) as usize)];
            // The server may answer, and close, before the body is all sent.
            if writer.write_all(piece).is_err() {
                break;
            }
            sent += piece.len() as u64;
        }
        sent
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let reply = loop {
        if let Some((reply, _)) = parse_reply(&raw)
            && reply.header("content-length").is_some()
        {
            break reply;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                break parse_reply(&raw)
                    .unwrap_or_else(|| {
                        panic!(
                            "no HTTP response to {method} {path}: {:?}",
                            String::from_utf8_lossy(&raw)
                        )
                    })
                    .0;
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let sent = sender.join().unwrap();
    (reply, sent)
}

fn send_bytes(addr: SocketAddr, method: &str, path: &str, body: Vec<u8>) -> Reply {
    let len = body.len() as u64;
    let body = Arc::new(body);
    send(addr, method, path, len, move |at| {
        body[at as usize..].to_vec()
    })
    .0
}

fn location(reply: &Reply) -> String {
    reply
        .header("location")
        .unwrap_or_else(|| panic!("no location: {reply:?}"))
        .to_string()
}

/// 403 `DENIED` with the quota's message.
fn assert_over_quota(reply: &Reply) {
    assert_eq!(reply.status, 403, "{reply:?}");
    let body: Value = serde_json::from_slice(&reply.body).expect("an OCI error body");
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("storage quota exceeded") && message.contains("1 MiB"),
        "{body}"
    );
}

/// Bytes in the data files under `dir`: blobs, manifests and upload
/// sessions. Files vanishing mid-walk (a session ending) count nothing.
fn data_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => total += data_bytes(&path),
            Ok(kind) if kind.is_file() && entry.file_name() == "data" => {
                total += entry.metadata().map_or(0, |m| m.len());
            }
            _ => {}
        }
    }
    total
}

fn push(r: &Registry, repo: &str, blob: &[u8]) -> Reply {
    send_bytes(
        r.addr(),
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256_digest(blob)),
        blob.to_vec(),
    )
}

#[test]
fn one_patch_far_past_the_quota_is_refused_and_stores_nothing_beyond_it() {
    let r = Registry::start();
    let started = send_bytes(r.addr(), "POST", "/v2/team/app/blobs/uploads/", Vec::new());
    assert_eq!(started.status, 202, "{started:?}");
    let session = location(&started);

    // 64 MiB in one streamed PATCH under a 1 MiB quota.
    let huge: u64 = 64 << 20;
    let piece = Arc::new(random_bytes(256 << 10));
    let body = piece.clone();
    let (reply, sent) = send(r.addr(), "PATCH", &session, huge, move |_| body.to_vec());
    assert_over_quota(&reply);
    let on_disk = data_bytes(&r.v2());
    eprintln!(
        "after a {huge}-byte PATCH under a {QUOTA}-byte quota: {on_disk} bytes of data on disk, \
         {sent} bytes of the body sent before the answer"
    );
    assert!(on_disk <= QUOTA, "{on_disk} bytes on disk");
    assert!(sent < huge, "answered before the body was all sent");

    // The session holds the quota: another push is refused too.
    let small = random_bytes(1000);
    assert_over_quota(&push(&r, "team/other", &small));
    // Cancelling the session frees the space, and a push fits again.
    let cancelled = send_bytes(r.addr(), "DELETE", &session, Vec::new());
    assert_eq!(cancelled.status, 204, "{cancelled:?}");
    let pushed = push(&r, "team/other", &small);
    assert_eq!(pushed.status, 201, "{pushed:?}");
    assert!(data_bytes(&r.v2()) <= QUOTA);
}

#[test]
fn parallel_sessions_share_the_quota_and_never_pass_it_together() {
    let r = Registry::start();
    let size = 512 << 10;
    let sessions: Vec<String> = (0..8)
        .map(|i| {
            let started = send_bytes(
                r.addr(),
                "POST",
                &format!("/v2/team/app{i}/blobs/uploads/"),
                Vec::new(),
            );
            assert_eq!(started.status, 202, "{started:?}");
            location(&started)
        })
        .collect();
    let blobs: Vec<Vec<u8>> = (0..8).map(|_| random_bytes(size)).collect();

    // Watch the disk while all eight PATCH at once.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, most, v2) = (done.clone(), most.clone(), r.v2());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                most.fetch_max(data_bytes(&v2), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let addr = r.addr();
    let patches: Vec<_> = sessions
        .iter()
        .zip(&blobs)
        .map(|(session, blob)| {
            let (session, blob) = (session.clone(), blob.clone());
            std::thread::spawn(move || send_bytes(addr, "PATCH", &session, blob))
        })
        .collect();
    let replies: Vec<Reply> = patches.into_iter().map(|p| p.join().unwrap()).collect();
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    let most = most.load(Ordering::Acquire).max(data_bytes(&r.v2()));
    eprintln!(
        "eight parallel {size}-byte PATCHes under a {QUOTA}-byte quota: statuses {:?}, at most \
         {most} bytes of data on disk",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(most <= QUOTA, "{most} bytes on disk");

    // The sessions that took their whole chunk finish; the others were
    // refused for the quota and are cancelled. Sessions that arrive
    // interleaved may each have taken part of the quota, so that none has
    // all of its chunk: the host cannot know a PATCH's length in advance.
    let mut stored = 0;
    for ((reply, session), blob) in replies.iter().zip(&sessions).zip(&blobs) {
        if reply.status == 202 {
            let at = location(reply);
            let separator = if at.contains('?') { '&' } else { '?' };
            let put = send_bytes(
                addr,
                "PUT",
                &format!("{at}{separator}digest={}", sha256_digest(blob)),
                Vec::new(),
            );
            assert_eq!(put.status, 201, "{put:?}");
            stored += 1;
        } else {
            assert_over_quota(reply);
            let cancelled = send_bytes(addr, "DELETE", session, Vec::new());
            assert_eq!(cancelled.status, 204, "{cancelled:?}");
        }
    }
    assert!(stored <= 2, "{stored} blobs of {size} bytes stored");
    assert!(data_bytes(&r.v2()) <= QUOTA);
    // What is left of the quota is there to use.
    for i in stored..2 {
        let pushed = push(&r, &format!("team/late{i}"), &random_bytes(size));
        assert_eq!(pushed.status, 201, "{pushed:?}");
    }
    assert_eq!(data_bytes(&r.v2()), QUOTA);
    assert_over_quota(&push(&r, "team/late", &random_bytes(10)));
}
