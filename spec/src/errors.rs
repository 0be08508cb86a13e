//! OCI error codes and their JSON rendering, for every answer Wharf gives:
//! the component's and the host's own (401, 429, 503, 500).
//!
//! [`Code`] defines each code once, with its HTTP status and default
//! message; [`body`] renders the distribution-spec body
//! `{"errors":[{"code":…,"message":…,"detail":…}]}`, keys in registry:2's
//! order.
//!
//! Codes outside the spec table: `UNAVAILABLE` (registry:2's code when it
//! cannot serve now, 503), `RANGE_INVALID` (registry:2's code for an
//! unsatisfiable range, always 416), `TAG_INVALID` (registry:2's code for a
//! tag it cannot set, 400) and `UNKNOWN` (registry:2's code for a
//! server-side failure, always 500; clients treat unknown codes as
//! `UNKNOWN`).

use serde::Serialize;

/// An error code of the distribution-spec's table (plus the extensions
/// documented at the module level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unavailable,
    RangeInvalid,
    TagInvalid,
    Unknown,
}

impl Code {
    /// The identifier as it appears in the `code` field.
    pub fn as_str(self) -> &'static str {
        self.definition().0
    }

    /// The HTTP status this code is answered with unless overridden.
    pub fn status(self) -> u16 {
        self.definition().1
    }

    /// The default human-readable message (the spec table's description).
    pub fn message(self) -> &'static str {
        self.definition().2
    }

    fn definition(self) -> (&'static str, u16, &'static str) {
        match self {
            Code::BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            Code::BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            Code::BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            Code::DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            Code::ManifestBlobUnknown => ("MANIFEST_BLOB_UNKNOWN", 404, "blob unknown to registry"),
            Code::ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            Code::ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown"),
            Code::NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            Code::NameUnknown => ("NAME_UNKNOWN", 404, "repository name not known to registry"),
            Code::SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            Code::Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            Code::Denied => ("DENIED", 403, "requested access to the resource is denied"),
            Code::Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            Code::TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            Code::Unavailable => ("UNAVAILABLE", 503, "service unavailable"),
            Code::RangeInvalid => ("RANGE_INVALID", 416, "requested range not satisfiable"),
            Code::TagInvalid => ("TAG_INVALID", 400, "manifest tag did not match URI"),
            Code::Unknown => ("UNKNOWN", 500, "internal server error"),
        }
    }
}

/// The error body for `code` with `message` and `detail`.
pub fn body(code: Code, message: &str, detail: &serde_json::Value) -> String {
    #[derive(Serialize)]
    struct Entry<'a> {
        code: &'a str,
        message: &'a str,
        detail: &'a serde_json::Value,
    }
    #[derive(Serialize)]
    struct Errors<'a> {
        errors: [Entry<'a>; 1],
    }
    let body = Errors {
        errors: [Entry {
            code: code.as_str(),
            message,
            detail,
        }],
    };
    serde_json::to_string(&body).expect("an error body always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_registry_2s_key_order_with_escapes() {
        assert_eq!(
            body(
                Code::TooManyRequests,
                "slow \"down\"",
                &serde_json::Value::Null
            ),
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow \"down\"","detail":null}]}"#
        );
        assert_eq!(Code::Unauthorized.status(), 401);
        assert_eq!(Code::Unknown.message(), "internal server error");
    }
}
