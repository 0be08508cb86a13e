//! `wharf:registry/metadata`: repositories, manifests, tags and blob links
//! for the guest, translated to a [`MetadataStore`].

use crate::bindings::metadata::{Host, Manifest};
use crate::bindings::types::{Error, Page};
use crate::blobs::{blocking, digest_arg, inline, repository_arg};
use crate::state::RequestState;
use crate::storage::{self, MetadataStore, StorageError};
use std::sync::Arc;

fn store(state: &RequestState) -> Arc<dyn MetadataStore> {
    state.capabilities.metadata.clone()
}

fn page(p: storage::Page) -> Page {
    Page {
        entries: p.entries,
        more: p.more,
    }
}

/// A tag becomes a directory name: check the spec's grammar again.
fn tag_arg(tag: &str) -> Result<&str, StorageError> {
    if wharf_guest::names::is_valid_tag(tag) {
        Ok(tag)
    } else {
        Err(StorageError::Invalid(format!("invalid tag {tag:?}")))
    }
}

type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl Host for RequestState {
    async fn get_manifest(
        &mut self,
        repository: String,
        digest: String,
    ) -> Answer<Option<Manifest>> {
        let store = store(self);
        inline(move || {
            let manifest =
                store.get_manifest(repository_arg(&repository)?, &digest_arg(&digest)?)?;
            Ok(manifest.map(|m| Manifest {
                digest: m.digest.to_string(),
                media_type: m.media_type,
                content: m.content,
                subject: m.subject.map(|d| d.to_string()),
            }))
        })
    }

    async fn put_manifest(&mut self, repository: String, manifest: Manifest) -> Answer<()> {
        let store = store(self);
        blocking(move || {
            let stored = storage::Manifest {
                digest: digest_arg(&manifest.digest)?,
                media_type: manifest.media_type,
                content: manifest.content,
                subject: manifest.subject.as_deref().map(digest_arg).transpose()?,
            };
            store.put_manifest(repository_arg(&repository)?, &stored)
        })
        .await
    }

    async fn delete_manifest(&mut self, repository: String, digest: String) -> Answer<bool> {
        let store = store(self);
        blocking(move || store.delete_manifest(repository_arg(&repository)?, &digest_arg(&digest)?))
            .await
    }

    async fn resolve_tag(&mut self, repository: String, tag: String) -> Answer<Option<String>> {
        let store = store(self);
        inline(move || {
            let digest = store.resolve_tag(repository_arg(&repository)?, tag_arg(&tag)?)?;
            Ok(digest.map(|d| d.to_string()))
        })
    }

    async fn set_tag(&mut self, repository: String, tag: String, digest: String) -> Answer<()> {
        let store = store(self);
        blocking(move || {
            store.set_tag(
                repository_arg(&repository)?,
                tag_arg(&tag)?,
                &digest_arg(&digest)?,
            )
        })
        .await
    }

    async fn delete_tag(&mut self, repository: String, tag: String) -> Answer<bool> {
        let store = store(self);
        blocking(move || store.delete_tag(repository_arg(&repository)?, tag_arg(&tag)?)).await
    }

    async fn list_tags(
        &mut self,
        repository: String,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Option<Page>> {
        let store = store(self);
        blocking(move || {
            let tags = store.list_tags(repository_arg(&repository)?, after.as_deref(), limit)?;
            Ok(tags.map(page))
        })
        .await
    }

    async fn list_repositories(&mut self, after: Option<String>, limit: u32) -> Answer<Page> {
        let store = store(self);
        blocking(move || Ok(page(store.list_repositories(after.as_deref(), limit)?))).await
    }

    async fn list_referrers(
        &mut self,
        repository: String,
        subject: String,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Page> {
        let store = store(self);
        blocking(move || {
            let referrers = store.list_referrers(
                repository_arg(&repository)?,
                &digest_arg(&subject)?,
                after.as_deref(),
                limit,
            )?;
            Ok(page(referrers))
        })
        .await
    }

    async fn link_blob(&mut self, repository: String, digest: String) -> Answer<()> {
        let store = store(self);
        blocking(move || store.link_blob(repository_arg(&repository)?, &digest_arg(&digest)?)).await
    }

    async fn blob_linked(&mut self, repository: String, digest: String) -> Answer<bool> {
        let store = store(self);
        inline(move || store.blob_linked(repository_arg(&repository)?, &digest_arg(&digest)?))
    }

    async fn unlink_blob(&mut self, repository: String, digest: String) -> Answer<bool> {
        let store = store(self);
        blocking(move || store.unlink_blob(repository_arg(&repository)?, &digest_arg(&digest)?))
            .await
    }
}
