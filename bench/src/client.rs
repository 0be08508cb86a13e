//! The registry operations measured, spoken over HTTP with reqwest exactly
//! as the distribution-spec describes them, each checked for the status the
//! spec requires so that a failing registry never counts as a fast one.

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry's base URL and the `Authorization` to send, if any.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    base: String,
    authorization: Option<String>,
}

/// The `n`th of the loopback addresses clients of their own connect from
/// (127.0.1.1 onwards): a registry that limits requests per client address
/// sees each as the separate machine it stands for.
pub fn client_address(n: usize) -> std::net::IpAddr {
    let n = n as u32 + 1;
    std::net::Ipv4Addr::new(127, 0, 1 + (n >> 8) as u8, n as u8).into()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Registry {
    pub fn new(base: String, authorization: Option<String>) -> anyhow::Result<Registry> {
        Registry::from_address(base, authorization, None)
    }

    /// A client whose connections come from `local` (a loopback address of
    /// its own, as a machine of its own would have), or from any address.
    pub fn from_address(
        base: String,
        authorization: Option<String>,
        local: Option<std::net::IpAddr>,
    ) -> anyhow::Result<Registry> {
        let client = Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(4)
            .local_address(local)
            .build()?;
        Ok(Registry {
            client,
            base,
            authorization,
        })
    }

    fn with_auth(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
            None => request,
        }
    }

    fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    async fn expect(
        request: RequestBuilder,
        status: StatusCode,
        what: &str,
    ) -> anyhow::Result<Response> {
        let response = request.send().await.with_context(|| what.to_string())?;
        if response.status() != status {
            let got = response.status();
            let body = response.text().await.unwrap_or_default();
            bail!("{what}: expected {status}, got {got}: {body}");
        }
        Ok(response)
    }

    fn location(response: &Response) -> anyhow::Result<String> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("no Location header")?;
        Ok(location.to_string())
    }

    fn with_digest(location: &str, digest: &str) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// `POST /v2/<repo>/blobs/uploads/`: the new session's location.
    async fn start_upload(&self, repo: &str) -> anyhow::Result<String> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let response = Self::expect(
            self.with_auth(self.client.post(url)),
            StatusCode::ACCEPTED,
            "starting an upload",
        )
        .await?;
        Ok(self.url(&Self::location(&response)?))
    }

    /// POST, then PUT with `?digest=` and the whole body.
    pub async fn upload_monolithic(
        &self,
        repo: &str,
        blob: Bytes,
        digest: &str,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let location = self.start_upload(repo).await?;
        let len = blob.len();
        Self::expect(
            self.with_auth(self.client.put(Self::with_digest(&location, digest)))
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len)
                .body(blob),
            StatusCode::CREATED,
            "finishing a monolithic upload",
        )
        .await?;
        Ok(started.elapsed())
    }

    /// POST, PATCH with the whole body, then PUT with `?digest=` to finish.
    /// `body` is a known-length buffer or a chunked stream.
    pub async fn upload_streamed(
        &self,
        repo: &str,
        body: reqwest::Body,
        length: Option<u64>,
        digest: &str,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let location = self.start_upload(repo).await?;
        let mut patch = self
            .with_auth(self.client.patch(&location))
            .header(CONTENT_TYPE, "application/octet-stream");
        if let Some(length) = length {
            patch = patch.header(CONTENT_LENGTH, length);
        }
        let response = Self::expect(
            patch.body(body),
            StatusCode::ACCEPTED,
            "sending a PATCH chunk",
        )
        .await?;
        let location = self.url(&Self::location(&response)?);
        Self::expect(
            self.with_auth(self.client.put(Self::with_digest(&location, digest)))
                .header(CONTENT_LENGTH, 0),
            StatusCode::CREATED,
            "finishing a streamed upload",
        )
        .await?;
        Ok(started.elapsed())
    }

    /// GET a blob, reading and counting every byte.
    ///
    /// Spoken over a plain socket into one reused 64 KiB buffer, the way
    /// curl reads (16 KiB), rather than with reqwest: reqwest's client hands
    /// each read over in a new buffer and tops out near 2.3 GB/s on this
    /// machine, below what either registry can send, which would measure
    /// the client. The buffer stays small for the same reason: reading into
    /// 1 MiB, which does not stay in the cache, caps the client near 2.5
    /// GB/s, while 16 or 64 KiB reads keep up with 3.5.
    pub async fn get_blob(&self, repo: &str, digest: &str, len: u64) -> anyhow::Result<Duration> {
        ensure!(
            self.authorization.is_none(),
            "the raw blob GET sends no credentials"
        );
        let authority = self
            .base
            .strip_prefix("http://")
            .context("the raw blob GET speaks plain HTTP only")?
            .to_string();
        let request = format!(
            "GET /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        );
        tokio::task::spawn_blocking(move || raw_get(&authority, &request, len)).await?
    }

    /// Push a small image (config, one layer, OCI manifest) as `repo:tag`;
    /// returns the manifest's path for the load generator.
    pub async fn push_small_image(&self, repo: &str, tag: &str) -> anyhow::Result<String> {
        let layer = Bytes::from(
            (0..1024u32)
                .map(|i| (i * 31 % 251) as u8)
                .collect::<Vec<_>>(),
        );
        self.push_image(repo, tag, layer).await
    }

    /// Push an image of one `layer` (config, layer, OCI manifest) as
    /// `repo:tag`; returns the manifest's path.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: Bytes) -> anyhow::Result<String> {
        let config = Bytes::from_static(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let mut descriptors = Vec::new();
        for (blob, media_type) in [
            (config, "application/vnd.oci.image.config.v1+json"),
            (layer, "application/vnd.oci.image.layer.v1.tar"),
        ] {
            let digest = sha256(&blob);
            let size = blob.len();
            self.upload_monolithic(repo, blob, &digest).await?;
            descriptors.push(serde_json::json!({
                "mediaType": media_type, "digest": digest, "size": size,
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptors[0],
            "layers": [descriptors[1]],
        })
        .to_string();
        let path = format!("/v2/{repo}/manifests/{tag}");
        Self::expect(
            self.with_auth(self.client.put(format!("{}{path}", self.base)))
                .header(CONTENT_TYPE, OCI_MANIFEST)
                .body(manifest),
            StatusCode::CREATED,
            "pushing a manifest",
        )
        .await?;
        Ok(path)
    }
}

impl Registry {
    /// `GET path` expecting `200 OK` and a JSON body: the time from sending
    /// to the last byte, and the body.
    pub async fn get_json(
        &self,
        path: &str,
        accept: &str,
    ) -> anyhow::Result<(Duration, serde_json::Value)> {
        let started = Instant::now();
        let response = Self::expect(
            self.with_auth(self.client.get(format!("{}{path}", self.base)))
                .header(reqwest::header::ACCEPT, accept),
            StatusCode::OK,
            &format!("GET {path}"),
        )
        .await?;
        let body = response.bytes().await?;
        let took = started.elapsed();
        let json = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path}: the body is not JSON"))?;
        Ok((took, json))
    }

    /// `HEAD path` of a manifest: its digest and size, from the headers.
    pub async fn head_manifest(&self, path: &str) -> anyhow::Result<(String, u64)> {
        let response = Self::expect(
            self.with_auth(self.client.head(format!("{}{path}", self.base)))
                .header(reqwest::header::ACCEPT, OCI_MANIFEST),
            StatusCode::OK,
            &format!("HEAD {path}"),
        )
        .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .with_context(|| format!("HEAD {path}: no {name}"))
        };
        Ok((
            header("docker-content-digest")?,
            header("content-length")?.parse()?,
        ))
    }

    /// `PUT /v2/<repo>/manifests/<reference>` of an OCI image manifest,
    /// expecting `201 Created`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: String,
    ) -> anyhow::Result<()> {
        Self::expect(
            self.with_auth(
                self.client
                    .put(format!("{}/v2/{repo}/manifests/{reference}", self.base)),
            )
            .header(CONTENT_TYPE, OCI_MANIFEST)
            .body(manifest),
            StatusCode::CREATED,
            "pushing a manifest",
        )
        .await?;
        Ok(())
    }
}

/// Send `request` to `authority`, expect `200 OK` with a body of `len`
/// bytes, and read them all; the time from connecting to the last byte.
fn raw_get(authority: &str, request: &str, len: u64) -> anyhow::Result<Duration> {
    use std::io::{Read as _, Write as _};
    let started = Instant::now();
    let mut socket = std::net::TcpStream::connect(authority)?;
    socket.write_all(request.as_bytes())?;
    let mut buf = vec![0u8; 64 << 10];
    let mut filled = 0;
    let head_end = loop {
        let n = socket.read(&mut buf[filled..])?;
        ensure!(n > 0, "connection closed before the response head");
        filled += n;
        if let Some(at) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        ensure!(filled < buf.len(), "response head too large");
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    ensure!(
        head.starts_with("http/1.1 200"),
        "downloading a blob: {}",
        head.lines().next().unwrap_or_default()
    );
    let length: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .context("downloading a blob: no Content-Length")?
        .trim()
        .parse()?;
    ensure!(
        length == len,
        "Content-Length {length} for a {len}-byte blob"
    );
    let mut got = (filled - head_end) as u64;
    while got < len {
        let n = socket.read(&mut buf)?;
        ensure!(n > 0, "downloaded {got} bytes of a {len}-byte blob");
        got += n as u64;
    }
    ensure!(got == len, "downloaded {got} bytes of a {len}-byte blob");
    Ok(started.elapsed())
}
