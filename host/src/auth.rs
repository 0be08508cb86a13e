//! `wharf:registry/auth`: who the caller is and what they may do.
//!
//! The server strips the `Authorization` header from each request before the
//! guest sees it and keeps it, with the client's address, in the request's
//! [`Caller`]; the guest only asks whether an action is allowed and gets a
//! verdict. An [`Authenticator`] decides: [`AllowAll`] when no authentication
//! is configured, [`crate::htpasswd::Htpasswd`] for `auth.htpasswd`.

use crate::bindings::auth::Host;
pub use crate::bindings::auth::{Action, Verdict};
use crate::state::RequestState;
use futures::future::BoxFuture;
use std::net::SocketAddr;

/// Who sent the current request, as far as the host knows.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The request's `Authorization` header, if any.
    pub credentials: Option<String>,
    /// The client's address (the TCP peer).
    pub peer: Option<SocketAddr>,
}

/// Decides, from a request's caller, whether an action is allowed. Async, so
/// that slow checks (bcrypt) do not hold a runtime thread.
pub trait Authenticator: Send + Sync + 'static {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        repository: Option<&'a str>,
        action: Action,
    ) -> BoxFuture<'a, Verdict>;
}

/// No authentication configured: everyone may do everything, as registry:2
/// does without an `auth` section.
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authorize<'a>(
        &'a self,
        _: &'a Caller,
        _: Option<&'a str>,
        _: Action,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(std::future::ready(Verdict::Allow(None)))
    }
}

impl Host for RequestState {
    async fn authorize(
        &mut self,
        repository: Option<String>,
        action: Action,
    ) -> wasmtime::Result<Verdict> {
        let auth = self.capabilities.auth.clone();
        Ok(auth
            .authorize(&self.caller, repository.as_deref(), action)
            .await)
    }
}
