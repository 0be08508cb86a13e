//! Wharf on S3: a Garage cluster of three nodes on loopback (replication
//! factor 3) and several `wharf serve` hosts on one bucket, each talking to
//! its own Garage node. What a registry that outgrew one machine relies on:
//! any host serves what another stored, an upload started on one host is
//! finished on another, a Garage node going away stops nothing and loses
//! nothing, `wharf gc` and quotas work on the bucket, and Docker pushes and
//! pulls through it.

use crate::support::garage::Garage;
use crate::support::http::{Reply, send};
use crate::support::{self, dockerd, http};
use crate::support::{Wharf, random_bytes, sha256_digest, wharf_run};
use std::net::SocketAddr;

const BUCKET: &str = "registry";

/// A host serving `bucket` under `root` through Garage node 0.
fn host_on(garage: &Garage, bucket: &str, root: &str) -> Wharf {
    let mut env = garage.registry_env(0, bucket, root);
    env.push(("REGISTRY_STORAGE_REDIRECT_DISABLE".into(), "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Wharf::start_with(&env)
}

/// A host serving `BUCKET` under `root` through Garage node `node`,
/// serving blob GETs itself (`storage.redirect.disable`) unless `extra`
/// says otherwise.
fn host(garage: &Garage, node: usize, root: &str, extra: &[(&str, &str)]) -> Wharf {
    let mut env = garage.registry_env(node, BUCKET, root);
    env.push(("REGISTRY_STORAGE_DELETE_ENABLED".into(), "true".into()));
    env.push(("REGISTRY_STORAGE_REDIRECT_DISABLE".into(), "true".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let wharf = Wharf::start_with(&env);
    assert!(wharf.on_s3());
    wharf
}

fn location(reply: &Reply) -> String {
    reply
        .header("location")
        .unwrap_or_else(|| panic!("no Location in {reply:?}"))
        .to_string()
}

/// Push `data` as a blob of `repo` (POST, then PUT with the bytes: what
/// Distribution takes too); its digest.
fn push_blob(addr: SocketAddr, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let start = send(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        &[],
    );
    assert_eq!(
        start.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&start.body)
    );
    let reply = send(
        addr,
        "PUT",
        &with_digest(&path_of(&location(&start)), &digest),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(
        reply.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    digest
}

/// A Location's path and query (Distribution's are absolute URLs).
fn path_of(location: &str) -> String {
    match location.find("://") {
        Some(at) => {
            let rest = &location[at + 3..];
            rest[rest.find('/').unwrap_or(rest.len())..].to_string()
        }
        None => location.to_string(),
    }
}

/// Push an image of `layers` under `repo:tag`; the manifest's digest.
fn push_image(addr: SocketAddr, repo: &str, tag: &str, layers: &[&[u8]]) -> String {
    let config = format!("{{\"tag\":\"{tag}\"}}");
    let config_digest = push_blob(addr, repo, config.as_bytes());
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|layer| {
            let digest = push_blob(addr, repo, layer);
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let reply = send(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &manifest,
    );
    assert_eq!(
        reply.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    sha256_digest(&manifest)
}

/// The upload `location` closed with `digest`.
fn with_digest(location: &str, digest: &str) -> String {
    let joint = if location.contains('?') { '&' } else { '?' };
    format!("{location}{joint}digest={digest}")
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], &[])
}

#[test]
fn hosts_on_one_bucket_serve_each_others_pushes_and_continue_each_others_uploads() {
    let garage = Garage::start(3, BUCKET);
    let a = host(&garage, 0, "/shared", &[]);
    let b = host(&garage, 1, "/shared", &[]);

    // Pushed through A, pulled through B, byte for byte.
    let layer = random_bytes(7 << 20);
    let manifest = push_image(a.addr(), "team/app", "v1", &[&layer]);
    let pulled = get(b.addr(), "/v2/team/app/manifests/v1");
    assert_eq!(pulled.status, 200);
    assert_eq!(sha256_digest(&pulled.body), manifest);
    let blob = get(
        b.addr(),
        &format!("/v2/team/app/blobs/{}", sha256_digest(&layer)),
    );
    assert_eq!(blob.status, 200);
    assert!(blob.body == layer, "the layer came back different");
    let catalog = get(b.addr(), "/v2/_catalog");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&catalog.body).unwrap(),
        serde_json::json!({"repositories": ["team/app"]})
    );

    // A chunked upload: started and half sent through A, the rest sent and
    // the upload finished through B (three parts and a tail in all).
    let data = random_bytes(13 << 20 | 12345);
    let digest = sha256_digest(&data);
    let start = send(a.addr(), "POST", "/v2/team/app/blobs/uploads/", &[], &[]);
    assert_eq!(start.status, 202);
    let (first, rest) = data.split_at(6 << 20 | 1);
    let patch = send(
        a.addr(),
        "PATCH",
        &location(&start),
        &[("Content-Type", "application/octet-stream")],
        first,
    );
    assert_eq!(
        patch.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&patch.body)
    );
    assert_eq!(
        patch.header("range"),
        Some(format!("0-{}", first.len() - 1).as_str())
    );
    let status = get(b.addr(), &location(&patch));
    assert_eq!(status.status, 204, "B sees A's session");
    assert_eq!(status.header("range"), patch.header("range"));
    let patch = send(
        b.addr(),
        "PATCH",
        &location(&patch),
        &[("Content-Type", "application/octet-stream")],
        rest,
    );
    assert_eq!(
        patch.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&patch.body)
    );
    let put = send(
        b.addr(),
        "PUT",
        &with_digest(&location(&patch), &digest),
        &[],
        &[],
    );
    assert_eq!(put.status, 201, "{:?}", String::from_utf8_lossy(&put.body));
    let back = get(a.addr(), &format!("/v2/team/app/blobs/{digest}"));
    assert!(
        back.status == 200 && back.body == data,
        "status {}",
        back.status
    );
    let ranged = send(
        a.addr(),
        "GET",
        &format!("/v2/team/app/blobs/{digest}"),
        &[("Range", "bytes=7340032-7340131")],
        &[],
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, &data[7340032..7340132]);

    // A wrong digest stores nothing, under either digest.
    let start = send(b.addr(), "POST", "/v2/team/app/blobs/uploads/", &[], &[]);
    let sent = random_bytes(6 << 20);
    let patch = send(b.addr(), "PATCH", &location(&start), &[], &sent);
    let wrong = sha256_digest(b"something else");
    let put = send(
        a.addr(),
        "PUT",
        &with_digest(&location(&patch), &wrong),
        &[],
        &[],
    );
    assert_eq!(put.status, 400, "{:?}", String::from_utf8_lossy(&put.body));
    assert!(String::from_utf8_lossy(&put.body).contains("DIGEST_INVALID"));
    for digest in [wrong, sha256_digest(&sent)] {
        let head = send(
            a.addr(),
            "GET",
            &format!("/v2/team/app/blobs/{digest}"),
            &[],
            &[],
        );
        assert_eq!(head.status, 404);
    }
}

#[test]
fn an_upload_survives_a_restart_of_its_host_and_a_garage_node_going_away() {
    let mut garage = Garage::start(3, BUCKET);
    let mut a = host(&garage, 0, "/nodes", &[]);
    let before = push_image(a.addr(), "app", "before", &[&random_bytes(300_000)]);

    // Half an upload, then the host restarts.
    let data = random_bytes(11 << 20);
    let start = send(a.addr(), "POST", "/v2/app/blobs/uploads/", &[], &[]);
    let patch = send(a.addr(), "PATCH", &location(&start), &[], &data[..5 << 20]);
    assert_eq!(patch.status, 202);
    a.restart();

    // One of the three Garage nodes dies: the other two are a quorum.
    garage.kill(2);
    let patch = send(a.addr(), "PATCH", &location(&patch), &[], &data[5 << 20..]);
    assert_eq!(
        patch.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&patch.body)
    );
    let digest = sha256_digest(&data);
    let put = send(
        a.addr(),
        "PUT",
        &with_digest(&location(&patch), &digest),
        &[],
        &[],
    );
    assert_eq!(put.status, 201, "{:?}", String::from_utf8_lossy(&put.body));
    let during = push_image(a.addr(), "app", "during", &[&random_bytes(200_000)]);
    assert_eq!(get(a.addr(), "/v2/app/manifests/before").status, 200);

    // Back: nothing written before or while it was away is lost, and a
    // host talking to the node that was away serves it all.
    garage.restart(2);
    let c = host(&garage, 2, "/nodes", &[]);
    for (tag, manifest) in [("before", &before), ("during", &during)] {
        for wharf in [&a, &c] {
            let pulled = get(wharf.addr(), &format!("/v2/app/manifests/{tag}"));
            assert_eq!(
                pulled.status,
                200,
                "{tag}: {}",
                String::from_utf8_lossy(&pulled.body)
            );
            assert_eq!(&sha256_digest(&pulled.body), manifest);
        }
    }
    let back = get(c.addr(), &format!("/v2/app/blobs/{digest}"));
    assert!(
        back.status == 200 && back.body == data,
        "status {}",
        back.status
    );
    let back = get(a.addr(), &format!("/v2/app/blobs/{digest}"));
    assert!(
        back.status == 200 && back.body == data,
        "status {}",
        back.status
    );
}

#[test]
fn gc_quotas_and_deletes_work_on_the_bucket() {
    let garage = Garage::start(3, BUCKET);
    let wharf = host(&garage, 0, "/gc", &[]);
    let kept_layer = random_bytes(100_000);
    let lost_layer = random_bytes(200_000);
    push_image(wharf.addr(), "app", "kept", &[&kept_layer]);
    let lost = push_image(wharf.addr(), "app", "lost", &[&lost_layer]);
    let untag = send(
        wharf.addr(),
        "DELETE",
        &format!("/v2/app/manifests/{lost}"),
        &[],
        &[],
    );
    assert_eq!(untag.status, 202);

    // Offline, as registry:2's garbage-collect: the registry's variables
    // name the bucket.
    let mut env = garage.registry_env(0, BUCKET, "/gc");
    env.push(("REGISTRY_STORAGE_DELETE_ENABLED".into(), "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = wharf_run(&["gc"], &env, "");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains(&sha256_digest(&lost_layer)), "{printed}");
    assert!(!printed.contains(&sha256_digest(&kept_layer)), "{printed}");
    let blob = |layer: &[u8]| {
        send(
            wharf.addr(),
            "GET",
            &format!("/v2/app/blobs/{}", sha256_digest(layer)),
            &[],
            &[],
        )
        .status
    };
    assert_eq!((blob(&kept_layer), blob(&lost_layer)), (200, 404));
    assert_eq!(get(wharf.addr(), "/v2/app/manifests/kept").status, 200);

    // A quota on a registry of its own in the bucket: a PATCH far past it
    // is refused and stores nothing beyond it.
    let quota = host(
        &garage,
        1,
        "/quota",
        &[("REGISTRY_LIMITS_STORAGE_BYTES", "6291456")],
    );
    let start = send(quota.addr(), "POST", "/v2/app/blobs/uploads/", &[], &[]);
    let refused = send(
        quota.addr(),
        "PATCH",
        &location(&start),
        &[],
        &random_bytes(16 << 20),
    );
    assert_eq!(
        refused.status,
        403,
        "{:?}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(String::from_utf8_lossy(&refused.body).contains("DENIED"));
    // The refused session keeps what it took until it is cancelled.
    let cancel = send(quota.addr(), "DELETE", &location(&start), &[], &[]);
    assert_eq!(
        cancel.status,
        204,
        "{:?}",
        String::from_utf8_lossy(&cancel.body)
    );
    let fits = random_bytes(1 << 20);
    push_blob(quota.addr(), "app", &fits);
}

#[test]
fn an_unreachable_bucket_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = wharf_run(
        &["serve"],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            ("REGISTRY_STORAGE", "s3"),
            ("REGISTRY_STORAGE_S3_REGION", "garage"),
            ("REGISTRY_STORAGE_S3_BUCKET", "nowhere"),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", &endpoint),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", "GK0"),
            ("REGISTRY_STORAGE_S3_SECRETKEY", "none"),
            ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("s3://nowhere"), "{stderr}");
    assert!(stderr.contains("endpoint and keys"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// The address and the path (with its query) of an absolute URL.
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let at = rest.find('/').unwrap_or(rest.len());
    (
        rest[..at].parse().expect("an address"),
        rest[at..].to_string(),
    )
}

#[test]
fn blob_gets_are_redirected_to_signed_urls_of_the_bucket_unless_disabled() {
    let garage = Garage::start(3, BUCKET);
    let redirecting = host(
        &garage,
        0,
        "/redirect",
        &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "false")],
    );
    let serving = host(&garage, 1, "/redirect", &[]);
    let layer = random_bytes(5 << 20 | 77);
    let digest = push_blob(redirecting.addr(), "app", &layer);
    let path = format!("/v2/app/blobs/{digest}");

    let redirected = get(redirecting.addr(), &path);
    assert_eq!(
        redirected.status,
        307,
        "{:?}",
        String::from_utf8_lossy(&redirected.body)
    );
    assert_eq!(
        redirected.header("docker-content-digest"),
        Some(digest.as_str())
    );
    let url = location(&redirected);
    assert!(url.starts_with(&garage.endpoint(0)), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    // The signed URL serves the blob to a client without credentials,
    // ranges included; the signature covers nothing else.
    let (store, signed) = split_url(&url);
    let fetched = send(store, "GET", &signed, &[], &[]);
    assert!(
        fetched.status == 200 && fetched.body == layer,
        "status {}",
        fetched.status
    );
    let ranged = send(store, "GET", &signed, &[("Range", "bytes=10-19")], &[]);
    assert_eq!((ranged.status, &ranged.body[..]), (206, &layer[10..20]));
    let forged = signed.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(send(store, "GET", &forged, &[], &[]).status, 403);
    // A HEAD is answered by the registry; a blob the repository lacks is
    // 404, never a redirect; a host with redirects off serves the bytes.
    let head = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!("{}{path}", redirecting.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout), "200");
    let missing = format!("/v2/other/blobs/{digest}");
    assert_eq!(get(redirecting.addr(), &missing).status, 404);
    let direct = send(serving.addr(), "GET", &path, &[], &[]);
    assert!(
        direct.status == 200 && direct.body == layer,
        "status {}",
        direct.status
    );
}

#[test]
fn docker_pushes_and_pulls_through_hosts_on_one_bucket_redirected_or_not() {
    let garage = Garage::start(3, BUCKET);
    let a = host(&garage, 0, "/docker", &[]);
    let b = host(
        &garage,
        2,
        "/docker",
        &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "false")],
    );
    let docker = dockerd::Dockerd::start();
    let dir = tempfile::tempdir().unwrap();
    let pushed = format!("{}/app:v1", a.addr());
    let id = docker.import_random(dir.path(), &pushed, &[9 << 20, 300_000]);
    docker.docker_ok(&["push", &pushed]);
    // Gone from the engine, so each pull fetches every layer: through B,
    // which redirects them to the bucket, then through A, which serves
    // them itself.
    docker.docker_ok(&["rmi", &pushed]);
    for host in [&b, &a] {
        let pulled = format!("{}/app:v1", host.addr());
        docker.docker_ok(&["pull", &pulled]);
        let pulled_id = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &pulled]);
        assert_eq!(pulled_id.trim(), id);
        docker.docker_ok(&["rmi", &pulled]);
    }
    let (redirected, served) = (b.stderr(), a.stderr());
    assert!(
        redirected.contains("status=307"),
        "B redirected no GET:\n{}",
        support::tail(&redirected, 20)
    );
    assert!(!served.contains("status=307"), "A redirected a GET");
}

#[test]
fn a_bucket_distribution_wrote_is_served_by_wharf_and_back() {
    let garage = Garage::start(3, BUCKET);
    let wharf = host(&garage, 0, "/both", &[]);
    // Debian's docker-registry (CNCF Distribution) on the same prefix.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nhttp:\n  addr: 127.0.0.1:{port}\nstorage:\n  s3:\n    \
             region: garage\n    bucket: {BUCKET}\n    regionendpoint: {}\n    accesskey: {}\n    \
             secretkey: {}\n    forcepathstyle: true\n    secure: false\n    rootdirectory: /both\n  \
             redirect:\n    disable: true\n  delete:\n    enabled: true\n",
            garage.endpoint(1),
            garage.key_id,
            garage.secret
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = std::process::Command::new("/usr/bin/docker-registry")
        .args(["serve", config.to_str().unwrap()])
        .env_remove("AWS_CA_BUNDLE")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start Debian's docker-registry");
    let distribution = Registry2(Some(child));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http::request(addr, "GET", "/v2/", &[], &[]).is_none_or(|r| r.status != 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let theirs_layer = random_bytes(6 << 20);
    let theirs = push_image(addr, "from/distribution", "v1", &[&theirs_layer]);
    let ours_layer = random_bytes(3 << 20);
    let ours = push_image(wharf.addr(), "from/wharf", "v1", &[&ours_layer]);
    for (server, repo, manifest, layer) in [
        (wharf.addr(), "from/distribution", &theirs, &theirs_layer),
        (addr, "from/wharf", &ours, &ours_layer),
    ] {
        let pulled = send(
            server,
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            &[],
        );
        assert_eq!(pulled.status, 200, "{repo} from {server}");
        assert_eq!(
            &sha256_digest(&pulled.body),
            manifest,
            "{repo} from {server}"
        );
        let blob = get(
            server,
            &format!("/v2/{repo}/blobs/{}", sha256_digest(layer)),
        );
        assert!(
            blob.status == 200 && &blob.body == layer,
            "{repo} from {server}: {}",
            blob.status
        );
    }
    let tags = get(wharf.addr(), "/v2/from/distribution/tags/list");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&tags.body).unwrap(),
        serde_json::json!({"name": "from/distribution", "tags": ["v1"]})
    );
    drop(distribution);
}

/// Debian's docker-registry, stopped when the test ends.
struct Registry2(Option<std::process::Child>);

impl Drop for Registry2 {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            support::terminate(child, std::time::Duration::from_secs(5));
        }
    }
}

#[test]
fn a_bucket_that_goes_away_fails_health_checks_and_requests_with_oci_errors() {
    let mut garage = Garage::start(3, BUCKET);
    let mut env = garage.registry_env(0, BUCKET, "/away");
    env.push(("REGISTRY_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    env.push(("REGISTRY_HTTP_DEBUG_ADDR".into(), "127.0.0.1:0".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let served = support::Served::start(&[], &env);
    push_image(served.addr(), "app", "v1", &[&random_bytes(1000)]);
    assert_eq!(get(served.debug_addr(), "/debug/health").status, 200);

    for node in 0..3 {
        garage.kill(node);
    }
    let health = get(served.debug_addr(), "/debug/health");
    assert_eq!(health.status, 503);
    let reason = String::from_utf8_lossy(&health.body).into_owned();
    assert!(reason.contains("s3://registry/away"), "{reason}");
    // A request that needs the bucket: a 5xx with an OCI error body, and
    // the failure logged with the tenant and the bucket.
    let pulled = get(served.addr(), "/v2/app/manifests/v1");
    assert!(pulled.status >= 500, "{}", pulled.status);
    let body: serde_json::Value = serde_json::from_slice(&pulled.body).expect("an OCI error");
    assert!(body["errors"][0]["code"].is_string(), "{body}");
    let log = served.stderr();
    let failure = log
        .lines()
        .find(|l| l.contains("storage failure"))
        .unwrap_or_else(|| panic!("no storage failure logged:\n{}", support::tail(&log, 20)));
    assert!(
        failure.contains("tenant=default") && failure.contains("s3://registry/away"),
        "{failure}"
    );
}

/// `curl` a request with `Host: host` to `addr`; status and body.
fn curl(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&std::path::Path>,
) -> (u16, Vec<u8>) {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut command = std::process::Command::new("curl");
    command
        .args(["-s", "-X", method, "-o"])
        .arg(out_file.path())
        .args(["-w", "%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{addr}{path}"));
    if let Some(body) = body {
        command
            .arg("--data-binary")
            .arg(format!("@{}", body.display()));
        command.args(["-H", "Content-Type: application/octet-stream"]);
    }
    let out = command.output().expect("run curl");
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (status, std::fs::read(out_file.path()).unwrap())
}

#[test]
fn tenants_keep_their_images_in_a_bucket_or_prefix_of_their_own() {
    let garage = Garage::start(3, BUCKET);
    garage.create_bucket("globex");
    let dir = tempfile::tempdir().unwrap();
    let s3 = |bucket: &str, root: &str| {
        format!(
            "{{ s3: {{ region: garage, bucket: {bucket}, regionendpoint: \"{}\", accesskey: {}, \
             secretkey: {}, forcepathstyle: true, secure: false, rootdirectory: {root} }} }}",
            garage.endpoint(0),
            garage.key_id,
            garage.secret
        )
    };
    let config = format!(
        "http:\n  addr: 127.0.0.1:0\n\
         storage:\n  redirect:\n    disable: true\n\
         tenants:\n\
         \x20 - name: acme\n\
         \x20   hosts: [acme.localhost]\n\
         \x20   storage: {}\n\
         \x20 - name: globex\n\
         \x20   hosts: [globex.localhost]\n\
         \x20   storage: {}\n",
        s3(BUCKET, "/acme"),
        s3("globex", "/")
    );
    let path = dir.path().join("config.yml");
    std::fs::write(&path, config).unwrap();
    let served = support::Served::start(&[path.to_str().unwrap()], &[]);

    let blob = random_bytes(70_000);
    let file = dir.path().join("blob");
    std::fs::write(&file, &blob).unwrap();
    let digest = sha256_digest(&blob);
    let upload = format!("/v2/app/blobs/uploads/?digest={digest}");
    let (status, body) = curl(
        served.addr(),
        "acme.localhost",
        "POST",
        &upload,
        Some(&file),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let blob_path = format!("/v2/app/blobs/{digest}");
    let (status, body) = curl(served.addr(), "acme.localhost", "GET", &blob_path, None);
    assert!(status == 200 && body == blob, "status {status}");
    assert_eq!(
        curl(served.addr(), "globex.localhost", "GET", &blob_path, None).0,
        404
    );

    // Globex's image lands in its own bucket, acme's under its prefix:
    // plain registries on each see only theirs.
    let other = random_bytes(50_000);
    std::fs::write(&file, &other).unwrap();
    let other_digest = sha256_digest(&other);
    let upload = format!("/v2/app/blobs/uploads/?digest={other_digest}");
    let (status, _) = curl(
        served.addr(),
        "globex.localhost",
        "POST",
        &upload,
        Some(&file),
    );
    assert_eq!(status, 201);
    let other_path = format!("/v2/app/blobs/{other_digest}");
    let globex = host_on(&garage, "globex", "/");
    let acme = host_on(&garage, BUCKET, "/acme");
    assert_eq!(get(globex.addr(), &other_path).status, 200);
    assert_eq!(get(globex.addr(), &blob_path).status, 404);
    assert_eq!(get(acme.addr(), &blob_path).status, 200);
    assert_eq!(get(acme.addr(), &other_path).status, 404);
}
