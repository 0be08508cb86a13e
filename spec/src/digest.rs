//! Content digests: `<algorithm>:<encoded>` as the OCI image-spec defines them.
//!
//! Only `sha256` and `sha512` are supported; any other well-formed algorithm
//! is [`DigestError::Unsupported`], anything malformed is
//! [`DigestError::Invalid`].

use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The digest of `bytes` under this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let hex = match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        Digest {
            algorithm: self,
            hex,
        }
    }
}

/// A hash computed incrementally, as upload bytes arrive: the host's
/// check that content is what its digest says.
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The hash state, to carry on from later (elsewhere, after a
    /// restart) with [`Hasher::resume`]: a few hundred bytes whatever was
    /// hashed.
    pub fn state(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState as _;
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// A hasher carrying on from `state`, which [`Hasher::state`] made
    /// under `algorithm`; `None` if it is not such a state.
    pub fn resume(algorithm: Algorithm, state: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        Some(match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::deserialize(state.try_into().ok()?).ok()?),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::deserialize(state.try_into().ok()?).ok()?),
        })
    }

    /// The digest of everything given to [`Hasher::update`].
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// A validated digest in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form <algorithm>:<hex>")]
    Invalid(String),
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    Unsupported(String),
}

impl Digest {
    /// Parse and validate a digest string.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let invalid = || DigestError::Invalid(s.to_string());
        let (algorithm, encoded) = s.split_once(':').ok_or_else(invalid)?;
        // image-spec grammar: algorithm-component ([+._-] algorithm-component)*,
        // algorithm-component [a-z0-9]+ ; encoded [a-zA-Z0-9=_-]+
        let alg_ok = !algorithm.is_empty()
            && algorithm.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let enc_ok = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
        if !alg_ok || !enc_ok {
            return Err(invalid());
        }
        let algorithm = Algorithm::from_name(algorithm)
            .ok_or_else(|| DigestError::Unsupported(algorithm.to_string()))?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_string(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `bytes` hash to this digest.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        &self.algorithm.digest(bytes) == self
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_hash_carried_on_from_its_state_is_the_hash_of_the_whole() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let whole: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
            // Cut off a block boundary, so the state holds a partial block.
            let (first, rest) = whole.split_at(4_099);
            let mut hasher = Hasher::new(algorithm);
            hasher.update(first);
            let state = hasher.state();
            let mut resumed = Hasher::resume(algorithm, &state).unwrap();
            resumed.update(rest);
            assert_eq!(resumed.finish(), algorithm.digest(&whole));
            assert!(Hasher::resume(algorithm, &state[1..]).is_none());
        }
        let sha256 = Hasher::new(Algorithm::Sha256).state();
        assert!(Hasher::resume(Algorithm::Sha512, &sha256).is_none());
    }

    #[test]
    fn the_incremental_hash_is_the_whole_hash() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut hasher = Hasher::new(algorithm);
            hasher.update(b"hello, ");
            hasher.update(b"");
            hasher.update(b"world");
            assert_eq!(hasher.finish(), algorithm.digest(b"hello, world"));
        }
    }

    #[test]
    fn parses_and_prints_canonical_digests() {
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert!(d.verifies(b""));
        assert!(!d.verifies(b"x"));
    }

    #[test]
    fn sha512_digests_are_native() {
        let d = Algorithm::Sha512.digest(b"abc");
        assert_eq!(d.hex().len(), 128);
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests_as_invalid() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha256:zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_unknown_algorithms_as_unsupported() {
        assert_eq!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::Unsupported("md5".into()))
        );
    }
}
