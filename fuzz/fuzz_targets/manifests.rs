//! Manifest validation: any bytes under any content type get a verdict,
//! never a panic (deep nesting, duplicate keys, huge numbers included), and
//! an accepted manifest names a media type and a well-formed subject.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_guest::manifests::check;
use wharf_guest::{Digest, DigestError};

const TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.example.artifact+json",
];

fuzz_target!(|input: (u8, &[u8])| {
    let (selector, content) = input;
    let header = TYPES
        .get(usize::from(selector) % (TYPES.len() + 1))
        .copied();
    if let Ok(checked) = check(header, content) {
        assert!(serde_json::from_slice::<serde_json::Value>(content).is_ok());
        if let Some(header) = header {
            assert_eq!(checked.media_type, header);
        }
        if let Some(subject) = checked.subject {
            assert!(matches!(
                Digest::parse(&subject),
                Ok(_) | Err(DigestError::Unsupported(_))
            ));
        }
    }
});
