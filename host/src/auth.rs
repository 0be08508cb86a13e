//! `wharf:registry/auth`: who the caller is and what they may do.
//!
//! The server strips the `Authorization` header from each request before the
//! guest sees it and keeps it in the request's state; the guest only asks
//! whether an action is allowed and gets a verdict. An [`Authenticator`]
//! decides; today's only one allows everything (no authentication is
//! configured), and htpasswd slots in behind the same trait.

use crate::bindings::auth::{Action, Host, Verdict};
use crate::state::RequestState;

/// Decides, from a request's credentials, whether an action is allowed.
pub trait Authenticator: Send + Sync + 'static {
    /// `credentials` is the request's `Authorization` header, if any.
    fn authorize(
        &self,
        credentials: Option<&str>,
        repository: Option<&str>,
        action: Action,
    ) -> Verdict;
}

/// No authentication configured: everyone may do everything, as registry:2
/// does without an `auth` section.
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authorize(&self, _: Option<&str>, _: Option<&str>, _: Action) -> Verdict {
        Verdict::Allow(None)
    }
}

impl Host for RequestState {
    async fn authorize(
        &mut self,
        repository: Option<String>,
        action: Action,
    ) -> wasmtime::Result<Verdict> {
        Ok(self.capabilities.auth.authorize(
            self.credentials.as_deref(),
            repository.as_deref(),
            action,
        ))
    }
}
