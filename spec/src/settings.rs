//! registry:2's configuration values that every reader of the
//! `REGISTRY_*` variables (the host's configuration, the standalone
//! component's settings) must parse the same way.

/// A boolean, case-insensitive: true/1/yes or false/0/no; anything else
/// is none, for the caller to refuse with its own words.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_words_registry_users_write() {
        for yes in ["true", "TRUE", "1", "yes", "Yes"] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "NO"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        for neither in ["", "on", "2", "truthy"] {
            assert_eq!(parse_bool(neither), None, "{neither}");
        }
    }
}
