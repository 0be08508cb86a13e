//! Digests: parsing never panics, and a parsed digest is canonical: it
//! prints as the input, has its algorithm's length of lower-case hex, and
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_spec::{Algorithm, Digest};

fuzz_target!(|input: &str| {
    if let Ok(digest) = Digest::parse(input) {
        assert_eq!(digest.to_string(), input);
        assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
        assert!(
            digest
                .hex()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(Digest::parse(&digest.to_string()).as_ref(), Ok(&digest));
    }
    // Hashing arbitrary bytes always yields a digest that parses and verifies.
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let digest = algorithm.digest(input.as_bytes());
        assert!(digest.verifies(input.as_bytes()));
        assert_eq!(Digest::parse(&digest.to_string()).as_ref(), Ok(&digest));
    }
});
