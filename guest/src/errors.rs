//! The core's failures, as OCI error responses.
//!
//! Every failure the core reports is an [`Error`]: a [`Code`] (defined with
//! its status and default message in `wharf-spec`, which the host answers
//! its own errors from too), an optional message, detail and status
//! override, and any headers the response needs (`www-authenticate`,
//! `content-range`, ...). [`Error::into_response`] renders the
//! distribution-spec body with `wharf_spec::errors::body`. `TAG_INVALID`
//! is Wharf's answer to a push setting more tags than
//! [`crate::manifests::MAX_TAGS_PER_PUSH`].

use crate::capabilities::StoreError;
use crate::http::Response;
pub use wharf_spec::errors::Code;

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
        let bytes = wharf_spec::errors::body(self.code, &self.message, &self.detail);
        let mut response = Response::new(self.status);
        response.headers = self.headers;
        response.bytes("application/json", bytes.into_bytes())
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
