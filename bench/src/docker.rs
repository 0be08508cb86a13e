//! `docker push` and `docker pull` through a real Docker engine: a private
//! `dockerd` (vfs storage, no bridge, no iptables, its own socket and data
//! root under /tmp), and a two-layer image of random bytes built `FROM scratch`.

use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(30);

pub struct Dockerd {
    dir: TempDir,
    child: Option<Child>,
}

impl Dockerd {
    pub fn start() -> anyhow::Result<Dockerd> {
        let dir = tempfile::Builder::new()
            .prefix("wb-")
            .tempdir_in("/tmp")
            .context("creating dockerd's directory")?;
        for sub in ["root", "exec", "config"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        let log = std::fs::File::create(dir.path().join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "-H",
            ])
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting dockerd (Debian package docker.io; needs root)")?;
        let mut dockerd = Dockerd {
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        while !dockerd.docker(&["version"])?.status.success() {
            let exited = dockerd
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                bail!(
                    "dockerd did not come up:\n{}",
                    std::fs::read_to_string(dockerd.dir.path().join("dockerd.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(dockerd)
    }

    pub fn docker(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("docker")
            .env("DOCKER_CONFIG", self.dir.path().join("config"))
            .env("DOCKER_BUILDKIT", "0")
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running docker {}", args.join(" ")))
    }

    pub fn docker_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.docker(args)?;
        if !out.status.success() {
            bail!(
                "docker {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Build `name` from scratch with two layers of `layer_bytes` random bytes each.
    pub fn build_image(&self, name: &str, layer_bytes: usize, work: &Path) -> anyhow::Result<()> {
        let context: PathBuf = work.join("image-context");
        std::fs::create_dir_all(&context)?;
        for layer in ["layer-a.bin", "layer-b.bin"] {
            let mut file = std::fs::File::create(context.join(layer))?;
            let mut random = std::fs::File::open("/dev/urandom")?;
            std::io::copy(
                &mut std::io::Read::take(&mut random, layer_bytes as u64),
                &mut file,
            )?;
            file.flush()?;
        }
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY layer-a.bin /a\nCOPY layer-b.bin /b\n",
        )?;
        self.docker_ok(&["build", "--quiet", "-t", name, &context.to_string_lossy()])?;
        std::fs::remove_dir_all(&context)?;
        Ok(())
    }

    /// Wall time of `docker push name`.
    pub fn timed(&self, args: &[&str]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.docker_ok(args)?;
        Ok(started.elapsed())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < STOP_GRACE {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
