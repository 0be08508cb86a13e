//! A manifest's references: reading them never panics, whatever the bytes,
//! and every digest found is canonical: it prints and parses back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_spec::Digest;
use wharf_spec::references::references;

fuzz_target!(|input: &[u8]| {
    let named = references(input);
    for digest in named.all() {
        assert_eq!(Digest::parse(&digest.to_string()).as_ref(), Ok(digest));
    }
});
