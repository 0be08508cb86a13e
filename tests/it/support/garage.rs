//! A Garage cluster on loopback for the tests: `nodes` processes, one zone
//! each, replication factor `nodes` (3 for the real tests), a bucket and a
//! key that may use it. Garage is the one `tests/install` builds into
//! `/opt/wharf-tools` (or `$WHARF_GARAGE`).
//!
//! Every node is killed when the cluster is dropped, and with the thread
//! that started it (`PR_SET_PDEATHSIG`), so a test that panics leaves no
//! store running.

// Also included by the host's storage conformance tests and the bench,
// which use part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `tests/install` puts Garage.
pub const GARAGE: &str = "/opt/wharf-tools/garage-2.5.0/bin/garage";

pub fn garage_bin() -> PathBuf {
    let bin = std::env::var_os("WHARF_GARAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(GARAGE));
    assert!(
        bin.is_file(),
        "Garage is not at {}: run tests/install (it builds Garage once per machine), or set \
         WHARF_GARAGE to a garage binary",
        bin.display()
    );
    bin
}

pub struct Garage {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    pub key_id: String,
    pub secret: String,
}

struct Node {
    config: PathBuf,
    s3_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `garage -c config args…`, run once.
fn run(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run garage")
}

fn garage(config: &Path, args: &[&str]) -> String {
    let out = run(config, args);
    assert!(
        out.status.success(),
        "garage {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retry `garage` while the cluster is still forming.
fn garage_retrying(config: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(config, args);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "garage {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many nodes `garage status` lists as healthy.
fn healthy(status: &str) -> usize {
    status
        .split("==== HEALTHY NODES ====")
        .nth(1)
        .map(|rest| rest.split("====").next().unwrap_or(""))
        .map(|section| {
            section
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("ID"))
                .count()
        })
        .unwrap_or(0)
}

impl Garage {
    /// Start a cluster of `nodes` nodes holding every object on each, with
    /// `bucket` and a key allowed to read and write it.
    pub fn start(nodes: usize, bucket: &str) -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("wharf-garage-")
            .tempdir()
            .expect("a directory for Garage");
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut cluster = Garage {
            nodes: Vec::new(),
            key_id: String::new(),
            secret: String::new(),
            dir,
        };
        for i in 0..nodes {
            let root = cluster.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).unwrap();
            let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{root}/meta\"\n\
                     data_dir = \"{root}/data\"\n\
                     db_engine = \"lmdb\"\n\
                     replication_factor = {nodes}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret}\"\n\
                     [s3_api]\n\
                     s3_region = \"garage\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                    root = root.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
            cluster.nodes.push(Node {
                config,
                s3_port,
                child: None,
            });
            cluster.spawn(i);
        }
        let first = cluster.nodes[0].config.clone();
        let ids: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| {
                garage_retrying(&n.config, &["node", "id", "-q"])
                    .trim()
                    .to_string()
            })
            .collect();
        for id in &ids[1..] {
            garage_retrying(&first, &["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = &id[..16];
            garage_retrying(
                &first,
                &[
                    "layout",
                    "assign",
                    "-z",
                    &format!("dc{i}"),
                    "-c",
                    "1G",
                    short,
                ],
            );
        }
        garage_retrying(&first, &["layout", "apply", "--version", "1"]);
        garage_retrying(&first, &["bucket", "create", bucket]);
        let key = garage(&first, &["key", "create", "wharf-tests"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in: {key}"))
        };
        cluster.key_id = field("Key ID:");
        cluster.secret = field("Secret key:");
        garage(
            &first,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                bucket,
                "--key",
                "wharf-tests",
            ],
        );
        cluster.wait_writable(bucket);
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(node.config.with_file_name("garage.log"))
            .unwrap();
        let mut command = Command::new(garage_bin());
        command
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        node.child = Some(command.spawn().expect("start a Garage node"));
    }

    /// Another bucket the key may read and write.
    pub fn create_bucket(&self, name: &str) {
        let first = &self.nodes[0].config;
        garage_retrying(first, &["bucket", "create", name]);
        garage(
            first,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                name,
                "--key",
                "wharf-tests",
            ],
        );
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// Kill node `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start node `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        let config = self.nodes[i].config.clone();
        let alive = self.nodes.iter().filter(|n| n.child.is_some()).count();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Rejoined once it sees every live node healthy.
        while healthy(&garage_retrying(&config, &["status"])) < alive && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.wait_serving(i);
    }

    /// Until node `i` has rejoined, it answers 503.
    fn wait_serving(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let code = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("{}/", self.endpoint(i)))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            // Unsigned: 403 once it serves, 503 while it cannot yet.
            if code == "403" || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Until the layout has spread, writes may fail for want of a quorum.
    fn wait_writable(&self, bucket: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/{bucket}", self.endpoint(0));
        loop {
            // An unsigned request answers 403 once the bucket is served.
            let ok = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .is_ok_and(|code| code == "403");
            if ok || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `REGISTRY_STORAGE_S3_*` variables for a registry on `bucket`
    /// under `rootdirectory`, through node `node`.
    pub fn registry_env(
        &self,
        node: usize,
        bucket: &str,
        rootdirectory: &str,
    ) -> Vec<(String, String)> {
        [
            ("REGISTRY_STORAGE", "s3".to_string()),
            ("REGISTRY_STORAGE_S3_REGION", "garage".into()),
            ("REGISTRY_STORAGE_S3_BUCKET", bucket.into()),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", self.endpoint(node)),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", self.key_id.clone()),
            ("REGISTRY_STORAGE_S3_SECRETKEY", self.secret.clone()),
            ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true".into()),
            ("REGISTRY_STORAGE_S3_SECURE", "false".into()),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", (5u64 << 20).to_string()),
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", rootdirectory.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
