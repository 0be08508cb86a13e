//! The `catalog` resource: the registry as a whole, for callers the gate
//! lets see it.

use crate::access::{authorize, page, store, to_wit};
use crate::bindings::exports::wharf::registry::repositories::{Catalog, GuestCatalog};
use crate::bindings::wharf::registry::types::{Access, Page, Refusal, StoreError};

/// A caller that may see the registry.
pub struct CatalogHandle;

impl GuestCatalog for CatalogHandle {
    fn open() -> Result<Catalog, Refusal> {
        authorize(None, Access::PULL)?;
        Ok(Catalog::new(CatalogHandle))
    }

    fn list_repositories(&self, after: Option<String>, limit: u32) -> Result<Page, StoreError> {
        store()
            .list_repositories(after.as_deref(), limit)
            .map(page)
            .map_err(to_wit)
    }
}
