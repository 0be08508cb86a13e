//! Repository names, tags and manifest references: the grammar checks never
//! panic, and what they accept cannot escape a directory or break the
//! spec's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_spec::names::{MAX_NAME_LEN, MAX_TAG_LEN, Reference, is_valid_name, is_valid_tag};

fuzz_target!(|input: &str| {
    if is_valid_name(input) {
        assert!(input.len() <= MAX_NAME_LEN, "{input:?}");
        for component in input.split('/') {
            assert!(!component.is_empty() && component != "." && component != "..");
            assert!(!component.starts_with(['.', '_', '-']), "{input:?}");
        }
        assert!(
            input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)),
            "{input:?}"
        );
    }
    if is_valid_tag(input) {
        assert!(!input.is_empty() && input.len() <= MAX_TAG_LEN, "{input:?}");
        assert!(
            !input.starts_with(['.', '-']) && !input.contains('/'),
            "{input:?}"
        );
    }
    match Reference::parse(input) {
        Ok(Reference::Tag(tag)) => assert!(tag == input && is_valid_tag(&tag)),
        Ok(Reference::Digest(digest)) => assert_eq!(digest.to_string(), input),
        Err(_) => assert!(input.contains(':') || !is_valid_tag(input)),
    }
});
