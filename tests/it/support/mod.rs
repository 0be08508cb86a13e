//! Shared helpers for Wharf's integration tests: start a real `wharf serve`
//! process on loopback with a private data directory, and stop it again.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod components;
pub mod distribution;
pub mod dockerd;
pub mod garage;
pub mod http;
pub mod stock;
pub mod tls;
pub mod token_server;

/// The binary under test, built by cargo for this test target.
const WHARF_BIN: &str = env!("CARGO_BIN_EXE_wharf");

/// How long `wharf serve` may take to print its `listening on` line. Only a
/// readiness wait: it is generous because a debug build on a loaded 2-core
/// machine may compile its WebAssembly component at start-up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a stopping server gets after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A running `wharf serve` with its own temporary data directory.
///
/// The data directory lives as long as this value, across [`Wharf::restart`];
/// the server process is stopped (and waited for) on drop, also on panic.
pub struct Wharf {
    dir: TempDir,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
    addr: SocketAddr,
    /// How many times the server has been started, to name its log files.
    generation: u32,
    /// Whether the standalone component under `wasmtime serve` serves,
    /// rather than `wharf serve` (see [`stock`]).
    stock: bool,
}

/// With `WHARF_TEST_STORAGE=s3`, every [`Wharf`] stores in S3: a Garage
/// cluster of three nodes this test binary shares (started on a thread that
/// lives as long as the process, so the nodes die with it), each registry
/// under a prefix of its own. How `tests/run` runs the conformance suite on
/// the S3 backend.
pub fn test_storage_env() -> Vec<(String, String)> {
    if std::env::var("WHARF_TEST_STORAGE").as_deref() != Ok("s3") {
        return Vec::new();
    }
    static CLUSTER: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let env = CLUSTER.get_or_init(|| {
        let (send, started) = mpsc::channel();
        std::thread::spawn(move || {
            let garage = garage::Garage::start(3, "wharf-tests");
            let mut env = garage.registry_env(0, "wharf-tests", "unused");
            // The conformance suite checks the registry's own GET answers.
            env.push(("REGISTRY_STORAGE_REDIRECT_DISABLE".into(), "true".into()));
            let _ = send.send(env);
            loop {
                std::thread::park();
            }
        });
        started.recv().expect("the Garage cluster started")
    });
    let mut env = env.clone();
    for (key, value) in &mut env {
        if key == "REGISTRY_STORAGE_S3_ROOTDIRECTORY" {
            *value = format!("/registry-{}", rand::random::<u64>());
        }
    }
    env
}

/// The user every [`Wharf`] requires with `WHARF_TEST_AUTH=htpasswd`, and
/// its password: how `tests/run` runs the conformance suite with
/// credentials.
pub fn test_credentials() -> Option<(&'static str, &'static str)> {
    (std::env::var("WHARF_TEST_AUTH").as_deref() == Ok("htpasswd"))
        .then_some(("conformance", "conformance-password"))
}

/// The `Authorization` header of [`test_credentials`], if any.
pub fn test_authorization() -> Option<String> {
    use base64::Engine as _;
    test_credentials().map(|(user, password)| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    })
}

impl Wharf {
    /// Whether this registry stores in S3 (see [`test_storage_env`]).
    pub fn on_s3(&self) -> bool {
        self.extra_env
            .iter()
            .any(|(k, v)| k == "REGISTRY_STORAGE" && v == "s3")
    }

    /// Starts `wharf serve` on `127.0.0.1:<free port>` with a fresh data
    /// directory and deletes enabled.
    pub fn start() -> Wharf {
        Wharf::start_with(&[("REGISTRY_STORAGE_DELETE_ENABLED", "true")])
    }

    /// Starts `wharf serve` with extra environment variables (for example
    /// `REGISTRY_STORAGE_DELETE_ENABLED`), on a free loopback port.
    pub fn start_with(env: &[(&str, &str)]) -> Wharf {
        Wharf::start_as(env, stock::selected(), test_credentials())
    }

    /// Starts the standalone component under `wasmtime serve`, with extra
    /// environment variables and, given `credentials`, an htpasswd file
    /// with that one user (`REGISTRY_AUTH=htpasswd`).
    pub fn start_stock(env: &[(&str, &str)], credentials: Option<(&str, &str)>) -> Wharf {
        Wharf::start_as(env, true, credentials)
    }

    /// Starts `wharf serve` (or with `stock`, the standalone component
    /// under `wasmtime serve`) as [`Wharf::start_stock`] says.
    pub fn start_as(env: &[(&str, &str)], stock: bool, credentials: Option<(&str, &str)>) -> Wharf {
        let dir = tempfile::Builder::new()
            .prefix("wharf-test-")
            .tempdir()
            .expect("create a temporary directory for wharf");
        std::fs::create_dir(dir.path().join("data")).expect("create wharf's data directory");
        let mut extra_env = test_storage_env();
        if let Some((user, password)) = credentials {
            std::fs::create_dir(dir.path().join("auth")).expect("create the auth directory");
            htpasswd_file(&dir.path().join("auth/htpasswd"), user, password);
            extra_env.push(("REGISTRY_AUTH".into(), "htpasswd".into()));
        }
        extra_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut wharf = Wharf {
            dir,
            extra_env,
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            generation: 0,
            stock,
        };
        wharf.spawn("127.0.0.1:0");
        wharf
    }

    /// Stops the server (SIGTERM, then waits) and starts it again on the same
    /// data directory and the same port, since image names contain the port.
    pub fn restart(&mut self) {
        self.stop();
        let addr = self.addr.to_string();
        self.spawn(&addr);
        assert_eq!(
            self.addr.to_string(),
            addr,
            "wharf restarted on another address"
        );
    }

    /// Stops the server and starts the other host on the same data
    /// directory, configuration and port: `wharf serve` after the standalone
    /// component under `wasmtime serve`, or the other way round.
    pub fn switch_host(&mut self) {
        self.stop();
        self.stock = !self.stock;
        let addr = self.addr.to_string();
        self.spawn(&addr);
    }

    /// Whether the standalone component under `wasmtime serve` is serving.
    pub fn is_stock(&self) -> bool {
        self.stock
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("wharf is running").id()
    }

    /// Kills the server with SIGKILL (no chance to clean up, as in a crash
    /// or power loss) and starts it again on the same data directory and
    /// port.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let addr = self.addr.to_string();
        self.spawn(&addr);
    }

    /// The address the server listens on, e.g. `127.0.0.1:41234`: the
    /// registry part of an image reference.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's data directory (REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the current server process has written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path(self.generation))
    }

    fn stderr_path(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("wharf-{generation}.stderr"))
    }

    fn spawn(&mut self, listen: &str) {
        self.generation += 1;
        let stderr_path = self.stderr_path(self.generation);
        let stdout_path = self
            .dir
            .path()
            .join(format!("wharf-{}.stdout", self.generation));
        let auth = self.dir.path().join("auth");
        let auth = auth.exists().then_some(auth);
        let stock = self.stock;
        let mut cmd = if stock {
            assert!(
                !self.on_s3(),
                "the standalone component stores on wasi:filesystem only"
            );
            let component = self.dir.path().join("registry.wasm");
            if !component.exists() {
                stock::export(&component);
            }
            let mut env = self.extra_env.clone();
            if auth.is_some() {
                env.push((
                    "REGISTRY_AUTH_HTPASSWD_PATH".into(),
                    format!("{}/htpasswd", stock::AUTH),
                ));
            }
            stock::command(&component, listen, &self.data_dir(), auth.as_deref(), &env)
        } else {
            let mut cmd = Command::new(WHARF_BIN);
            cmd.arg("serve").env("REGISTRY_HTTP_ADDR", listen);
            if !self.on_s3() {
                cmd.env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", self.data_dir());
            }
            if let Some(auth) = &auth {
                cmd.env("REGISTRY_AUTH_HTPASSWD_PATH", auth.join("htpasswd"));
            }
            cmd.envs(self.extra_env.iter().map(|(k, v)| (k, v)));
            cmd
        };
        // wharf's stderr goes straight to its file; wasmtime serve's is read
        // for its `Serving HTTP on` line.
        let stderr = if stock {
            Stdio::piped()
        } else {
            Stdio::from(File::create(&stderr_path).expect("create wharf's stderr file"))
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));

        // Read stdout and stderr on threads, into files: hand over the
        // address of the first `listening on` line (wharf, on stdout) or
        // `Serving HTTP on` line (wasmtime serve, on stderr), and keep
        // draining so the server never blocks on either.
        let (tx, rx) = mpsc::channel();
        let drain =
            |from: Box<dyn std::io::Read + Send>, to: PathBuf, tx: Option<mpsc::Sender<String>>| {
                std::thread::spawn(move || {
                    let mut log = File::create(to).ok();
                    let mut tx = tx;
                    for line in BufReader::new(from).lines() {
                        let Ok(line) = line else { break };
                        if let Some(log) = log.as_mut() {
                            let _ = writeln!(log, "{line}");
                            let _ = log.flush();
                        }
                        let addr = match line.strip_prefix("listening on ") {
                            Some(rest) => Some(rest.trim().to_string()),
                            None => stock::serving(&line).map(|a| a.to_string()),
                        };
                        if let Some(addr) = addr
                            && let Some(tx) = tx.take()
                        {
                            let _ = tx.send(addr);
                        }
                    }
                    // Dropping `tx` (if still held) tells the waiter it closed.
                })
            };
        let stdout = Box::new(child.stdout.take().expect("piped stdout"));
        if stock {
            let stderr = Box::new(child.stderr.take().expect("piped stderr"));
            drain(stdout, stdout_path, None);
            drain(stderr, stderr_path.clone(), Some(tx));
        } else {
            drain(stdout, stdout_path, Some(tx));
        }

        let started = Instant::now();
        let line = rx.recv_timeout(READY_TIMEOUT);
        let addr = match line {
            Ok(text) => text.parse::<SocketAddr>().unwrap_or_else(|e| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("wharf printed `listening on {text}`, not an address ({e})")
            }),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "wharf serve (REGISTRY_HTTP_ADDR={listen}) did not print `listening on <addr>` \
                     on stdout within {:?} ({e}); exit status: {status:?}\n--- wharf stderr ---\n{}",
                    started.elapsed(),
                    read_lossy(&stderr_path)
                );
            }
        };
        assert!(
            addr.ip().is_loopback(),
            "wharf listens on {addr}, not on loopback"
        );
        self.addr = addr;
        self.child = Some(child);
    }

    /// Stops the server process: SIGTERM, a grace period, then SIGKILL.
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, STOP_GRACE);
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        self.stop();
        if failing {
            eprintln!(
                "--- wharf stderr (server {} at {}) ---\n{}",
                self.generation,
                self.addr,
                tail(&self.stderr(), 100)
            );
        }
    }
}

/// Sends SIGTERM to `child`, waits up to `grace` for it to exit, then kills it.
/// Always reaps the process.
pub fn terminate(mut child: Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if sent {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut data = vec![0u8; n];
    rand::fill(&mut data[..]);
    data
}

/// The OCI digest (`sha256:<hex>`) of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The file's text, lossily decoded; empty if it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `wharf serve` this test binary's tests share: started by the first
/// test that asks, stopped when the last test holding it is done (a test
/// that asks after that starts a new one).
pub fn shared_wharf() -> Arc<Wharf> {
    static SHARED: Mutex<Weak<Wharf>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    match slot.upgrade() {
        Some(wharf) => wharf,
        None => {
            let wharf = Arc::new(Wharf::start());
            *slot = Arc::downgrade(&wharf);
            wharf
        }
    }
}

/// Runs `wharf <args>` to completion with extra `env` and `stdin`, for the
/// commands that exit: `wharf cert`, `wharf htpasswd`, or a `wharf serve`
/// that must refuse its configuration.
pub fn wharf_run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    let mut child = Command::new(WHARF_BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {WHARF_BIN}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for wharf {}: {e}", args.join(" ")))
}

/// A CA and a certificate for `localhost` (and 127.0.0.1), made by
/// `wharf cert` in `dir`.
pub struct Certs {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub fn localhost_certs(dir: &Path) -> Certs {
    let out = wharf_run(
        &[
            "cert",
            "--host",
            "localhost",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert!(
        out.status.success(),
        "wharf cert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Certs {
        certificate: dir.join("localhost.pem"),
        key: dir.join("localhost-key.pem"),
        ca: dir.join("ca.crt"),
    }
}

/// An htpasswd file at `path` with one user, made by `wharf htpasswd`
/// (bcrypt cost 4: fast, for tests).
pub fn htpasswd_file(path: &Path, user: &str, password: &str) {
    let out = wharf_run(
        &["htpasswd", user, "--password-stdin", "--cost", "4"],
        &[],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "wharf htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(path, &out.stdout).unwrap();
}

/// A `wharf serve <args>` started with exactly the given extra environment
/// (no address or data directory chosen by this helper: the test's
/// configuration says them), stopped on drop.
pub struct Served {
    child: Option<Child>,
    addr: SocketAddr,
    /// The debug listener's address, when `http.debug.addr` is set.
    debug_addr: Option<SocketAddr>,
    stderr_path: PathBuf,
    _logs: TempDir,
}

impl Served {
    /// Starts `wharf serve <args>` and waits for its `listening on` line.
    /// The configuration must listen on loopback.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Served {
        let logs = tempfile::Builder::new()
            .prefix("wharf-served-")
            .tempdir()
            .expect("create a temporary directory for wharf's logs");
        let stderr_path = logs.path().join("wharf.stderr");
        let stderr = File::create(&stderr_path).expect("create wharf's stderr file");
        let mut child = Command::new(WHARF_BIN)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {WHARF_BIN} serve: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut debug = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("debug listening on ") {
                    debug = rest.trim().parse::<SocketAddr>().ok();
                } else if let Some(rest) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((rest.trim().to_string(), debug));
                }
            }
        });
        let (addr, debug_addr) = match rx.recv_timeout(READY_TIMEOUT) {
            Ok((text, debug)) => (text.parse::<SocketAddr>().ok(), debug),
            Err(_) => (None, None),
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "wharf serve {} did not print `listening on <addr>`; exit status: {status:?}\n\
                 --- wharf stderr ---\n{}",
                args.join(" "),
                read_lossy(&stderr_path)
            );
        };
        let served = Served {
            child: Some(child),
            addr,
            debug_addr,
            stderr_path,
            _logs: logs,
        };
        assert!(
            addr.ip().is_loopback(),
            "wharf listens on {addr}, not on loopback"
        );
        served
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything the server has written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The server process's id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("wharf is running").id()
    }

    /// The debug listener's address (`http.debug.addr` must be set).
    pub fn debug_addr(&self) -> SocketAddr {
        self.debug_addr
            .expect("wharf printed no `debug listening on` line: is http.debug.addr set?")
    }

    /// Waits up to `within` for the server to exit by itself (after a
    /// signal the test sent), and returns how it exited; `None` if it
    /// did not exit in time (it is then killed).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("wharf is running");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, STOP_GRACE);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- wharf stderr ({}) ---\n{}",
                self.addr,
                tail(&self.stderr(), 100)
            );
        }
    }
}

/// An HTTP client for one registry, signing in as `user` if given.
pub struct Caller {
    pub client: reqwest::Client,
    pub base: String,
    pub user: Option<(&'static str, &'static str)>,
}

impl Caller {
    pub fn new(base: String, user: Option<(&'static str, &'static str)>) -> Caller {
        Caller {
            client: reqwest::Client::new(),
            base,
            user,
        }
    }

    /// A request for `path` under the registry (or for a URL as given).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let request = self.client.request(method, url);
        match self.user {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }
}
