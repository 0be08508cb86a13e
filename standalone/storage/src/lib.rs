//! The standalone registry's storage: `wharf:registry/repositories` on
//! `wasi:filesystem`, in registry:2's layout, for the world
//! `wharf:registry/filesystem-storage` (`wit/standalone.wit`).
//!
//! It behaves as the native host's `capabilities/repositories.rs` over its filesystem
//! backend (`host/src/storage/fs.rs`): the same checks of access and
//! arguments, the same errors, the same files written in the same order
//! (`wharf_spec::layout`), so a data directory moves between `wharf serve`
//! and a stock `wasmtime serve`. What differs is forced by the host it
//! runs under: one fresh instance per request, many at once, sharing
//! nothing but the directory. So nothing is kept in memory between calls
//! of different requests, every write is a rename or a hard link into
//! place, and upload sessions are chains of parts committed by links
//! (`wharf_layout_fs::parts`, [`sessions`]) instead of one file and an
//! in-memory hasher.
//!
//! The storage logic works on `std::fs` alone and runs natively in the unit
//! tests: [`metadata`] (manifests, tags, referrers, blob links, the
//! catalog), [`sessions`] (uploads), [`files`] (durable small writes), and
//! the pure pieces ([`ids`], [`settings`]; parts are `wharf_layout_fs`'s,
//! pages and ranges `wharf_spec`'s). Only the shell is wasm: the bindings, the access checks
//! and the calls to the gate (`access.rs`), the WIT resources
//! (`catalog.rs`, `repository.rs`, `uploads.rs`) and the `wasi:io` streams
//! of files (`streams.rs`), through which blob bytes go from disk to the
//! response, and from the request to disk, without entering this
//! component's memory.

pub mod error;
pub mod files;
pub mod ids;
pub mod metadata;
pub mod random;
pub mod sessions;
pub mod settings;
#[cfg(test)]
mod testdir;

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wharf:registry/filesystem-storage",
        generate_all,
    });
}

#[cfg(target_arch = "wasm32")]
mod access;
#[cfg(target_arch = "wasm32")]
mod catalog;
#[cfg(target_arch = "wasm32")]
mod repository;
#[cfg(target_arch = "wasm32")]
mod streams;
#[cfg(target_arch = "wasm32")]
mod uploads;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::bindings;
    use bindings::exports::wharf::registry::repositories::Guest;

    /// The exported interface: its three resources.
    pub struct Storage;

    impl Guest for Storage {
        type Catalog = crate::catalog::CatalogHandle;
        type Repository = crate::repository::RepositoryHandle;
        type Upload = crate::uploads::UploadHandle;
    }

    bindings::export!(Storage with_types_in bindings);
}
