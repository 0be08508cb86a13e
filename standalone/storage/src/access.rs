//! The checks that make handles capabilities, as the native host's
//! `capabilities/repositories.rs` makes them: which access a handle lacks, arguments
//! checked as they enter (digests, tags), the gate's decisions
//! (`access.authorize`), and storage errors as WIT errors.

use crate::bindings::wharf::registry::access as gate;
use crate::bindings::wharf::registry::types::{self as wit, Access, Page, Refusal};
use crate::error::StoreError;
use crate::metadata::Store;
use crate::settings::Settings;
use wharf_spec::Digest;

thread_local! {
    /// Read once per instance: the environment does not change under it.
    static SETTINGS: Settings = Settings::from_env();
}

/// The registry's storage as the environment configures it.
pub fn store() -> Store {
    SETTINGS.with(Store::new)
}

/// Whether the caller may have `access` on `repository` (none: the
/// registry itself): the gate decides.
pub fn authorize(repository: Option<&str>, access: Access) -> Result<(), Refusal> {
    gate::authorize(repository, access)
}

/// The rights in `access`, named as the host names them.
pub fn names(access: Access) -> String {
    [
        (Access::PULL, "pull"),
        (Access::PUSH, "push"),
        (Access::DELETE, "delete"),
    ]
    .into_iter()
    .filter(|(flag, _)| access.contains(*flag))
    .map(|(_, name)| name)
    .collect::<Vec<_>>()
    .join(", ")
}

/// The `denied` error of a handle of `repository` opened for `held` and
/// asked for `needed`, if it lacks some of it.
pub fn granted(repository: &str, held: Access, needed: Access) -> Result<(), wit::StoreError> {
    if held.contains(needed) {
        return Ok(());
    }
    Err(wit::StoreError::Denied(format!(
        "the handle of {repository} was opened without {} access",
        names(needed & !held)
    )))
}

/// A digest as it enters: checked once, then a typed value.
pub fn digest_arg(digest: &str) -> Result<Digest, wit::StoreError> {
    Digest::parse(digest).map_err(|e| wit::StoreError::Invalid(e.to_string()))
}

/// A tag as it enters: it becomes a directory name.
pub fn tag_arg(tag: &str) -> Result<(), wit::StoreError> {
    if wharf_spec::names::is_valid_tag(tag) {
        Ok(())
    } else {
        Err(wit::StoreError::Invalid(format!("invalid tag {tag:?}")))
    }
}

/// A storage failure as the guest sees it.
pub fn to_wit(e: StoreError) -> wit::StoreError {
    match e {
        StoreError::NotFound => wit::StoreError::NotFound,
        StoreError::DigestMismatch(d) => wit::StoreError::DigestMismatch(d.to_string()),
        StoreError::Invalid(m) => wit::StoreError::Invalid(m),
        StoreError::Unsupported(m) => wit::StoreError::Unsupported(m),
        StoreError::Io(m) => wit::StoreError::Storage(m),
    }
}

pub fn page(p: wharf_spec::pages::Page) -> Page {
    Page {
        entries: p.entries,
        more: p.more,
    }
}
