//! Crash safety: the real `wharf serve` is killed with SIGKILL at random
//! points while a client pushes (monolithic and chunked blob uploads,
//! manifest and tag writes, manifest deletes), restarted on the same data
//! directory, and checked: every acknowledged object is readable with its
//! digest, every blob on disk hashes to its name, every tag resolves to a
//! readable manifest, and no temporary file survives the restart. Also:
//! a chunked upload resumes across a crash, and idle sessions are purged.

// `request` answers `None` when the server went away (a body shorter than
// its length was cut off by the kill: no reply).
use crate::support::http::{Reply, request};
use crate::support::{Wharf, random_bytes, sha256_digest};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn session_path(reply: &Reply) -> Option<String> {
    let location = reply.header("location")?;
    Some(location[location.find("/v2/")?..].to_string())
}

fn with_digest(session: &str, digest: &str) -> String {
    let sep = if session.contains('?') { '&' } else { '?' };
    format!("{session}{sep}digest={digest}")
}

/// What the server acknowledged.
#[derive(Default)]
struct Acked {
    blobs: Vec<(String, Vec<u8>)>,
    /// Every manifest PUT and DELETE sent, in order, and whether it was
    /// acknowledged: one cut short by the kill may or may not have happened.
    manifest_ops: Vec<ManifestOp>,
}

struct ManifestOp {
    repo: String,
    digest: String,
    /// The bytes for a PUT, none for a DELETE.
    put: Option<Vec<u8>>,
    acknowledged: bool,
}

/// What must be true of a manifest after replaying the operations on it.
enum Expected<'a> {
    Present(&'a [u8]),
    Absent,
    /// The last operation on it was cut short: either outcome is allowed.
    Either,
}

impl Acked {
    fn expected_manifests(&self) -> Vec<(&str, &str, Expected<'_>)> {
        let mut state: Vec<(&str, &str, Expected<'_>)> = Vec::new();
        for op in &self.manifest_ops {
            let expected = match (&op.put, op.acknowledged) {
                (Some(bytes), true) => Expected::Present(bytes),
                (None, true) => Expected::Absent,
                (_, false) => Expected::Either,
            };
            match state
                .iter_mut()
                .find(|(r, d, _)| *r == op.repo && *d == op.digest)
            {
                Some(entry) => entry.2 = expected,
                None => state.push((&op.repo, &op.digest, expected)),
            }
        }
        state
    }
}

/// Pushes until a request fails (the server was killed).
fn push_until_killed(addr: SocketAddr, round: usize, acked: &Mutex<Acked>) -> Option<()> {
    let repo = format!("crash/r{}", round % 3);
    let mut step = 0usize;
    loop {
        step += 1;
        // A monolithic blob.
        let config = format!(r#"{{"round":{round},"step":{step}}}"#).into_bytes();
        let config_digest = sha256_digest(&config);
        let reply = request(
            addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={config_digest}"),
            &[],
            &config,
        )?;
        if reply.status == 201 {
            acked.lock().unwrap().blobs.push((repo.clone(), config));
        }
        // A chunked blob, three chunks.
        let layer = random_bytes(200_000 + step * 1000);
        let layer_digest = sha256_digest(&layer);
        let start = request(
            addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )?;
        let mut session = session_path(&start)?;
        let third = layer.len() / 3;
        for (i, chunk) in layer.chunks(third + 1).enumerate() {
            let first = i * (third + 1);
            let range = format!("{first}-{}", first + chunk.len() - 1);
            let reply = request(addr, "PATCH", &session, &[("Content-Range", &range)], chunk)?;
            if reply.status != 202 {
                return None;
            }
            session = session_path(&reply)?;
        }
        let reply = request(addr, "PUT", &with_digest(&session, &layer_digest), &[], b"")?;
        if reply.status == 201 {
            acked
                .lock()
                .unwrap()
                .blobs
                .push((repo.clone(), layer.clone()));
        }
        // A manifest, tagged.
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 20},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        }))
        .unwrap();
        let digest = sha256_digest(&manifest);
        let tag = format!("t{}", step % 4);
        let reply = request(
            addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        );
        let acknowledged = reply.as_ref().is_some_and(|r| r.status == 201);
        acked.lock().unwrap().manifest_ops.push(ManifestOp {
            repo: repo.clone(),
            digest: digest.clone(),
            put: Some(manifest),
            acknowledged,
        });
        reply?;
        // Every third step, delete the manifest again.
        if step.is_multiple_of(3) {
            let reply = request(
                addr,
                "DELETE",
                &format!("/v2/{repo}/manifests/{digest}"),
                &[],
                b"",
            );
            let acknowledged = reply.as_ref().is_some_and(|r| r.status == 202);
            acked.lock().unwrap().manifest_ops.push(ManifestOp {
                repo: repo.clone(),
                digest,
                put: None,
                acknowledged,
            });
            reply?;
        }
    }
}

/// Every blob file under the data directory hashes to its name.
fn assert_blobs_whole(data: &Path) {
    let blobs = data.join("docker/registry/v2/blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&blobs) else {
        return;
    };
    for prefix in prefixes {
        for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let dir = blob.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            // A directory without data (a crash between creating it and
            // renaming the data in) is invisible: stat finds no blob.
            let Ok(bytes) = std::fs::read(dir.join("data")) else {
                continue;
            };
            assert_eq!(
                sha256_digest(&bytes),
                format!("sha256:{name}"),
                "torn blob {}",
                dir.display()
            );
        }
    }
}

/// Checks the invariants; acknowledged blobs from index `from_blob` on
/// (earlier ones were checked after an earlier crash and stay on disk).
fn check_invariants(wharf: &Wharf, acked: &Acked, from_blob: usize) {
    let addr = wharf.addr();
    for (repo, bytes) in &acked.blobs[from_blob..] {
        let digest = sha256_digest(bytes);
        let reply = request(addr, "GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"")
            .expect("a response");
        assert_eq!(reply.status, 200, "acknowledged blob {digest} lost");
        assert_eq!(sha256_digest(&reply.body), digest);
    }
    for (repo, digest, expected) in acked.expected_manifests() {
        let reply = request(
            addr,
            "GET",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        )
        .expect("a response");
        match expected {
            Expected::Present(bytes) => {
                assert_eq!(reply.status, 200, "acknowledged manifest {digest} lost");
                assert_eq!(reply.body, bytes, "manifest {digest} torn");
            }
            Expected::Absent => {
                assert_eq!(reply.status, 404, "deleted manifest {digest} is back");
            }
            Expected::Either => {
                assert!(
                    [200, 404].contains(&reply.status),
                    "manifest {digest} answers {}",
                    reply.status
                );
            }
        }
    }
    for r in 0..3 {
        let repo = format!("crash/r{r}");
        let reply =
            request(addr, "GET", &format!("/v2/{repo}/tags/list"), &[], b"").expect("a response");
        if reply.status == 404 {
            continue;
        }
        let tags: Value = serde_json::from_slice(&reply.body).unwrap();
        for tag in tags["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            let reply = request(
                addr,
                "GET",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Accept", OCI_MANIFEST)],
                b"",
            )
            .expect("a response");
            assert_eq!(reply.status, 200, "tag {repo}:{tag} resolves to nothing");
            assert_eq!(
                Some(sha256_digest(&reply.body).as_str()),
                reply.header("docker-content-digest")
            );
        }
    }
    assert_blobs_whole(&wharf.data_dir());
    let tmp = wharf.data_dir().join("docker/registry/v2/wharf-tmp");
    let left = std::fs::read_dir(&tmp).map_or(0, |d| d.count());
    assert_eq!(left, 0, "temporary files survived the restart");
}

/// The generator of the kill delays: seeded from `WHARF_CRASH_SEED` when
/// it is set, else at random, and the seed printed, so a failing run's
/// delays can be replayed (the pushes race the kills, so a replay repeats
/// the delays, not every interleaving).
fn kill_delays() -> rand::rngs::StdRng {
    use rand::SeedableRng as _;
    let seed = match std::env::var("WHARF_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("WHARF_CRASH_SEED is a number"),
        Err(_) => rand::random(),
    };
    eprintln!("crash test: kill delays seeded with {seed} (replay: WHARF_CRASH_SEED={seed})");
    rand::rngs::StdRng::seed_from_u64(seed)
}

#[test]
fn sigkill_during_pushes_loses_nothing_acknowledged_and_shows_nothing_torn() {
    use rand::RngExt as _;
    let mut delays = kill_delays();
    let mut wharf = Wharf::start();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let rounds = 24;
    let mut checked = 0;
    for round in 0..rounds {
        let addr = wharf.addr();
        let done = Arc::new(AtomicBool::new(false));
        let pusher = {
            let acked = acked.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let _ = push_until_killed(addr, round, &acked);
                done.store(true, Ordering::Release);
            })
        };
        let delay: u64 = delays.random_range(10..250);
        std::thread::sleep(Duration::from_millis(delay));
        wharf.crash_and_restart();
        pusher.join().unwrap();
        let acked = acked.lock().unwrap();
        check_invariants(&wharf, &acked, checked);
        checked = acked.blobs.len();
    }
    check_invariants(&wharf, &acked.lock().unwrap(), 0);
    let acked = acked.lock().unwrap();
    assert!(
        acked.blobs.len() > rounds,
        "too few pushes were acknowledged ({}) for the test to mean anything",
        acked.blobs.len()
    );
}

#[test]
fn chunked_upload_interrupted_by_a_crash_resumes() {
    let mut wharf = Wharf::start();
    let data = random_bytes(300_000);
    let digest = sha256_digest(&data);
    let start = request(
        wharf.addr(),
        "POST",
        "/v2/resume/app/blobs/uploads/",
        &[],
        b"",
    )
    .unwrap();
    let session = session_path(&start).unwrap();
    let reply = request(
        wharf.addr(),
        "PATCH",
        &session,
        &[("Content-Range", "0-99999")],
        &data[..100_000],
    )
    .unwrap();
    assert_eq!(reply.status, 202);
    wharf.crash_and_restart();
    let status = request(wharf.addr(), "GET", &session, &[], b"").unwrap();
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-99999"));
    let reply = request(
        wharf.addr(),
        "PATCH",
        &session,
        &[("Content-Range", "100000-299999")],
        &data[100_000..],
    )
    .unwrap();
    assert_eq!(reply.status, 202);
    let session = session_path(&reply).unwrap();
    let done = request(
        wharf.addr(),
        "PUT",
        &with_digest(&session, &digest),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(done.status, 201);
    assert_eq!(done.header("docker-content-digest"), Some(digest.as_str()));
    let blob = request(
        wharf.addr(),
        "GET",
        &format!("/v2/resume/app/blobs/{digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(blob.body, data);
}

#[test]
fn restart_removes_temporary_files_and_empty_sessions() {
    let mut wharf = Wharf::start();
    let v2 = wharf.data_dir().join("docker/registry/v2");
    std::fs::write(v2.join("wharf-tmp/3f0c-leftover"), b"half written").unwrap();
    let empty = v2.join("repositories/left/app/_uploads/9b2f2a0e-5d43-4f2c-8a7e-0c1d2e3f4a5b");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("startedat"), "1").unwrap();
    wharf.crash_and_restart();
    assert!(!v2.join("wharf-tmp/3f0c-leftover").exists());
    // Sessions are recovered by the walk at start, which runs beside
    // serving; the catalog answers once it has ended.
    let catalog = request(wharf.addr(), "GET", "/v2/_catalog", &[], b"").unwrap();
    assert_eq!(catalog.status, 200);
    assert!(!empty.exists());
}

#[test]
fn idle_upload_sessions_are_purged_and_their_space_reclaimed() {
    let wharf = Wharf::start_with(&[
        ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2s"),
        ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "1s"),
    ]);
    let start = request(
        wharf.addr(),
        "POST",
        "/v2/idle/app/blobs/uploads/",
        &[],
        b"",
    )
    .unwrap();
    let session = session_path(&start).unwrap();
    let reply = request(wharf.addr(), "PATCH", &session, &[], &random_bytes(50_000)).unwrap();
    assert_eq!(reply.status, 202);
    let uploads = wharf
        .data_dir()
        .join("docker/registry/v2/repositories/idle/app/_uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    let mut gone = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if std::fs::read_dir(&uploads).unwrap().count() == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the idle session was not purged");
    let status = request(wharf.addr(), "GET", &session, &[], b"").unwrap();
    assert_eq!(status.status, 404);
}
