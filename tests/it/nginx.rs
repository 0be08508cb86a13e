//! Behind a reverse proxy (issue #15): Debian's nginx on 127.0.0.1, with
//! the README's snippet exactly as the README shows it (only its address,
//! port and certificate paths filled in), in front of `wharf serve`. A
//! 600 MiB layer goes through in one streamed PATCH, as Docker sends it,
//! comes back whole, and every `Location` names the proxy's scheme and
//! host.

use crate::support;
use crate::support::{Served, terminate};
use sha2::Digest as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The README's nginx snippet.
fn readme_snippet() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("## Behind nginx")
        .nth(1)
        .expect("README has a section \"Behind nginx\"");
    let start = section.find("```nginx\n").expect("an nginx block") + "```nginx\n".len();
    let end = section[start..].find("```").unwrap();
    section[start..start + end].to_string()
}

struct Nginx {
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- nginx error log ---\n{}",
                support::read_lossy(&self.dir.join("error.log"))
            );
        }
    }
}

fn nginx(dir: &Path, snippet: &str) -> Nginx {
    let binary = Path::new("/usr/sbin/nginx");
    assert!(
        binary.exists(),
        "nginx is missing: apt-get install nginx (tests/install does)"
    );
    let config = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log info;\n\
         events {{}}\nhttp {{\n  access_log {dir}/access.log;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  \
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n{snippet}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let test = Command::new(binary)
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "nginx -t:\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Nginx {
        child: Some(child),
        dir: dir.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_600_mib_layer_goes_through_nginx_with_the_readmes_snippet() {
    let dir = tempfile::Builder::new()
        .prefix("wharf-nginx-")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let certs = support::localhost_certs(&dir.join("certs"));
    let data = dir.join("data");
    let wharf = Served::start(
        &[],
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                data.to_str().unwrap(),
            ),
            ("REGISTRY_HTTP_RELATIVEURLS", "false"),
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let snippet = readme_snippet()
        .replace(
            "server 127.0.0.1:5000;",
            &format!("server {};", wharf.addr()),
        )
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "/etc/nginx/certs/registry.pem",
            certs.certificate.to_str().unwrap(),
        )
        .replace(
            "/etc/nginx/certs/registry-key.pem",
            certs.key.to_str().unwrap(),
        );
    assert!(snippet.contains("client_max_body_size 0;"), "{snippet}");
    let _nginx = nginx(dir, &snippet);

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/v2/")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nginx never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 600 MiB, generated and hashed chunk by chunk, sent as a chunked body.
    const CHUNK: usize = 4 << 20;
    const CHUNKS: usize = 150;
    let seed = rand::random::<u64>();
    let chunk = move |i: usize| {
        let mut data = vec![0u8; CHUNK];
        let mut x = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for word in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        data
    };
    let mut hasher = sha2::Sha256::new();
    for i in 0..CHUNKS {
        hasher.update(chunk(i));
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));

    let started = client
        .post(format!("{base}/v2/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("https://localhost:{port}/v2/big/blobs/uploads/")),
        "{location}"
    );
    let body = futures::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let patched = client
        .patch(&location)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let status = patched.status();
    let next = patched
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status, 202, "{}", patched.text().await.unwrap_or_default());
    let next = next.unwrap();
    assert!(
        next.starts_with(&format!("https://localhost:{port}/")),
        "{next}"
    );
    let separator = if next.contains('?') { '&' } else { '?' };
    let finished = client
        .put(format!("{next}{separator}digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        finished.status(),
        201,
        "{}",
        finished.text().await.unwrap_or_default()
    );
    let blob_location = finished.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        blob_location,
        format!("https://localhost:{port}/v2/big/blobs/{digest}")
    );

    // And back, whole.
    let mut got = client.get(&blob_location).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let mut hasher = sha2::Sha256::new();
    let mut length = 0usize;
    while let Some(bytes) = got.chunk().await.unwrap() {
        length += bytes.len();
        hasher.update(&bytes);
    }
    assert_eq!(length, CHUNK * CHUNKS);
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), digest);
    drop(wharf);
}
