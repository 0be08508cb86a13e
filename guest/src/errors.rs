//! OCI error codes and their JSON rendering.
//!
//! Every failure the core reports is an [`Error`]: a [`Code`] (whose HTTP
//! status and default message are defined once, in [`Code::status`] and
//! [`Code::message`]), an optional message, detail and status override, and
//! any headers the response needs (`www-authenticate`, `content-range`, ...).
//! [`Error::into_response`] renders the distribution-spec body
//! `{"errors":[{"code":…,"message":…,"detail":…}]}`.
//!
//! Codes outside the spec table: `RANGE_INVALID` (registry:2's code for an
//! unsatisfiable range, always 416), `TAG_INVALID` (registry:2's code for a
//! tag it cannot set, 400: Wharf's answer to a push setting more tags than
//! [`crate::manifests::MAX_TAGS_PER_PUSH`]) and `UNKNOWN` (registry:2's code
//! for a server-side failure, always 500; clients treat unknown codes as
//! `UNKNOWN`).

use crate::capabilities::StoreError;
use crate::http::Response;
use serde::Serialize;

/// An error code of the distribution-spec's table (plus the two extensions
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
            Code::RangeInvalid => ("RANGE_INVALID", 416, "requested range not satisfiable"),
            Code::TagInvalid => ("TAG_INVALID", 400, "manifest tag did not match URI"),
            Code::Unknown => ("UNKNOWN", 500, "internal server error"),
        }
    }
}

/// A failed request, ready to be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: Code,
    pub status: u16,
    pub message: String,
    pub detail: serde_json::Value,
    pub headers: Vec<(String, String)>,
}

impl Error {
    pub fn new(code: Code) -> Self {
        Error {
            code,
            status: code.status(),
            message: code.message().to_string(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The 401 answer to a [`crate::Refusal::Challenge`].
    pub fn challenge(www_authenticate: &str) -> Self {
        Error::new(Code::Unauthorized).header("www-authenticate", www_authenticate)
    }

    /// The 403 answer to a [`crate::Refusal::Deny`]; the reason is the detail.
    pub fn denied(reason: &str) -> Self {
        let detail = if reason.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(reason.to_string())
        };
        Error::new(Code::Denied).detail(detail)
    }

    /// Map a capability failure. `not_found` and `invalid` are the codes the
    /// calling context gives `NotFound` and `Invalid`; the rest is fixed:
    /// a digest mismatch is `DIGEST_INVALID`, `Busy` is 409
    /// `BLOB_UPLOAD_INVALID`, `LimitExceeded` is 403 `DENIED` with the
    /// operator's text, `Unsupported` is 405 `UNSUPPORTED` and `Storage` is a
    /// 500 that does not leak the backend's text.
    pub fn store(err: StoreError, not_found: Code, invalid: Code) -> Self {
        match err {
            StoreError::NotFound => Error::new(not_found),
            StoreError::DigestMismatch(actual) => {
                Error::new(Code::DigestInvalid).detail(serde_json::json!({ "actual": actual }))
            }
            StoreError::Invalid(text) => Error::new(invalid).status(400).detail(text.into()),
            StoreError::LimitExceeded(text) => Error::new(Code::Denied).message(text),
            StoreError::Denied(text) => Error::denied(&text),
            StoreError::Busy => Error::new(Code::BlobUploadInvalid)
                .status(409)
                .message("upload session in use by another request"),
            StoreError::Unsupported(text) => Error::new(Code::Unsupported).detail(text.into()),
            StoreError::Storage(_) => Error::new(Code::Unknown),
        }
    }

    pub fn into_response<R>(self) -> Response<R> {
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
                code: self.code.as_str(),
                message: &self.message,
                detail: &self.detail,
            }],
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut response = Response::new(self.status);
        response.headers = self.headers;
        response.bytes("application/json", bytes)
    }
}

impl From<StoreError> for Error {
    /// The context-free mapping: `NotFound` as `NAME_UNKNOWN`, `Invalid` as
    /// `UNSUPPORTED` with status 400.
    fn from(err: StoreError) -> Self {
        Error::store(err, Code::NameUnknown, Code::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Body;

    fn body_of(response: &Response<()>) -> String {
        match &response.body {
            Body::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            _ => panic!("no body"),
        }
    }

    #[test]
    fn unauthorized_renders_the_exact_body_and_challenge() {
        let response: Response<()> = Error::challenge("Basic realm=\"wharf\"").into_response();
        assert_eq!(response.status, 401);
        assert_eq!(
            body_of(&response),
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#
        );
        assert_eq!(
            response.get_header("www-authenticate"),
            Some("Basic realm=\"wharf\"")
        );
        assert_eq!(
            response.get_header("content-type"),
            Some("application/json")
        );
    }

    #[test]
    fn storage_failures_do_not_leak_backend_text() {
        let response: Response<()> =
            Error::from(StoreError::Storage("/var/lib/secret: EIO".into())).into_response();
        assert_eq!(response.status, 500);
        assert!(!body_of(&response).contains("secret"));
    }

    #[test]
    fn store_errors_map_to_spec_statuses() {
        let e = |s| Error::store(s, Code::BlobUnknown, Code::BlobUploadInvalid);
        assert_eq!(e(StoreError::NotFound).code, Code::BlobUnknown);
        assert_eq!(e(StoreError::NotFound).status, 404);
        assert_eq!(
            e(StoreError::Invalid("x".into())).code,
            Code::BlobUploadInvalid
        );
        assert_eq!(
            e(StoreError::DigestMismatch("sha256:x".into())).code,
            Code::DigestInvalid
        );
        assert_eq!(e(StoreError::LimitExceeded("quota".into())).status, 403);
        assert_eq!(
            e(StoreError::LimitExceeded("quota".into())).message,
            "quota"
        );
        assert_eq!(e(StoreError::Busy).status, 409);
        assert_eq!(e(StoreError::Unsupported("off".into())).status, 405);
        assert_eq!(e(StoreError::Storage("x".into())).status, 500);
    }
}
