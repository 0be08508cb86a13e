//! Admission: how many requests may hold a component instance at once, in
//! the whole process, in one tenant, and from one client address.
//!
//! Every request that reaches a component holds three slots from before
//! its credentials are checked until its instance is gone (the response
//! sent, or the instance stopped):
//!
//! 1. one of its client address's `client_requests` slots in its tenant,
//!    taken at once or refused with 429 `TOOMANYREQUESTS`: one client must
//!    not queue in front of everyone else;
//! 2. one of its tenant's `concurrent_requests` slots, and
//! 3. one of the process's `capacity.instances` slots: the pool of
//!    component instances is sized from this number, so taking the slot
//!    means an instance is there to take.
//!
//! Slots 2 and 3 are waited for, together at most `capacity.queue_timeout`;
//! a request that gets none in time is answered 503 `UNAVAILABLE` with
//! `Retry-After`, by the host, without an instance. So a tenant can fill
//! only its own share of the pool, and a client only its share of its
//! tenant.
//!
//! This module counts; it knows nothing of HTTP, wasm or storage.

use crate::sync::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests one tenant may have in flight when its `limits` say nothing.
pub const DEFAULT_CONCURRENT_REQUESTS: u32 = 256;
/// Requests one client address may have in flight in one tenant when its
/// `limits` say nothing: a Docker push or pull uses 3 to 5 at a time.
pub const DEFAULT_CLIENT_REQUESTS: u32 = 64;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client already has its tenant's `client_requests` in flight.
    #[error(
        "too many requests in flight from this client: at most {0} at once; wait for some to finish"
    )]
    Client(u32),
    /// The tenant or the process had no free slot within the queue timeout.
    #[error("the registry is at capacity: no slot for this request within {0:?}; retry shortly")]
    Busy(Duration),
}

/// The process's instance slots and how long a request waits for one.
pub struct Admission {
    instances: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// One tenant's slots: its share of the process, and each client's share
/// of it.
pub struct TenantGate {
    requests: Arc<Semaphore>,
    client_requests: u32,
    clients: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// The slots a request holds; dropped when its instance is gone.
#[must_use = "the slots are given back when this is dropped"]
pub struct Slots {
    _client: ClientSlot,
    _tenant: OwnedSemaphorePermit,
    _instance: OwnedSemaphorePermit,
}

/// A client's slot in its tenant.
pub struct ClientSlot {
    clients: Arc<Mutex<HashMap<IpAddr, u32>>>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut clients = lock(&self.clients);
        if let Some(n) = clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    pub fn new(instances: u32, queue_timeout: Duration) -> Admission {
        Admission {
            instances: Arc::new(Semaphore::new(instances as usize)),
            queue_timeout,
        }
    }

    /// Wait (at most the queue timeout) for a slot in `tenant` and one in
    /// the process; `client` was taken by the caller first.
    pub async fn admit(&self, tenant: &TenantGate, client: ClientSlot) -> Result<Slots, Refusal> {
        let wait = async {
            let tenant = tenant.requests.clone().acquire_owned().await.ok()?;
            let instance = self.instances.clone().acquire_owned().await.ok()?;
            Some((tenant, instance))
        };
        match tokio::time::timeout(self.queue_timeout, wait).await {
            Ok(Some((tenant, instance))) => Ok(Slots {
                _client: client,
                _tenant: tenant,
                _instance: instance,
            }),
            _ => Err(Refusal::Busy(self.queue_timeout)),
        }
    }

    /// Instance slots free right now.
    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.instances.available_permits()
    }
}

impl TenantGate {
    pub fn new(concurrent_requests: u32, client_requests: u32) -> TenantGate {
        TenantGate {
            requests: Arc::new(Semaphore::new(concurrent_requests as usize)),
            client_requests,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for one more request from the client `ip` (an address as
    /// `auth::client_of` groups them), or the refusal if it already has
    /// `client_requests` in flight. Taken at once, never waited for.
    pub fn client(&self, ip: IpAddr) -> Result<ClientSlot, Refusal> {
        let mut clients = lock(&self.clients);
        let n = clients.entry(ip).or_insert(0);
        if *n >= self.client_requests {
            return Err(Refusal::Client(self.client_requests));
        }
        *n += 1;
        Ok(ClientSlot {
            clients: self.clients.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_client_gets_its_share_and_no_more_and_others_still_get_theirs() {
        let gate = TenantGate::new(10, 2);
        let first = gate.client(A).unwrap();
        let _second = gate.client(A).unwrap();
        assert_eq!(gate.client(A).err(), Some(Refusal::Client(2)));
        let _other = gate.client(B).unwrap();
        drop(first);
        let _again = gate.client(A).unwrap();
    }

    #[test]
    fn a_client_with_nothing_in_flight_is_forgotten() {
        let gate = TenantGate::new(10, 2);
        drop(gate.client(A).unwrap());
        assert!(lock(&gate.clients).is_empty());
    }

    #[tokio::test]
    async fn a_full_tenant_waits_then_is_refused_while_another_tenant_is_admitted() {
        let admission = Admission::new(3, Duration::from_millis(50));
        let acme = TenantGate::new(2, 10);
        let globex = TenantGate::new(2, 10);
        let _a1 = admission
            .admit(&acme, acme.client(A).unwrap())
            .await
            .unwrap();
        let _a2 = admission
            .admit(&acme, acme.client(A).unwrap())
            .await
            .unwrap();
        assert_eq!(
            admission.admit(&acme, acme.client(A).unwrap()).await.err(),
            Some(Refusal::Busy(Duration::from_millis(50)))
        );
        let _g1 = admission
            .admit(&globex, globex.client(A).unwrap())
            .await
            .unwrap();
        // The process is full now: globex waits too.
        assert!(
            admission
                .admit(&globex, globex.client(A).unwrap())
                .await
                .is_err()
        );
        assert_eq!(admission.free(), 0);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_slot_given_back() {
        let admission = Arc::new(Admission::new(1, Duration::from_secs(5)));
        let gate = Arc::new(TenantGate::new(5, 5));
        let held = admission
            .admit(&gate, gate.client(A).unwrap())
            .await
            .unwrap();
        let waiter = {
            let (admission, gate) = (admission.clone(), gate.clone());
            tokio::spawn(async move {
                admission
                    .admit(&gate, gate.client(A).unwrap())
                    .await
                    .is_ok()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
