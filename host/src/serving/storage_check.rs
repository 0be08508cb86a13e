//! registry:2's `health.storagedriver`: each registry's storage is checked
//! every `interval` (listed and written, as `/debug/health` checks it);
//! after `threshold` failures in a row the registry answers every request
//! 503 `UNAVAILABLE` ("health check failed: please see /debug/health"),
//! until a check passes. A registry whose disk went away then tells its
//! clients and load balancer so, rather than failing request by request.

use crate::serving::config::StorageCheck;
use crate::storage::Backend;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the last checks found for one registry.
#[derive(Default)]
pub struct Status {
    /// Why the registry is unavailable, while it is.
    failing: Mutex<Option<String>>,
}

impl Status {
    /// Why requests are refused now, if they are.
    pub fn failing(&self) -> Option<String> {
        crate::sync::lock(&self.failing).clone()
    }

    fn set(&self, failing: Option<String>) {
        *crate::sync::lock(&self.failing) = failing;
    }
}

/// Check `storage` once, on a blocking thread, within `within`: why it
/// failed, if it did. What `/debug/health` and [`watch`] both ask.
pub async fn check(storage: Arc<dyn Backend>, within: Duration) -> Result<(), String> {
    let checked = tokio::time::timeout(
        within,
        tokio::task::spawn_blocking(move || storage.check_health()),
    )
    .await;
    match checked {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("the check failed: {e}")),
        Err(_) => Err(format!("the storage did not answer within {within:?}")),
    }
}

/// Check `storage` as `settings` say, for as long as the process runs,
/// keeping `status` current.
pub async fn watch(
    tenant: String,
    storage: Arc<dyn Backend>,
    settings: StorageCheck,
    status: Arc<Status>,
) {
    let interval = settings.interval.unwrap_or(Duration::from_secs(10));
    let threshold = settings.threshold.max(1);
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(interval).await;
        let checked = check(storage.clone(), interval.max(Duration::from_secs(5))).await;
        match checked.err() {
            None => {
                if failures >= threshold {
                    tracing::info!(tenant, "storage health check passes again: serving");
                }
                failures = 0;
                status.set(None);
            }
            Some(reason) => {
                failures = failures.saturating_add(1);
                if failures == threshold {
                    tracing::error!(
                        tenant,
                        failures,
                        reason,
                        "storage health check failing: answering 503 until it passes"
                    );
                }
                if failures >= threshold {
                    status.set(Some(reason));
                }
            }
        }
    }
}
