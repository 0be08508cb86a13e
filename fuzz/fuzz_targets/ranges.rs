//! `Range` (blob reads) and `Content-Range` (chunked uploads): parsing never
//! panics or overflows, and what it accepts lies within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_guest::uploads::parse_content_range;
use wharf_spec::ranges::{RangeRequest, Resolved};

fuzz_target!(|input: (&str, u64)| {
    let (header, size) = input;
    match RangeRequest::parse(header).and_then(|r| r.resolve(size)) {
        Some(Resolved::Satisfiable { first, last }) => {
            assert!(
                first <= last && last < size,
                "{header:?} {size}: {first}-{last}"
            );
        }
        Some(Resolved::Unsatisfiable) | None => {}
    }
    if let Some(chunk) = parse_content_range(header) {
        assert!(chunk.len >= 1, "{header:?}");
        // The last byte's offset is representable.
        assert!(
            chunk.first.checked_add(chunk.len - 1).is_some(),
            "{header:?}"
        );
    }
});
