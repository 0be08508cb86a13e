//! Repository names, tags and manifest references as the distribution-spec
//! defines them, checked by hand-written parsers.
//!
//! Names arrive still percent-encoded; the grammar admits no `%`, so any
//! encoded byte (`%2e`, `%2f`) is rejected rather than decoded, and so is
//! every `.`/`..` component.

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (spec: fewer than 256 characters).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag (spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;

/// Whether `name` matches
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
/// and is at most [`MAX_NAME_LEN`] long.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        let Some(&sep) = bytes.get(i) else {
            return true;
        };
        let run_start = i;
        while bytes.get(i) == Some(&sep) {
            i += 1;
        }
        let run = i - run_start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    match bytes.first() {
        Some(&b) if b.is_ascii_alphanumeric() || b == b'_' => {}
        _ => return false,
    }
    bytes.len() <= MAX_TAG_LEN
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What `/v2/<name>/manifests/<reference>` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("{0:?} is not a valid tag")]
    Tag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl Reference {
    /// A reference containing `:` is a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else if is_valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ReferenceError::Tag(s.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for name in [
            "a",
            "library/ubuntu",
            "a/b/c/app",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "v1.2",
            "0/1/2",
            "a.b-c_d__e---f",
        ] {
            assert!(is_valid_name(name), "{name}");
        }
        assert!(is_valid_name(&"a".repeat(255)));
    }

    #[test]
    fn rejects_hostile_and_malformed_names() {
        for name in [
            "",
            "..",
            ".",
            "a/..",
            "../a",
            "a/./b",
            "%2e%2e",
            "a%2fb",
            "a/%2e%2e/b",
            "Upper",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "a_",
            "a b",
            "a\0b",
            "é",
            "a\\b",
        ] {
            assert!(!is_valid_name(name), "{name:?}");
        }
        assert!(!is_valid_name(&"a".repeat(256)));
        assert!(!is_valid_name(&format!(
            "{}/{}",
            "a".repeat(200),
            "b".repeat(60)
        )));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for tag in ["latest", "v1.0", "_x", "1", "A-b_c.d", &"a".repeat(128)] {
            assert!(is_valid_tag(tag), "{tag}");
        }
        for tag in [
            "",
            ".x",
            "-x",
            "a/b",
            "a:b",
            "a%20",
            &"a".repeat(129),
            "tag+1",
        ] {
            assert!(!is_valid_tag(tag), "{tag}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            Reference::parse("latest"),
            Ok(Reference::Tag("latest".into()))
        );
        let d = crate::digest::Algorithm::Sha256.digest(b"x");
        assert_eq!(Reference::parse(&d.to_string()), Ok(Reference::Digest(d)));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("..."),
            Err(ReferenceError::Tag(_))
        ));
    }
}
