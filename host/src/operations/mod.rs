//! The operator's commands besides `serve`: offline (and online) garbage
//! collection ([`gc`]), a local CA and server certificates ([`cert`]),
//! htpasswd lines ([`htpasswd`]) and the container's health check
//! ([`health`]).

pub mod cert;
pub mod gc;
pub mod health;
pub mod htpasswd;
