//! Wharf's integration tests, one binary: each module drives real
//! `wharf serve` processes (and Docker, skopeo, podman, nginx, Garage,
//! `wasmtime serve` where a test needs them) over loopback. `support` holds
//! what they share.

mod support;

mod access;
mod access_rules;
mod artifacts;
mod capacity;
mod conformance;
mod crash;
mod docker;
mod docker_tls;
mod from_registry_2;
mod gc;
mod hostile;
mod hot_swap;
mod image;
mod nginx;
mod notifications;
mod oci_client;
mod operations;
mod quota;
mod races;
mod s3;
mod sandbox;
mod skopeo;
mod standalone;
mod tenants;
mod tenants_tls;
mod tls_auth;
mod token;
