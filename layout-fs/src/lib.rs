//! registry:2's on-disk layout (`wharf_spec::layout` names its paths) as
//! `std::fs` reads and writes it, in one place for the two storages that
//! keep it: `wharf serve`'s filesystem backend and the standalone
//! component's storage on `wasi:filesystem` (`std::fs` builds for
//! `wasm32-wasip2`, where absolute paths resolve against the preopened
//! directories). [`durable`] makes a file visible only whole and makes
//! that survive a power loss; [`walk`] lists the layout's directories;
//! [`links`] reads its link files and the referrers they list;
//! [`parts`] reads an upload session written as parts (the standalone
//! component's) and folds it into the one file `wharf serve` appends to.
//!
//! Errors are plain `io::Error`s: each storage adds the path and its own
//! words.

pub mod durable;
pub mod links;
pub mod parts;
pub mod walk;
