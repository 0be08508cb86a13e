//! The two registries under test, each started on a free loopback port with
//! a fresh data directory and the same `registry:2` configuration file, and
//! their memory as the kernel reports it.

use anyhow::{Context as _, bail};
use std::fmt;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a registry may take to answer `GET /v2/` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Debian's build of CNCF Distribution.
pub const DISTRIBUTION_BIN: &str = "/usr/bin/docker-registry";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Distribution,
    Wharf,
    /// The standalone component under stock `wasmtime serve`.
    Standalone,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Distribution => "Distribution",
            Kind::Wharf => "Wharf",
            Kind::Standalone => "Standalone",
        })
    }
}

/// The binaries to run.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub wharf: PathBuf,
    pub distribution: PathBuf,
    /// Stock `wasmtime` (wasmtime-cli), for the standalone component.
    pub wasmtime: PathBuf,
}

/// Where `tests/install` puts wasmtime-cli.
pub const WASMTIME_BIN: &str = "/opt/wharf-tools/wasmtime-48.0.8/bin/wasmtime";

/// htpasswd credentials both registries check, when the line needs them.
#[derive(Clone, Debug)]
pub struct Htpasswd {
    pub file: PathBuf,
    pub user: String,
    pub password: String,
}

/// How both registries authenticate a line's requests.
#[derive(Clone, Debug)]
pub enum Auth {
    Htpasswd(Htpasswd),
    /// `auth.token`: the bundle trusted and a token it verifies.
    Token(Token),
}

/// A token both registries accept: ES256, its key's self-signed
/// certificate in the token's `x5c` header and in the `rootcertbundle`.
#[derive(Clone, Debug)]
pub struct Token {
    pub bundle: PathBuf,
    pub token: String,
}

/// The `service` and `issuer` of [`Token`]s.
const TOKEN_SERVICE: &str = "wharf-bench";
const TOKEN_ISSUER: &str = "wharf-bench-issuer";

impl Auth {
    /// The `auth` section of the registries' configuration.
    fn section(&self) -> String {
        match self {
            Auth::Htpasswd(h) => format!(
                "auth:\n  htpasswd:\n    realm: wharf-bench\n    path: {}\n",
                h.file.display()
            ),
            Auth::Token(t) => format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:9/token\n    service: {TOKEN_SERVICE}\n    \
                 issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.bundle.display()
            ),
        }
    }

    /// The `Authorization` value every request sends.
    pub fn authorization(&self) -> String {
        use base64::Engine as _;
        match self {
            Auth::Htpasswd(h) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", h.user, h.password))
            ),
            Auth::Token(t) => format!("Bearer {}", t.token),
        }
    }

    /// How a line names it.
    pub fn label(&self) -> &'static str {
        match self {
            Auth::Htpasswd(_) => "with htpasswd auth",
            Auth::Token(_) => "with token auth",
        }
    }
}

/// A signing key and certificate in `dir`, and a token for a day's pushes
/// and pulls of `repository`.
pub fn token(dir: &Path, repository: &str) -> anyhow::Result<Token> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wharf-bench token signer");
    let certificate = params.self_signed(&key)?;
    let bundle = dir.join("token-signer.pem");
    std::fs::write(&bundle, certificate.pem())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "bench", "aud": TOKEN_SERVICE,
        "exp": now + 86_400, "nbf": now - 60, "iat": now,
        "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}],
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    use base64::Engine as _;
    header.x5c = Some(vec![
        base64::engine::general_purpose::STANDARD.encode(certificate.der()),
    ]);
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )?;
    Ok(Token { bundle, token })
}

/// Where a registry under test stores.
#[derive(Clone, Debug)]
pub enum Store {
    /// A fresh data directory of its own.
    Disk,
    /// A data directory written before the line starts (a large registry
    /// laid out directly), which several servers read in turn. Upload
    /// purging is off, so that no background walk of it is timed.
    Existing(PathBuf),
    /// A prefix of its own in an S3 bucket.
    S3 {
        endpoint: String,
        bucket: String,
        key_id: String,
        secret: String,
    },
}

impl Store {
    /// The `storage` section for `data` (a directory, or the prefix).
    fn section(&self, data: &Path, prefix: &str) -> String {
        match self {
            Store::Disk => format!(
                "storage:\n  filesystem:\n    rootdirectory: {}\n",
                data.display()
            ),
            Store::Existing(root) => format!(
                "storage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    \
                 uploadpurging:\n      enabled: false\n",
                root.display()
            ),
            // The same keys for both: registry:2's S3 driver's. Blob GETs
            // are served by the registry (no redirect to the bucket), as
            // Wharf does.
            Store::S3 {
                endpoint,
                bucket,
                key_id,
                secret,
            } => format!(
                "storage:\n  s3:\n    region: garage\n    bucket: {bucket}\n    regionendpoint: {endpoint}\n    \
                 accesskey: {key_id}\n    secretkey: {secret}\n    forcepathstyle: true\n    secure: false\n    \
                 rootdirectory: /{prefix}\n  redirect:\n    disable: true\n"
            ),
        }
    }
}

/// A running registry; stopped and its data removed on drop.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// From spawning the process to its first answer to `GET /v2/`.
    pub ready_after: Duration,
    child: Child,
    dir: TempDir,
}

impl Server {
    pub fn start(kind: Kind, bins: &Binaries, auth: Option<&Auth>) -> anyhow::Result<Server> {
        Server::start_on(kind, bins, auth, &Store::Disk)
    }

    pub fn start_on(
        kind: Kind,
        bins: &Binaries,
        auth: Option<&Auth>,
        store: &Store,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-bench-{}-", kind.to_string().to_lowercase()))
            .tempdir()
            .context("creating a data directory")?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let prefix = format!("{}-{port}", kind.to_string().to_lowercase());
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n{}http:\n  addr: {addr}\n",
            store.section(&data, &prefix)
        );
        if let Some(auth) = auth {
            config.push_str(&auth.section());
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = File::create(dir.path().join("server.log"))?;
        let mut command = match kind {
            Kind::Distribution => {
                let mut c = Command::new(&bins.distribution);
                // This environment's CA bundle is one Distribution's AWS SDK
                // refuses; the S3 endpoint here is plain HTTP anyway.
                c.arg("serve").env_remove("AWS_CA_BUNDLE");
                c
            }
            Kind::Wharf => {
                let mut c = Command::new(&bins.wharf);
                c.arg("serve").env_remove("WHARF_LOG").arg(&config_path);
                c
            }
            Kind::Standalone => standalone_command(bins, &dir, &data, addr, auth, store)?,
        };
        if kind == Kind::Distribution {
            command.arg(&config_path);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {kind}"))?;
        let spawned = Instant::now();
        let mut server = Server {
            kind,
            addr,
            ready_after: Duration::ZERO,
            child,
            dir,
        };
        server.wait_ready()?;
        server.ready_after = spawned.elapsed();
        Ok(server)
    }

    /// Polls every 2 ms, so that the start-up line can read the time.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited at start ({status}):\n{}", self.kind, self.log());
            }
            if answers_v2(self.addr) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} did not answer GET /v2/ within {READY_TIMEOUT:?}:\n{}",
                    self.kind,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Start counting the peak resident set size afresh (`clear_refs` 5).
    pub fn reset_peak_rss(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .context("resetting the peak RSS through /proc/<pid>/clear_refs")
    }

    /// Peak resident set size in bytes since the last reset (`VmHWM`).
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmHWM:")
    }

    /// CPU time the server has used so far, user and system, all threads
    /// (`/proc/<pid>/stat`, 10 ms resolution).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        /// Clock ticks per second in `/proc`: USER_HZ, 100 on Linux.
        const USER_HZ: u64 = 100;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces; the fields after it start with
        // the state (field 3), so utime and stime (14 and 15) are 11 and 12.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("no command name in /proc/<pid>/stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            Ok(fields
                .get(i)
                .context("/proc/<pid>/stat is too short")?
                .parse()?)
        };
        Ok(Duration::from_millis(
            (ticks(11)? + ticks(12)?) * 1000 / USER_HZ,
        ))
    }

    /// Current resident set size in bytes (`VmRSS`).
    pub fn rss(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmRSS:")
    }
}

/// `wasmtime serve` of the standalone component (exported by this `wharf`
/// into `dir`), as the README runs it: the data directory preopened at
/// `/var/lib/registry`, htpasswd from the same variables as registry:2.
fn standalone_command(
    bins: &Binaries,
    dir: &TempDir,
    data: &Path,
    addr: SocketAddr,
    auth: Option<&Auth>,
    store: &Store,
) -> anyhow::Result<Command> {
    if !matches!(store, Store::Disk) {
        bail!("the standalone component stores on wasi:filesystem only");
    }
    let component = dir.path().join("registry.wasm");
    let out = Command::new(&bins.wharf)
        .args(["component", "export", "--standalone"])
        .arg(&component)
        .output()
        .context("running wharf component export")?;
    if !out.status.success() {
        bail!(
            "wharf component export --standalone failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut c = Command::new(&bins.wasmtime);
    c.args(["serve", "-S", "cli", "--addr", &addr.to_string()])
        .arg("--dir")
        .arg(format!("{}::/var/lib/registry", data.display()));
    if let Some(auth) = auth {
        let Auth::Htpasswd(auth) = auth else {
            bail!("the standalone component authenticates with htpasswd only");
        };
        let folder = auth
            .file
            .parent()
            .context("the htpasswd file's directory")?;
        let name = auth.file.file_name().context("the htpasswd file's name")?;
        c.arg("--dir")
            .arg(format!("{}::/auth", folder.display()))
            .args(["--env", "REGISTRY_AUTH=htpasswd", "--env"])
            .arg(format!(
                "REGISTRY_AUTH_HTPASSWD_PATH=/auth/{}",
                name.to_string_lossy()
            ));
    }
    c.arg(&component);
    Ok(c)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Whether `GET /v2/` gets an HTTP answer (200, or 401 with auth on).
fn answers_v2(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && (head.ends_with(b"200") || head.ends_with(b"401"))
}

/// Write an htpasswd file (bcrypt, as `htpasswd -B` makes) with one user.
pub fn htpasswd(dir: &Path) -> anyhow::Result<Htpasswd> {
    let user = "bench".to_string();
    let password = "wharf-bench-password".to_string();
    let out = Command::new("htpasswd")
        .args(["-nbB", &user, &password])
        .output()
        .context("running htpasswd (Debian package apache2-utils)")?;
    if !out.status.success() {
        bail!(
            "htpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let file = dir.join("htpasswd");
    std::fs::write(&file, &out.stdout)?;
    Ok(Htpasswd {
        file,
        user,
        password,
    })
}
