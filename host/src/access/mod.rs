//! Who the caller is and what they may do.
//!
//! Authentication happens in the server, before any component instance
//! exists: the server strips the `Authorization` header from each request,
//! and [`AccessControl::authenticate`] turns it (with the client's address)
//! into an [`Identity`], or refuses it with a challenge that the server
//! answers itself. bcrypt and the slow-down of repeated failures therefore
//! never run inside a guest's call, and never hold an instance. The
//! instance is lent only the identity; when the guest opens a repository
//! (`capabilities/repositories.rs`), [`AccessControl::authorize`] decides from it at
//! once which access the handle may have.
//! [`AllowAll`] when no authentication is configured,
//! [`crate::access::htpasswd::Htpasswd`] for `auth.htpasswd` (governed by
//! [`crate::access::rules`]), [`crate::access::token::Token`] for `auth.token`;
//! [`ReadOnly`] around any of them in read-only maintenance mode.

pub mod config;
pub mod htpasswd;
pub mod rules;
pub mod token;

use futures::future::BoxFuture;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What a caller may do to a repository (or, with none, the registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

/// What [`AccessControl::authorize`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the caller's name when they authenticated.
    Allow(Option<String>),
    /// No valid credentials: answer 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// Not allowed, whoever asks; the text says why (the registry is in
    /// read-only mode, say).
    Deny(String),
}

/// Who sent the current request, as far as the host knows.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The request's `Authorization` header, if any.
    pub credentials: Option<String>,
    /// The client's address (the TCP peer).
    pub peer: Option<SocketAddr>,
}

/// The client an address belongs to, for limits counted per client: the
/// IP address, or for IPv6 its /64 (a host is usually handed a whole /64,
/// so each of its addresses would otherwise get an allowance of its own).
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Who the caller proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials were sent.
    Anonymous,
    /// Valid credentials of this user.
    User(String),
    /// A valid token (`auth.token`), and what it grants.
    Token(Arc<token::Grant>),
}

impl Identity {
    /// The user's name, if any: for the access log.
    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::User(user) => Some(user),
            Identity::Token(grant) => Some(grant.subject.as_str()).filter(|s| !s.is_empty()),
        }
    }
}

/// Credentials that prove nothing: answer 401 with this `WWW-Authenticate`
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub challenge: String,
}

/// Access control: checks a caller's credentials (authentication), then
/// decides what the identity they prove may do (authorization).
pub trait AccessControl: Send + Sync + 'static {
    /// Check the caller's credentials. Async, so that slow checks (bcrypt,
    /// the slow-down of repeated failures) do not hold a runtime thread;
    /// run by the server before an instance is taken.
    fn authenticate<'a>(&'a self, caller: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>>;

    /// May `identity` perform `action` on `repository` (none: the registry
    /// itself)? Answered from memory, during the guest's call.
    fn authorize(&self, identity: &Identity, repository: Option<&str>, action: Action) -> Verdict;

    /// May `identity` list the catalog (`GET /v2/_catalog`)? Asked by the
    /// server before the component runs, because the component opens the
    /// same catalog handle for `GET /v2/`. Everyone who may use the
    /// registry may, unless the scheme says otherwise (tokens need
    /// `registry:catalog:*`).
    fn authorize_catalog(&self, _identity: &Identity) -> Verdict {
        Verdict::Allow(None)
    }

    /// Does the catalog show `identity` this repository? The ones they may
    /// pull, unless the scheme says otherwise.
    fn lists(&self, identity: &Identity, repository: &str) -> bool {
        matches!(
            self.authorize(identity, Some(repository), Action::Pull),
            Verdict::Allow(_)
        )
    }
}

/// No authentication configured: everyone may do everything, as registry:2
/// does without an `auth` section.
pub struct AllowAll;

impl AccessControl for AllowAll {
    fn authenticate<'a>(&'a self, _: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
        Box::pin(std::future::ready(Ok(Identity::Anonymous)))
    }

    fn authorize(&self, identity: &Identity, _: Option<&str>, _: Action) -> Verdict {
        Verdict::Allow(identity.user().map(str::to_string))
    }
}

/// `storage.maintenance.readonly`: whatever `inner` allows, only pulls.
/// The host refuses a push or delete before a component runs (405, as
/// registry:2); this makes the capabilities refuse them too, whatever a
/// component asks for.
pub struct ReadOnly<A>(pub A);

/// Why a push or delete is refused in read-only mode.
pub const READ_ONLY: &str = "the registry is in read-only maintenance mode \
    (storage.maintenance.readonly.enabled): pushes and deletes are refused until it is turned off";

impl<A: AccessControl> AccessControl for ReadOnly<A> {
    fn authenticate<'a>(&'a self, caller: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
        self.0.authenticate(caller)
    }

    fn authorize(&self, identity: &Identity, repository: Option<&str>, action: Action) -> Verdict {
        match (self.0.authorize(identity, repository, action), action) {
            (Verdict::Allow(_), Action::Push | Action::Delete) => Verdict::Deny(READ_ONLY.into()),
            (verdict, _) => verdict,
        }
    }

    fn authorize_catalog(&self, identity: &Identity) -> Verdict {
        self.0.authorize_catalog(identity)
    }

    fn lists(&self, identity: &Identity, repository: &str) -> bool {
        self.0.lists(identity, repository)
    }
}

/// The access control `auth` configures for registry `name` (none: everyone
/// may do everything), governed by `auth.access` rules read from
/// `rules_source` with htpasswd, and wrapped in [`ReadOnly`] when
/// `read_only`.
pub fn open(
    auth: &config::Auth,
    rules_source: Option<rules::Source>,
    read_only: bool,
    name: &str,
) -> anyhow::Result<Arc<dyn AccessControl>> {
    fn held_to(access: impl AccessControl, read_only: bool) -> Arc<dyn AccessControl> {
        if read_only {
            Arc::new(ReadOnly(access))
        } else {
            Arc::new(access)
        }
    }
    Ok(match (&auth.htpasswd, &auth.token) {
        (None, None) => held_to(AllowAll, read_only),
        (_, Some(t)) => {
            let keys = token::TrustedKeys::load(t.rootcertbundle.as_deref(), t.jwks.as_deref())?;
            let token = token::Token::new(t, keys, name)?;
            tracing::info!(
                tenant = name,
                realm = t.realm,
                service = t.service,
                issuer = t.issuer,
                "token authentication"
            );
            held_to(token, read_only)
        }
        (Some(h), None) => {
            let htpasswd = htpasswd::Htpasswd::open(&h.path, &h.realm, name)?;
            tracing::info!(tenant = name, path = %h.path.display(), users = htpasswd.users(), realm = h.realm, "htpasswd authentication");
            // The rules govern even when there are none yet, so that
            // adding them to the file takes effect without a restart.
            if let Some(rules) = &auth.access {
                tracing::info!(tenant = name, rules = rules.len(), "access rules");
            }
            let governed = rules::Governed::new(htpasswd, auth.access.clone(), rules_source, name);
            held_to(governed, read_only)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_allows_pulls_and_denies_the_rest() {
        let ro = ReadOnly(AllowAll);
        let who = Identity::User("alice".into());
        assert_eq!(
            ro.authorize(&who, Some("a"), Action::Pull),
            Verdict::Allow(Some("alice".into()))
        );
        for action in [Action::Push, Action::Delete] {
            assert!(matches!(
                ro.authorize(&who, Some("a"), action),
                Verdict::Deny(_)
            ));
        }
    }
}
