//! Who sent the request: registry:2's `auth.htpasswd`, configured by the
//! same variables (`REGISTRY_AUTH=htpasswd`, `REGISTRY_AUTH_HTPASSWD_PATH`,
//! `REGISTRY_AUTH_HTPASSWD_REALM`) through `wasi:cli/environment`, the file
//! read from a directory the host preopened, passwords checked with bcrypt
//! in wasm.
//!
//! A stock host makes a fresh instance for every request (`wasmtime serve`
//! does unless `--max-instance-reuse-count` says otherwise), so the file is
//! read, and a password checked, per request: nothing is remembered that
//! could go stale. An instance that is reused remembers the credentials it
//! verified for [`CACHE_TTL`], keyed by a hash of user, password and entry,
//! as the native host does.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use wharf_spec::{Algorithm, Hasher};

/// How long a reused instance trusts credentials it verified.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// The realm when `REGISTRY_AUTH_HTPASSWD_REALM` is not set.
pub const DEFAULT_REALM: &str = "Registry Realm";

/// How requests are authenticated.
#[derive(Debug)]
pub enum Auth {
    /// No `REGISTRY_AUTH`: everyone may do everything, as registry:2.
    Open,
    /// `REGISTRY_AUTH=htpasswd`.
    Htpasswd {
        users: HashMap<String, String>,
        /// The `WWW-Authenticate` value asking for credentials.
        challenge: String,
    },
    /// A configuration the gate cannot serve; every request is answered
    /// with this text (the host's log shows it too).
    Broken(String),
}

/// Who the caller proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

/// Why a request is answered by the gate itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Wrong or unreadable credentials: 401 with this challenge.
    Challenge(String),
    /// The configuration is broken: 500 with this text.
    Broken(String),
}

impl Auth {
    /// The configuration `vars` (the instance's environment) describe,
    /// reading the htpasswd file with `read`.
    pub fn from_vars(
        vars: &HashMap<String, String>,
        read: impl FnOnce(&str) -> std::io::Result<String>,
    ) -> Auth {
        let Some(kind) = vars.get("REGISTRY_AUTH").filter(|v| !v.is_empty()) else {
            return Auth::Open;
        };
        if kind != "htpasswd" {
            return Auth::Broken(format!(
                "REGISTRY_AUTH={kind} is not supported by the standalone registry; \
                 use REGISTRY_AUTH=htpasswd, or serve with `wharf serve`"
            ));
        }
        let Some(path) = vars
            .get("REGISTRY_AUTH_HTPASSWD_PATH")
            .filter(|p| !p.is_empty())
        else {
            return Auth::Broken(
                "REGISTRY_AUTH=htpasswd needs REGISTRY_AUTH_HTPASSWD_PATH: the htpasswd file, \
                 in a directory the host preopens (wasmtime serve --dir HOST_DIR::/auth)"
                    .into(),
            );
        };
        let realm = vars
            .get("REGISTRY_AUTH_HTPASSWD_REALM")
            .map_or(DEFAULT_REALM, String::as_str);
        let text = match read(path) {
            Ok(text) => text,
            Err(e) => {
                return Auth::Broken(format!(
                    "cannot read the htpasswd file {path}: {e} (is its directory preopened? \
                     wasmtime serve --dir HOST_DIR::/auth)"
                ));
            }
        };
        match wharf_spec::htpasswd::parse(&text) {
            Ok(users) => Auth::Htpasswd {
                users,
                challenge: wharf_spec::htpasswd::challenge(realm),
            },
            Err(e) => Auth::Broken(format!("htpasswd file {path}: {e}")),
        }
    }

    /// Who `authorization` (the request's header, if any) proves the caller
    /// to be; `verified` remembers successes of a reused instance.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        verified: &mut Verified,
    ) -> Result<Identity, Refused> {
        let (users, challenge) = match self {
            Auth::Open => return Ok(Identity::Anonymous),
            Auth::Broken(text) => return Err(Refused::Broken(text.clone())),
            Auth::Htpasswd { users, challenge } => (users, challenge),
        };
        let Some(header) = authorization else {
            return Ok(Identity::Anonymous);
        };
        let refused = || Refused::Challenge(challenge.clone());
        let (user, password) =
            wharf_spec::htpasswd::basic_credentials(header).ok_or_else(refused)?;
        let hash = users.get(&user).ok_or_else(refused)?;
        let key = cache_key(&user, &password, hash);
        if verified.holds(&key) {
            return Ok(Identity::User(user));
        }
        if bcrypt::verify(&password, hash).unwrap_or(false) {
            verified.remember(key);
            Ok(Identity::User(user))
        } else {
            Err(refused())
        }
    }

    /// The challenge an anonymous caller gets, when credentials are asked for.
    pub fn challenge(&self) -> Option<&str> {
        match self {
            Auth::Htpasswd { challenge, .. } => Some(challenge),
            _ => None,
        }
    }
}

/// Credentials verified by this instance, and when.
#[derive(Debug, Default)]
pub struct Verified(HashMap<String, Instant>);

impl Verified {
    fn holds(&mut self, key: &str) -> bool {
        self.0.retain(|_, at| at.elapsed() < CACHE_TTL);
        self.0.contains_key(key)
    }

    fn remember(&mut self, key: String) {
        self.0.insert(key, Instant::now());
    }
}

/// A hash of what was verified, so no password stays in memory, and a
/// changed entry is verified again.
fn cache_key(user: &str, password: &str, hash: &str) -> String {
    let mut hasher = Hasher::new(Algorithm::Sha256);
    for part in [user, password, hash] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finish().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn htpasswd(user: &str, password: &str) -> Auth {
        let line = format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap());
        Auth::from_vars(
            &vars(&[
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
            ]),
            |path| {
                assert_eq!(path, "/auth/htpasswd");
                Ok(line)
            },
        )
    }

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn without_registry_auth_everyone_is_anonymous_and_allowed() {
        let auth = Auth::from_vars(&vars(&[]), |_| unreachable!());
        assert!(matches!(auth, Auth::Open));
        let header = basic("a", "b");
        assert_eq!(
            auth.identify(Some(&header), &mut Verified::default()),
            Ok(Identity::Anonymous)
        );
    }

    #[test]
    fn the_right_password_is_a_user_and_a_wrong_one_a_challenge() {
        let auth = htpasswd("alice", "secret");
        let mut verified = Verified::default();
        assert_eq!(
            auth.identify(Some(&basic("alice", "secret")), &mut verified),
            Ok(Identity::User("alice".into()))
        );
        let challenge = Err(Refused::Challenge("Basic realm=\"Registry Realm\"".into()));
        assert_eq!(
            auth.identify(Some(&basic("alice", "wrong")), &mut verified),
            challenge
        );
        assert_eq!(
            auth.identify(Some(&basic("bob", "secret")), &mut verified),
            challenge
        );
        assert_eq!(auth.identify(Some("Bearer x"), &mut verified), challenge);
        assert_eq!(auth.identify(None, &mut verified), Ok(Identity::Anonymous));
    }

    #[test]
    fn a_reused_instance_remembers_only_what_it_verified() {
        let auth = htpasswd("alice", "secret");
        let mut verified = Verified::default();
        auth.identify(Some(&basic("alice", "secret")), &mut verified)
            .unwrap();
        assert_eq!(verified.0.len(), 1);
        assert!(
            auth.identify(Some(&basic("alice", "other")), &mut verified)
                .is_err()
        );
        assert_eq!(verified.0.len(), 1);
    }

    #[test]
    fn a_broken_configuration_says_what_to_do() {
        let other = Auth::from_vars(&vars(&[("REGISTRY_AUTH", "token")]), |_| unreachable!());
        assert!(matches!(other, Auth::Broken(ref t) if t.contains("REGISTRY_AUTH=htpasswd")));
        let no_path = Auth::from_vars(&vars(&[("REGISTRY_AUTH", "htpasswd")]), |_| unreachable!());
        assert!(
            matches!(no_path, Auth::Broken(ref t) if t.contains("REGISTRY_AUTH_HTPASSWD_PATH"))
        );
        let unreadable = Auth::from_vars(
            &vars(&[
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/missing"),
            ]),
            |_| Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        );
        assert!(
            matches!(unreadable, Auth::Broken(ref t) if t.contains("/auth/missing") && t.contains("--dir"))
        );
        assert!(matches!(
            unreadable.identify(None, &mut Verified::default()),
            Err(Refused::Broken(_))
        ));
    }
}
