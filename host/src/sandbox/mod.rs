//! Where a request crosses into the component: the engine and one fresh
//! instance per request ([`runtime`]), what that instance holds and can
//! reach ([`state`]), the limits it runs under ([`capacity`]: admission to
//! an instance slot; [`memory`]: guest linear memory; [`progress`]: bodies
//! that end the request when the client stalls), replacing the
//! component while serving ([`hot_swap`]), and the component's two forms
//! ([`standalone`]).

pub mod capacity;
pub mod config;
pub mod hot_swap;
pub mod memory;
pub mod progress;
pub mod runtime;
pub mod standalone;
pub mod state;
