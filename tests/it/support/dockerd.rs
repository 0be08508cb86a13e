//! A private Docker engine for end-to-end tests: Debian's `dockerd` on its own
//! unix socket, data root and exec root, stopped and removed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{read_lossy, tail, terminate};

/// How long dockerd may take until `docker version` answers.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long dockerd gets after SIGTERM to stop its containerd and exit.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A running private `dockerd`.
pub struct Dockerd {
    /// Under /tmp with a short name: holds the API socket, the exec root (with
    /// containerd's sockets, whose paths must stay under the unix socket
    /// length limit), the data root, the pid file, the log and the CLI config.
    dir: TempDir,
    child: Option<Child>,
    /// The docker CLI found on PATH.
    cli: PathBuf,
}

impl Dockerd {
    /// Starts dockerd with the vfs storage driver, no bridge and no iptables,
    /// and waits until the CLI can talk to it. Panics, saying what to
    /// install, when dockerd or the docker CLI is missing or we are not root.
    pub fn start() -> Dockerd {
        let [daemon, cli] = ["dockerd", "docker"].map(|tool| {
            find_in_path(tool).unwrap_or_else(|| {
                panic!(
                    "`{tool}` is not installed: these tests need a Docker engine. \
                     Install it with `apt-get install docker.io` (or run tests/run, which does)"
                )
            })
        });
        assert!(
            is_root(),
            "the Docker end-to-end tests start a private dockerd, which needs root; \
             run them as root (CI does)"
        );

        let dir = tempfile::Builder::new()
            .prefix("wd-")
            .tempdir_in("/tmp")
            .expect("create a temporary directory for dockerd under /tmp");
        for sub in ["root", "exec", "config"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create dockerd directories");
        }
        let log = File::create(dir.path().join("dockerd.log")).expect("create dockerd.log");
        let log_err = log.try_clone().expect("clone dockerd.log handle");
        let child = Command::new(&daemon)
            .args(daemon_args(dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        let mut dockerd = Dockerd {
            dir,
            child: Some(child),
            cli,
        };
        dockerd.wait_ready();
        dockerd
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            let out = self.docker(&["version"]);
            if out.status.success() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                panic!(
                    "dockerd did not come up ({}; waited {:?}).\n\
                     --- last `docker version` ---\n{}\n--- dockerd log ---\n{}",
                    match exited {
                        Some(status) => format!("it exited: {status}"),
                        None => "still not answering".to_string(),
                    },
                    started.elapsed(),
                    show(&out),
                    tail(&self.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs the docker CLI against this engine: `docker -H unix://… <args>`,
    /// with a private client configuration directory.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(&self.cli)
            .env("DOCKER_CONFIG", self.dir.path().join("config"))
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
    }

    /// Runs `docker <args>`, panics with its output unless it succeeds, and
    /// returns its stdout and stderr together.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "`docker {}` failed ({})\n{}",
            args.join(" "),
            out.status,
            show(&out)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The engine's address, for tools that take `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// Runs `program args` with `DOCKER_HOST` (and the CLI configuration)
    /// pointing at this engine: docker-compose, scripts/image.
    pub fn run_with(&self, program: &Path, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `{} {}`: {e}", program.display(), args.join(" "))
            })
    }

    /// `program` set up to talk to this engine, as `run_with` runs it.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("config"))
            .stdin(Stdio::null());
        command
    }

    /// Imports a `FROM scratch` image of random files of these sizes (one
    /// layer) as `name`, working in `dir`; its image id.
    pub fn import_random(&self, dir: &Path, name: &str, sizes: &[usize]) -> String {
        let content = dir.join(format!("content-{}", name.replace(['/', ':'], "-")));
        std::fs::create_dir_all(&content).expect("create the image's content directory");
        let files: Vec<String> = (0..sizes.len()).map(|i| format!("file{i}.bin")).collect();
        for (file, size) in files.iter().zip(sizes) {
            std::fs::write(content.join(file), crate::support::random_bytes(*size)).unwrap();
        }
        let tarball = content.with_extension("tar");
        let out = Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&content)
            .args(&files)
            .output()
            .expect("run tar");
        assert!(out.status.success(), "tar failed\n{}", show(&out));
        self.docker_ok(&["import", tarball.to_str().unwrap(), name]);
        self.docker_ok(&["image", "inspect", "-f", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    /// dockerd's own log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("dockerd.log"))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, STOP_GRACE);
        }
        if std::thread::panicking() {
            eprintln!("--- dockerd log ---\n{}", tail(&self.log(), 80));
        }
        unmount_below(self.dir.path());
        // The TempDir removes the data root, exec root and sockets.
    }
}

/// Unmounts what is still mounted below `dir`. A stopped dockerd leaves its
/// network namespace bound at `exec/netns/default`; while it is, the
/// TempDir cannot be removed, and every run left a directory and a mount
/// behind in /tmp.
fn unmount_below(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // The fifth field is the mount point; deepest first.
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["--lazy", point])
            .stderr(Stdio::null())
            .status();
    }
}

/// A command's exit status, stdout and stderr, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Dockerd {
    /// Like [`Dockerd::start`], but dockerd runs in a private mount
    /// namespace (`unshare --mount`) where `hosts` is bind-mounted over
    /// `/etc/hosts` and `etc_docker` over `/etc/docker`: the test gives it
    /// host names and `certs.d` trust without touching the machine's files.
    pub fn start_with_private_etc(hosts: &Path, etc_docker: &Path) -> Dockerd {
        let [daemon, cli, unshare] = ["dockerd", "docker", "unshare"].map(|tool| {
            find_in_path(tool).unwrap_or_else(|| {
                panic!(
                    "`{tool}` is not installed: this test needs a Docker engine and util-linux. \
                     Install them with `apt-get install docker.io util-linux` (or run tests/run)"
                )
            })
        });
        assert!(
            is_root(),
            "this test starts a private dockerd, which needs root"
        );
        let dir = tempfile::Builder::new()
            .prefix("wd-")
            .tempdir_in("/tmp")
            .expect("create a temporary directory for dockerd under /tmp");
        for sub in ["root", "exec", "config"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create dockerd directories");
        }
        // The bind mount needs its mount point; dockerd itself makes
        // /etc/docker on first start, so this changes nothing it would not.
        std::fs::create_dir_all("/etc/docker").expect("create /etc/docker");
        let log = File::create(dir.path().join("dockerd.log")).expect("create dockerd.log");
        let log_err = log.try_clone().expect("clone dockerd.log handle");
        let child = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/docker && shift 2 && exec "$@""#)
            .arg("sh")
            .arg(hosts)
            .arg(etc_docker)
            .arg(&daemon)
            .args(daemon_args(dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd under unshare: {e}"));
        let mut dockerd = Dockerd {
            dir,
            child: Some(child),
            cli,
        };
        dockerd.wait_ready();
        dockerd
    }
}

/// dockerd's flags: no storage driver or network setup of its own, and every
/// path (socket, data, exec state, pid file) inside `dir`.
fn daemon_args(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "-H",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(format!("unix://{}", dir.join("docker.sock").display()).into());
    for (flag, name) in [
        ("--data-root", "root"),
        ("--exec-root", "exec"),
        ("--pidfile", "docker.pid"),
    ] {
        args.push(flag.into());
        args.push(dir.join(name).into());
    }
    args
}
