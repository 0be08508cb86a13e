//! Debian's `docker-registry` (CNCF Distribution, registry:2), the
//! reference, run beside Wharf by the tests that compare the two.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;
use crate::support::{read_lossy, tail, terminate};

/// Debian's build of CNCF Distribution, as `tests/install` installs it.
pub const DISTRIBUTION: &str = "/usr/bin/docker-registry";

/// A running `docker-registry serve`, stopped on drop.
pub struct Distribution {
    child: Option<Child>,
    log: PathBuf,
}

impl Distribution {
    /// On the filesystem at `data`, deletes enabled, without auth.
    pub fn start(dir: &Path, data: &Path, addr: SocketAddr) -> Distribution {
        Distribution::start_with(dir, data, addr, "")
    }

    /// As [`Distribution::start`], with `extra` YAML (top-level sections)
    /// added to the configuration. Waits until `GET /v2/` is answered.
    pub fn start_with(dir: &Path, data: &Path, addr: SocketAddr, extra: &str) -> Distribution {
        assert!(
            Path::new(DISTRIBUTION).exists(),
            "{DISTRIBUTION} is missing: install Debian's docker-registry (tests/install does)"
        );
        let config = dir.join("distribution.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}",
                data.display()
            ),
        )
        .unwrap();
        let log = dir.join("distribution.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(DISTRIBUTION)
            .arg("serve")
            .arg(&config)
            // This environment's CA bundle is one its SDK rejects.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start docker-registry");
        let distribution = Distribution {
            child: Some(child),
            log,
        };
        let started = Instant::now();
        // 200, or 401 with auth configured: answering at all is ready.
        while http::request(addr, "GET", "/v2/", &[], b"").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "docker-registry did not answer on {addr}:\n{}",
                read_lossy(&distribution.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        distribution
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(20));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- docker-registry log ---\n{}",
                tail(&read_lossy(&self.log), 60)
            );
        }
    }
}
