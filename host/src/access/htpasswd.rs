//! `auth.htpasswd`: HTTP Basic authentication against an Apache htpasswd
//! file of bcrypt entries (`$2y$`, `$2a$`, `$2b$`), as registry:2 does.
//!
//! - The file is read at start (missing, malformed or non-bcrypt: an error
//!   naming the file and line) and again whenever it changes on disk (a
//!   malformed new version is logged and the previous one kept).
//! - bcrypt is slow by design, so successful verifications are cached:
//!   bounded ([`CACHE_CAPACITY`]), expiring ([`CACHE_TTL`]), keyed by a keyed
//!   hash of user and password (no password is kept), and dropped whenever
//!   the file changes. Verification itself runs on tokio's blocking pool.
//! - An unknown user is verified against a dummy hash of a random,
//!   forgotten password at the cost most of the file's entries have, so
//!   that refusing one takes as long as refusing a wrong password: the
//!   timing does not tell which users exist. It is made when the file is
//!   read, and again (on the blocking pool) when a reload changes that cost.
//! - Repeated failures are slowed down: after [`FREE_FAILURES`] for one
//!   (client, user), or [`FREE_CLIENT_FAILURES`] for one client whatever the
//!   user names, the next attempts wait, doubling up to
//!   [`MAX_FAILURE_DELAY`]; the longer of the two waits applies. A client
//!   is its IP address, or its /64 for IPv6, which one host usually holds
//!   whole.
//!
//! This module knows the file and the `Authorization` header, and nothing of
//! registries: an authenticated user may do everything, as with registry:2.

use crate::access::{
    AccessControl, Action, Caller, Identity, Refused, Verdict, client_of as client,
};
use crate::metrics::METRICS;
use crate::sync::{lock, read as read_lock, write as write_lock};
use futures::future::BoxFuture;
use sha2::Digest as _;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Successful verifications remembered at most.
pub const CACHE_CAPACITY: usize = 4096;
/// How long a successful verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Failures for one (client, user) before attempts are slowed down.
pub const FREE_FAILURES: u32 = 3;
/// Failures for one client, over all user names, before its attempts are
/// slowed down: more than [`FREE_FAILURES`], as one client (a CI runner, a
/// NAT) may hold several users' credentials and mistype some.
pub const FREE_CLIENT_FAILURES: u32 = 10;
/// The first delay after [`FREE_FAILURES`]; each further failure doubles it.
pub const FIRST_FAILURE_DELAY: Duration = Duration::from_millis(250);
/// The longest delay imposed on an attempt.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(8);
/// How long failures are remembered after the last one.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// (client, user) pairs, and clients, whose failures are tracked at most
/// (each).
const FAILURE_CAPACITY: usize = 16384;
/// The bcrypt cost `wharf htpasswd` uses unless told otherwise.
pub const DEFAULT_COST: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error(
        "cannot read the htpasswd file {path}: {source} \
         (create it with `wharf htpasswd USER > {path}` or `htpasswd -Bbn USER PASSWORD`)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("htpasswd file {path}, line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("htpasswd file {path} has no users; add one with `wharf htpasswd USER >> {path}`")]
    Empty { path: PathBuf },
    #[error("cannot hash the password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

/// One line of an htpasswd file for `user`, with a bcrypt hash of
/// `password` in Apache's `$2y$` form: what `htpasswd -Bbn` prints.
pub fn entry(user: &str, password: &str, cost: u32) -> Result<String, HtpasswdError> {
    if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
        return Err(HtpasswdError::Malformed {
            path: PathBuf::from("<command line>"),
            line: 0,
            reason: "a user name must be non-empty, without `:` or spaces".into(),
        });
    }
    let hash = bcrypt::hash_with_result(password, cost)?.format_for_version(bcrypt::Version::TwoY);
    Ok(format!("{user}:{hash}"))
}

/// Access control by an htpasswd file; cheap to share.
pub struct Htpasswd {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// The tenant whose credentials these are, for metrics.
    tenant: String,
    /// `Basic realm="<realm>"`.
    challenge: String,
    file: RwLock<Loaded>,
    cache: Mutex<Cache>,
    failures: Mutex<FailureLog>,
    /// Random per process: cache keys are useless outside it.
    cache_secret: [u8; 32],
}

struct Loaded {
    users: HashMap<String, String>,
    stamp: Option<Stamp>,
    /// Bumped on every reload; cache entries of older generations are void.
    generation: u64,
    /// Verified against when the user does not exist.
    dummy: Dummy,
    /// The cost the users' hashes call for; `dummy` is being remade when
    /// they differ.
    dummy_cost: u32,
}

/// A bcrypt hash of a random password nobody knows.
struct Dummy {
    hash: String,
}

/// The dummy if bcrypt cannot make one (no randomness): cost 10, its
/// password random and forgotten.
const FALLBACK_DUMMY: &str = "$2y$10$d7dBEMGSbtnHgV82d08Oa.dLu7CMmwDFKVlIiz76AeQoQMJR21ZWG";

impl Dummy {
    /// Takes as long as one verification at `cost`.
    fn new(cost: u32) -> Dummy {
        let password = uuid::Uuid::new_v4().to_string();
        let hash = bcrypt::hash(password, cost).unwrap_or_else(|e| {
            tracing::error!(error = %e, cost, "cannot make a dummy bcrypt hash; using a fixed one of cost 10");
            FALLBACK_DUMMY.to_string()
        });
        Dummy { hash }
    }
}

/// What tells that a file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(path: &Path) -> std::io::Result<Stamp> {
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            ino: m.ino(),
            len: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

struct Cache {
    generation: u64,
    entries: HashMap<[u8; 32], (String, Instant)>,
}

/// Recent failures, by (client, user) and by client alone.
#[derive(Default)]
struct FailureLog {
    by_user: HashMap<(IpAddr, String), Failures>,
    by_client: HashMap<IpAddr, Failures>,
}

struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// The wait before the next attempt, if any, after more than `free`.
    fn delay(&self, free: u32) -> Option<Duration> {
        if self.last.elapsed() > FAILURE_MEMORY {
            return None;
        }
        delay_after(self.count, free)
    }
}

/// Count one failure for `key`, keeping `map` within [`FAILURE_CAPACITY`]:
/// expired entries go first, then the oldest.
fn count_failure<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Failures>, key: K) {
    if map.len() >= FAILURE_CAPACITY && !map.contains_key(&key) {
        map.retain(|_, f| f.last.elapsed() < FAILURE_MEMORY);
    }
    if map.len() >= FAILURE_CAPACITY
        && !map.contains_key(&key)
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
    let f = map.entry(key).or_insert(Failures {
        count: 0,
        last: Instant::now(),
    });
    if f.last.elapsed() > FAILURE_MEMORY {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last = Instant::now();
}

/// The bcrypt verifications that may run at once, for every tenant: one
/// per core.
fn verifications() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::sync::Semaphore::new(cores)
    })
}

impl Htpasswd {
    /// Reads `path`; an error if it is missing, malformed or has no users.
    /// The credentials in `path`, for `tenant` (as metrics name it).
    pub fn open(path: &Path, realm: &str, tenant: &str) -> Result<Htpasswd, HtpasswdError> {
        let stamp = Stamp::of(path).map_err(|source| HtpasswdError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let users = read(path)?;
        // Once, at start, on the caller's thread: as long as one verification.
        let dummy_cost = common_cost(&users);
        let dummy = Dummy::new(dummy_cost);
        let mut cache_secret = [0u8; 32];
        cache_secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        cache_secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Ok(Htpasswd {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                tenant: tenant.to_string(),
                challenge: wharf_spec::htpasswd::challenge(realm),
                file: RwLock::new(Loaded {
                    users,
                    stamp: Some(stamp),
                    generation: 0,
                    dummy,
                    dummy_cost,
                }),
                cache: Mutex::new(Cache {
                    generation: 0,
                    entries: HashMap::new(),
                }),
                failures: Mutex::new(FailureLog::default()),
                cache_secret,
            }),
        })
    }

    /// How many users the file currently has.
    pub fn users(&self) -> usize {
        read_lock(&self.shared.file).users.len()
    }
}

impl AccessControl for Htpasswd {
    fn authenticate<'a>(&'a self, caller: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
        Box::pin(self.shared.clone().authenticate(caller))
    }

    /// Every authenticated user may do everything, as with registry:2;
    /// anyone else is asked to log in.
    fn authorize(&self, identity: &Identity, _: Option<&str>, _: Action) -> Verdict {
        match identity {
            Identity::User(user) => Verdict::Allow(Some(user.clone())),
            // Tokens come from `auth.token`, never alongside htpasswd.
            Identity::Anonymous | Identity::Token(_) => {
                Verdict::Challenge(self.shared.challenge.clone())
            }
        }
    }
}

impl Shared {
    /// Who `caller`'s credentials prove them to be: anonymous without any,
    /// a user with the right password, refused otherwise.
    async fn authenticate(self: Arc<Self>, caller: &Caller) -> Result<Identity, Refused> {
        let Some(credentials) = caller.credentials.as_deref() else {
            return Ok(Identity::Anonymous);
        };
        let generation = self.refresh();
        let Some((user, password)) = basic_credentials(credentials) else {
            METRICS.credential(&self.tenant, "failed");
            return Err(self.refused());
        };
        let key = self.cache_key(&user, &password);
        if self.cached(&key, generation) {
            METRICS.credential(&self.tenant, "cached");
            return Ok(Identity::User(user));
        }
        let ip = caller.peer.map(|p| p.ip());
        if let Some(ip) = ip
            && let Some(delay) = self.failure_delay(ip, &user)
        {
            tracing::debug!(%ip, user, ?delay, "slowing down repeated failures");
            tokio::time::sleep(delay).await;
        }
        let (hash, known) = {
            let loaded = read_lock(&self.file);
            match loaded.users.get(&user) {
                Some(hash) => (hash.clone(), true),
                None => (loaded.dummy.hash.clone(), false),
            }
        };
        // At most one bcrypt per core in the whole process, in arrival
        // order: wrong passwords from many clients cannot take the blocking
        // pool (which every tenant's storage work shares) or the CPU.
        let Ok(_turn) = verifications().acquire().await else {
            return Err(self.refused());
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map(|r| r.unwrap_or(false))
            .unwrap_or(false);
        if verified && known {
            METRICS.credential(&self.tenant, "verified");
            self.remember(key, &user, generation);
            if let Some(ip) = ip {
                // Only this user's count: the client's stays, or an attacker
                // holding one valid account would reset it at will between
                // guesses at other users' passwords.
                lock(&self.failures).by_user.remove(&(ip, user.clone()));
            }
            Ok(Identity::User(user))
        } else {
            METRICS.credential(&self.tenant, "failed");
            tracing::info!(user, peer = ?caller.peer, "authentication failed");
            if let Some(ip) = ip {
                self.record_failure(ip, user);
            }
            Err(self.refused())
        }
    }

    /// The answer to credentials that prove nothing: log in again.
    fn refused(&self) -> Refused {
        Refused {
            challenge: self.challenge.clone(),
        }
    }

    /// Reloads the file if it changed; returns the current generation.
    fn refresh(self: &Arc<Self>) -> u64 {
        let stamp = Stamp::of(&self.path).ok();
        {
            let loaded = read_lock(&self.file);
            if loaded.stamp == stamp {
                return loaded.generation;
            }
        }
        let mut loaded = write_lock(&self.file);
        if loaded.stamp == stamp {
            return loaded.generation;
        }
        loaded.stamp = stamp;
        match read(&self.path) {
            Ok(users) => {
                loaded.users = users;
                loaded.generation += 1;
                tracing::info!(path = %self.path.display(), users = loaded.users.len(), "htpasswd file reloaded");
                let cost = common_cost(&loaded.users);
                if cost != loaded.dummy_cost {
                    loaded.dummy_cost = cost;
                    self.remake_dummy(cost);
                }
            }
            Err(e) => {
                // Keep serving the users we had: neither lock everyone out
                // nor let anyone in because of a half-written file.
                tracing::error!(error = %e, "htpasswd file changed but cannot be used; keeping the previous users");
            }
        }
        loaded.generation
    }

    /// Make a dummy hash at `cost` off the request path (it takes as long
    /// as a verification) and use it once made, unless the cost wanted
    /// changed again meanwhile. Until then the previous one serves.
    fn remake_dummy(self: &Arc<Self>, cost: u32) {
        let shared = self.clone();
        let remake = move || {
            let dummy = Dummy::new(cost);
            let mut loaded = write_lock(&shared.file);
            if loaded.dummy_cost == cost {
                loaded.dummy = dummy;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(remake);
            }
            Err(_) => remake(),
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.cache_secret);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn cached(&self, key: &[u8; 32], generation: u64) -> bool {
        let mut cache = lock(&self.cache);
        if cache.generation != generation {
            cache.entries.clear();
            cache.generation = generation;
            return false;
        }
        match cache.entries.get(key) {
            Some((_, at)) if at.elapsed() < CACHE_TTL => true,
            Some(_) => {
                cache.entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember(&self, key: [u8; 32], user: &str, generation: u64) {
        let mut cache = lock(&self.cache);
        if cache.generation != generation {
            // The file changed while we verified against the old one.
            return;
        }
        if cache.entries.len() >= CACHE_CAPACITY {
            cache.entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        if cache.entries.len() >= CACHE_CAPACITY
            && let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
        {
            cache.entries.remove(&oldest);
        }
        cache
            .entries
            .insert(key, (user.to_string(), Instant::now()));
    }

    /// The wait before the next attempt of `user` from `ip`: the longer of
    /// what the pair's failures and the client's call for.
    fn failure_delay(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let failures = lock(&self.failures);
        let by_user = failures
            .by_user
            .get(&(ip, user.to_string()))
            .and_then(|f| f.delay(FREE_FAILURES));
        let by_client = failures
            .by_client
            .get(&client(ip))
            .and_then(|f| f.delay(FREE_CLIENT_FAILURES));
        by_user.max(by_client)
    }

    fn record_failure(&self, ip: IpAddr, user: String) {
        let mut failures = lock(&self.failures);
        count_failure(&mut failures.by_user, (ip, user));
        count_failure(&mut failures.by_client, client(ip));
    }
}

/// The wait imposed before the next attempt after `count` failures, of
/// which `free` cost nothing.
fn delay_after(count: u32, free: u32) -> Option<Duration> {
    let over = count.checked_sub(free)?;
    let delay = FIRST_FAILURE_DELAY.saturating_mul(1u32 << over.min(16));
    Some(delay.min(MAX_FAILURE_DELAY))
}

/// The bcrypt cost most of `users`' hashes have (the higher on a tie);
/// [`DEFAULT_COST`] if none can be read.
fn common_cost(users: &HashMap<String, String>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for hash in users.values() {
        // `$2y$NN$…`: checked to be bcrypt of the right length on reading.
        if let Some(cost) = hash.get(4..6).and_then(|c| c.parse::<u32>().ok())
            && (4..=31).contains(&cost)
        {
            *counts.entry(cost).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(cost, n)| (n, cost))
        .map_or(DEFAULT_COST, |(cost, _)| cost)
}

use wharf_spec::htpasswd::basic_credentials;

/// The users of an htpasswd file; every entry must be bcrypt.
fn read(path: &Path) -> Result<HashMap<String, String>, HtpasswdError> {
    let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    wharf_spec::htpasswd::parse(&text).map_err(|e| match e {
        wharf_spec::htpasswd::HtpasswdError::Malformed { line, reason } => {
            HtpasswdError::Malformed {
                path: path.to_path_buf(),
                line,
                reason,
            }
        }
        wharf_spec::htpasswd::HtpasswdError::Empty => HtpasswdError::Empty {
            path: path.to_path_buf(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::net::SocketAddr;

    /// Cheap hashes for tests: cost 4 is bcrypt's minimum.
    fn line(user: &str, password: &str) -> String {
        entry(user, password, 4).unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn caller(credentials: Option<String>) -> Caller {
        Caller {
            credentials,
            peer: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
        }
    }

    async fn verdict(h: &Htpasswd, credentials: Option<String>) -> Verdict {
        match h.authenticate(&caller(credentials)).await {
            Ok(identity) => h.authorize(&identity, None, Action::Pull),
            Err(refused) => Verdict::Challenge(refused.challenge),
        }
    }

    fn write(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[tokio::test]
    async fn right_password_allows_wrong_one_challenges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "secret"), line("bob", "other")]);
        let h = Htpasswd::open(&path, "Registry Realm", "default").unwrap();
        let challenge = |v: Verdict| matches!(v, Verdict::Challenge(c) if c == "Basic realm=\"Registry Realm\"");
        assert!(
            matches!(verdict(&h, Some(basic("alice", "secret"))).await, Verdict::Allow(Some(u)) if u == "alice")
        );
        // Twice: the second answer comes from the cache.
        assert!(
            matches!(verdict(&h, Some(basic("alice", "secret"))).await, Verdict::Allow(Some(u)) if u == "alice")
        );
        assert!(challenge(verdict(&h, Some(basic("alice", "wrong"))).await));
        assert!(challenge(verdict(&h, Some(basic("bob", "secret"))).await));
        assert!(challenge(verdict(&h, Some(basic("carol", "secret"))).await));
        assert!(challenge(verdict(&h, None).await));
        assert!(
            challenge(verdict(&h, Some("Bearer abc".into())).await),
            "other schemes are not credentials"
        );
        assert!(challenge(verdict(&h, Some("Basic !!!".into())).await));
    }

    #[tokio::test]
    async fn apache_entries_verify() {
        // `htpasswd -Bbn apache apache-password` (Debian's apache2-utils).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(
            &path,
            "apache:$2y$05$Ye8OJNnkxCNpvnUls9l/iuAAO7w26bTrpV7Qi7vgogPbg6WPSz98m\n\n",
        )
        .unwrap();
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        assert!(matches!(
            verdict(&h, Some(basic("apache", "apache-password"))).await,
            Verdict::Allow(_)
        ));
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_the_cache_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "one")]);
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        assert!(matches!(
            verdict(&h, Some(basic("alice", "one"))).await,
            Verdict::Allow(_)
        ));
        // Replaced by rename, as editors and `mv` do: a new inode.
        let new = dir.path().join("htpasswd.new");
        write(&new, &[line("alice", "two"), line("bob", "three")]);
        std::fs::rename(&new, &path).unwrap();
        assert!(matches!(
            verdict(&h, Some(basic("alice", "one"))).await,
            Verdict::Challenge(_)
        ));
        assert!(matches!(
            verdict(&h, Some(basic("alice", "two"))).await,
            Verdict::Allow(_)
        ));
        assert_eq!(h.users(), 2);
        // A broken new version keeps the previous users.
        std::fs::write(&path, "garbage line\n").unwrap();
        assert!(matches!(
            verdict(&h, Some(basic("bob", "three"))).await,
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn missing_and_malformed_files_are_errors_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let e = Htpasswd::open(&path, "r", "default")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("htpasswd"), "{e}");
        std::fs::write(&path, format!("{}\nnocolon\n", line("a", "b"))).unwrap();
        let e = Htpasswd::open(&path, "r", "default")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        std::fs::write(&path, "md5:$apr1$abc$def\n").unwrap();
        let e = Htpasswd::open(&path, "r", "default")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bcrypt") && e.contains("line 1"), "{e}");
        std::fs::write(&path, "# nobody\n").unwrap();
        let e = Htpasswd::open(&path, "r", "default")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no users"), "{e}");
    }

    #[test]
    fn repeated_failures_are_slowed_down_per_client_and_user() {
        let free = FREE_FAILURES;
        assert_eq!(delay_after(free - 1, free), None);
        assert_eq!(delay_after(free, free), Some(FIRST_FAILURE_DELAY));
        assert_eq!(delay_after(free + 1, free), Some(FIRST_FAILURE_DELAY * 2));
        assert_eq!(delay_after(1000, free), Some(MAX_FAILURE_DELAY));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "x")]);
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..FREE_FAILURES {
            assert_eq!(h.shared.failure_delay(ip, "alice"), None);
            h.shared.record_failure(ip, "alice".into());
        }
        assert_eq!(
            h.shared.failure_delay(ip, "alice"),
            Some(FIRST_FAILURE_DELAY)
        );
        assert_eq!(h.shared.failure_delay(ip, "bob"), None, "per user");
        assert_eq!(
            h.shared.failure_delay([10, 0, 0, 2].into(), "alice"),
            None,
            "per client"
        );
    }

    #[tokio::test]
    async fn many_user_names_from_one_client_are_slowed_down_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "x")]);
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        let ip: IpAddr = [127, 0, 0, 1].into();
        // One failure for alice, then names that each fail once only, far
        // from their own allowance.
        h.shared.record_failure(ip, "alice".into());
        for n in 1..FREE_CLIENT_FAILURES {
            assert_eq!(h.shared.failure_delay(ip, "anyone"), None, "after {n}");
            h.shared.record_failure(ip, format!("guess{n}"));
        }
        assert_eq!(
            h.shared.failure_delay(ip, "anyone"),
            Some(FIRST_FAILURE_DELAY)
        );
        assert_eq!(
            h.shared.failure_delay([127, 0, 0, 2].into(), "anyone"),
            None
        );

        // The longer of the two waits applies: here the user's.
        let elsewhere: IpAddr = [127, 0, 0, 3].into();
        for _ in 0..FREE_FAILURES + 2 {
            h.shared.record_failure(elsewhere, "alice".into());
        }
        assert_eq!(
            h.shared.failure_delay(elsewhere, "alice"),
            Some(FIRST_FAILURE_DELAY * 4)
        );
        assert_eq!(h.shared.failure_delay(elsewhere, "bob"), None);

        // Signing in clears the user's count, not the client's.
        let started = Instant::now();
        assert!(matches!(
            verdict(&h, Some(basic("alice", "x"))).await,
            Verdict::Allow(_)
        ));
        assert!(started.elapsed() >= FIRST_FAILURE_DELAY, "it waited first");
        let failures = lock(&h.shared.failures);
        assert!(!failures.by_user.contains_key(&(ip, "alice".into())));
        assert_eq!(failures.by_client[&ip].count, FREE_CLIENT_FAILURES);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client(a), client(b));
        assert_ne!(client(a), client(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client(mapped), IpAddr::from([10, 0, 0, 1]));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "x")]);
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        for n in 0..FREE_CLIENT_FAILURES {
            h.shared.record_failure(a, format!("guess{n}"));
        }
        assert_eq!(h.shared.failure_delay(b, "new"), Some(FIRST_FAILURE_DELAY));
        assert_eq!(h.shared.failure_delay(other, "new"), None);
    }

    #[test]
    fn the_dummy_cost_is_the_most_common_cost_of_the_file() {
        let hashes = |costs: &[u32]| -> HashMap<String, String> {
            costs
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("u{i}"), format!("$2y${c:02}${}", "x".repeat(53))))
                .collect()
        };
        assert_eq!(common_cost(&hashes(&[12, 10, 12])), 12);
        assert_eq!(
            common_cost(&hashes(&[5, 11, 5, 11])),
            11,
            "the higher on a tie"
        );
        assert_eq!(common_cost(&hashes(&[])), DEFAULT_COST);
        let mut odd = hashes(&[]);
        odd.insert("odd".into(), format!("$2y$xx${}", "x".repeat(53)));
        assert_eq!(common_cost(&odd), DEFAULT_COST);
    }

    fn dummy_cost(h: &Htpasswd) -> u32 {
        read_lock(&h.shared.file).dummy.hash[4..6].parse().unwrap()
    }

    #[tokio::test]
    async fn the_dummy_follows_the_cost_of_a_reloaded_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "x")]);
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        assert_eq!(dummy_cost(&h), 4);
        // Unknown users are refused through the dummy.
        assert!(matches!(
            verdict(&h, Some(basic("nobody", "x"))).await,
            Verdict::Challenge(_)
        ));

        let new = dir.path().join("htpasswd.new");
        let lines = [
            entry("alice", "x", 5).unwrap(),
            entry("bob", "y", 5).unwrap(),
            line("carol", "z"),
        ];
        write(&new, &lines);
        std::fs::rename(&new, &path).unwrap();
        assert!(matches!(
            verdict(&h, Some(basic("bob", "y"))).await,
            Verdict::Allow(_)
        ));
        // Remade on the blocking pool, then swapped in.
        let deadline = Instant::now() + Duration::from_secs(10);
        while dummy_cost(&h) != 5 {
            assert!(
                Instant::now() < deadline,
                "the dummy kept cost {}",
                dummy_cost(&h)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(read_lock(&h.shared.file).dummy_cost, 5);
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(&path, &[line("alice", "x")]);
        let h = Htpasswd::open(&path, "r", "default").unwrap();
        for i in 0..CACHE_CAPACITY + 10 {
            let key = h.shared.cache_key("alice", &i.to_string());
            h.shared.remember(key, "alice", 0);
        }
        assert_eq!(lock(&h.shared.cache).entries.len(), CACHE_CAPACITY);
        let newest = h
            .shared
            .cache_key("alice", &(CACHE_CAPACITY + 9).to_string());
        assert!(h.shared.cached(&newest, 0));
        assert!(!h.shared.cached(&newest, 1), "a new generation drops it");
    }

    #[test]
    fn entries_are_apache_compatible() {
        let l = entry("alice", "pw", 4).unwrap();
        let (user, hash) = l.split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(bcrypt::verify("pw", hash).unwrap());
        assert!(entry("a:b", "pw", 4).is_err());
    }
}
