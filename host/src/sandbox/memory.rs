//! Linear memory of component instances: one budget for the whole process,
//! and each instance's own ceiling (its tenant's `memory_bytes`).
//!
//! Every instance's memory growth (its initial size included) is asked of
//! its [`InstanceLimiter`]. Growth past the instance's ceiling traps that
//! request, as a memory bomb should. Growth that fits the ceiling but not
//! what is left of the process's [`MemoryBudget`] waits for other instances
//! to end, at most the queue timeout, and then fails the request with
//! [`Overloaded`] (the server answers 503 with `Retry-After`). So three
//! hundred 4 MiB manifest PUTs at once cannot add up to more than the
//! budget: some wait, none takes the machine down.
//!
//! Linear memory never shrinks, so an instance holds what it grew to until
//! it ends; the limiter gives it back when its store is dropped.

use crate::sync::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The budget when `capacity.guest_memory_bytes` is not set: half of the
/// machine's memory, at most 8 GiB.
pub fn default_budget() -> u64 {
    const CEILING: u64 = 8 << 30;
    let total = physical_memory().unwrap_or(CEILING * 2);
    (total / 2).min(CEILING)
}

fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A request failed because the process's guest memory budget stayed
/// exhausted for the whole queue timeout. Not the request's fault: the
/// server answers 503.
#[derive(Debug, thiserror::Error)]
#[error(
    "the registry is at capacity: no guest memory free for this request within {0:?} \
     (capacity.guest_memory_bytes); retry shortly"
)]
pub struct Overloaded(pub Duration);

/// Linear memory all instances together may hold.
pub struct MemoryBudget {
    limit: u64,
    used: Mutex<u64>,
    freed: Notify,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: Mutex::new(0),
            freed: Notify::new(),
        })
    }

    /// Bytes held by live instances.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        *lock(&self.used)
    }

    fn try_take(&self, bytes: u64) -> bool {
        let mut used = lock(&self.used);
        if used.saturating_add(bytes) > self.limit {
            return false;
        }
        *used += bytes;
        true
    }

    fn give_back(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut used = lock(&self.used);
        *used = used.saturating_sub(bytes);
        drop(used);
        self.freed.notify_waiters();
    }

    /// Take `bytes`, waiting until `deadline` for other instances to give
    /// memory back.
    async fn take(&self, bytes: u64, deadline: Instant) -> bool {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before checking, so a give-back between the check
            // and the wait is not missed.
            freed.as_mut().enable();
            if self.try_take(bytes) {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), freed)
                .await
                .is_err()
            {
                return self.try_take(bytes);
            }
        }
    }
}

/// One instance's view of the budget: installed as its store's limiter.
pub struct InstanceLimiter {
    budget: Arc<MemoryBudget>,
    /// The instance's ceiling: its tenant's `memory_bytes`.
    ceiling: usize,
    /// How long growth may wait for the budget.
    wait: Duration,
    /// Bytes this instance took from the budget.
    held: u64,
}

impl InstanceLimiter {
    pub fn new(budget: Arc<MemoryBudget>, ceiling: usize, wait: Duration) -> InstanceLimiter {
        InstanceLimiter {
            budget,
            ceiling,
            wait,
            held: 0,
        }
    }
}

impl Drop for InstanceLimiter {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

#[async_trait::async_trait]
impl wasmtime::ResourceLimiterAsync for InstanceLimiter {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.ceiling || maximum.is_some_and(|max| desired > max) {
            // A trap, not a refused `memory.grow`: a guest that asks for
            // more than its tenant allows is stopped.
            wasmtime::bail!(
                "the request's instance tried to grow its memory to {desired} bytes, past its \
                 memory_bytes limit of {} bytes",
                self.ceiling
            );
        }
        let extra = (desired.saturating_sub(current)) as u64;
        if self.budget.take(extra, Instant::now() + self.wait).await {
            self.held += extra;
            Ok(true)
        } else {
            Err(Overloaded(self.wait).into())
        }
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("growing the instance's memory failed"))
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiterAsync as _;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn growth_within_the_budget_is_granted_and_given_back_when_the_instance_ends() {
        let budget = MemoryBudget::new(10 * MIB as u64);
        let mut a = InstanceLimiter::new(budget.clone(), 8 * MIB, Duration::from_millis(10));
        assert!(a.memory_growing(0, 2 * MIB, None).await.unwrap());
        assert!(a.memory_growing(2 * MIB, 6 * MIB, None).await.unwrap());
        assert_eq!(budget.used(), 6 * MIB as u64);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn growth_past_the_ceiling_traps() {
        let budget = MemoryBudget::new(100 * MIB as u64);
        let mut a = InstanceLimiter::new(budget.clone(), 8 * MIB, Duration::from_millis(10));
        let e = a.memory_growing(0, 9 * MIB, None).await.unwrap_err();
        assert!(e.to_string().contains("memory_bytes"), "{e}");
        assert!(e.downcast_ref::<Overloaded>().is_none());
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn an_exhausted_budget_waits_then_overloads_and_is_free_again_once_others_end() {
        let budget = MemoryBudget::new(10 * MIB as u64);
        let mut a = InstanceLimiter::new(budget.clone(), 8 * MIB, Duration::from_millis(20));
        let mut b = InstanceLimiter::new(budget.clone(), 8 * MIB, Duration::from_millis(20));
        assert!(a.memory_growing(0, 8 * MIB, None).await.unwrap());
        let e = b.memory_growing(0, 4 * MIB, None).await.unwrap_err();
        assert!(e.downcast_ref::<Overloaded>().is_some(), "{e}");

        // A waiter is served as soon as memory comes back.
        let mut c = InstanceLimiter::new(budget.clone(), 8 * MIB, Duration::from_secs(5));
        let waiter = tokio::spawn(async move { c.memory_growing(0, 4 * MIB, None).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert!(waiter.await.unwrap());
    }
}
