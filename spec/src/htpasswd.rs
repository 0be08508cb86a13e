//! registry:2's `auth.htpasswd`, the parts that are text: the file's
//! entries, the `Authorization: Basic` header and the challenge. The
//! native host and the standalone component's gate both check passwords
//! against what [`parse`] reads, each with its own bcrypt.

use std::collections::HashMap;

/// Why an htpasswd file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("it has no users")]
    Empty,
}

/// The users of an htpasswd file and their bcrypt hashes. Every entry must
/// be bcrypt (`$2y$`, `$2a$`, `$2b$`), as in registry:2; blank lines and
/// `#` comments are skipped; a user listed twice is an error.
pub fn parse(text: &str) -> Result<HashMap<String, String>, HtpasswdError> {
    let malformed = |line: usize, reason: String| HtpasswdError::Malformed { line, reason };
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(malformed(line_no, "expected `user:hash`".into()));
        };
        if user.is_empty() {
            return Err(malformed(line_no, "empty user name".into()));
        }
        let bcrypt = ["$2y$", "$2a$", "$2b$"]
            .iter()
            .any(|prefix| hash.starts_with(prefix));
        if !bcrypt || hash.len() != 60 {
            return Err(malformed(
                line_no,
                format!(
                    "the entry of {user:?} is not a bcrypt hash; only bcrypt ($2y$, $2a$, $2b$) is \
                     supported: recreate it with `wharf htpasswd {user}` or `htpasswd -Bbn {user} PASSWORD`"
                ),
            ));
        }
        if users.insert(user.to_string(), hash.to_string()).is_some() {
            return Err(malformed(line_no, format!("user {user:?} appears twice")));
        }
    }
    if users.is_empty() {
        return Err(HtpasswdError::Empty);
    }
    Ok(users)
}

/// `(user, password)` from an `Authorization: Basic …` header.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The `WWW-Authenticate` value asking for Basic credentials in `realm`.
pub fn challenge(realm: &str) -> String {
    format!("Basic realm=\"{}\"", realm.replace(['"', '\\'], ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$04$0123456789012345678901uVbhOJMmt0Hg3BrXt2Y0JOIwCo7DPqu";

    #[test]
    fn reads_bcrypt_entries_and_skips_comments() {
        let users = parse(&format!("# team\n\nalice:{HASH}\n")).unwrap();
        assert_eq!(users.get("alice").map(String::as_str), Some(HASH));
    }

    #[test]
    fn refuses_other_hashes_duplicates_and_empty_files_with_the_line() {
        let md5 = parse("bob:$apr1$xyz$abc\n").unwrap_err();
        assert!(
            matches!(md5, HtpasswdError::Malformed { line: 1, ref reason } if reason.contains("not a bcrypt hash"))
        );
        let twice = parse(&format!("a:{HASH}\na:{HASH}\n")).unwrap_err();
        assert!(matches!(twice, HtpasswdError::Malformed { line: 2, .. }));
        assert_eq!(parse("# nobody\n").unwrap_err(), HtpasswdError::Empty);
        assert!(matches!(
            parse("nocolon\n").unwrap_err(),
            HtpasswdError::Malformed { line: 1, .. }
        ));
    }

    #[test]
    fn decodes_basic_credentials() {
        // "alice:pa:ss"
        assert_eq!(
            basic_credentials("basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn challenge_drops_quotes_from_the_realm() {
        assert_eq!(challenge("My \"Realm\""), "Basic realm=\"My Realm\"");
    }
}
