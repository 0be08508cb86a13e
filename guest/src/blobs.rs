//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` (end-2, end-10).
//!
//! A blob exists for a repository only when it is linked there and the
//! store still has it. `GET` honours a single RFC 9110 byte range (`a-b`,
//! `a-`, `-n`): 206 with `content-range`, or 416 with `content-range:
//! bytes */<size>` when unsatisfiable or invalid (`last < first`, as in
//! `bytes=500-0`). A malformed or multi-range `Range` header is ignored and
//! the whole blob is served, as RFC 9110 allows; `HEAD` ignores `Range`.
//! Where the host offers a signed URL of the store, `GET` is a 307 to it.

use crate::capabilities::{Registry, Repository};
use crate::digest::Digest;
use crate::errors::{Code, Error};
use crate::http::{Body, Method, Request, Response};
use crate::ranges::RangeRequest;
use crate::routes::Route;

/// One crossing either way: the host checks the link, finds the size and,
/// for `GET`, opens the range.
pub fn get<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let digest = parse_digest(&route.param)?;
    let to_error = |e| Error::store(e, Code::BlobUnknown, Code::RangeInvalid);
    let response = Response::new(200)
        .header("docker-content-digest", digest.to_string())
        .header("content-type", "application/octet-stream")
        .header("accept-ranges", "bytes");
    if request.method == Method::Head {
        let size = repo
            .stat_blob(&digest)
            .map_err(to_error)?
            .ok_or_else(|| Error::new(Code::BlobUnknown))?;
        return Ok(response.header("content-length", size.to_string()));
    }
    let range = request.header("range").and_then(RangeRequest::parse);
    let read = repo
        .read_blob(&digest, range)
        .map_err(to_error)?
        .ok_or_else(|| Error::new(Code::BlobUnknown))?;
    if let Some(location) = read.redirect {
        // registry:2's answer on object storage: the client fetches the
        // bytes from the store, sending its `Range` there.
        return Ok(Response::new(307)
            .header("location", location)
            .header("docker-content-digest", digest.to_string())
            .header("content-length", "0"));
    }
    let Some(content) = read.content else {
        return Err(Error::new(Code::RangeInvalid)
            .header("content-range", format!("bytes */{}", read.size)));
    };
    let mut response = response.header("content-length", read.length.to_string());
    if read.partial {
        let last = read.offset + read.length - 1;
        response = response.header(
            "content-range",
            format!("bytes {}-{last}/{}", read.offset, read.size),
        );
        response.status = 206;
    }
    response.body = Body::Blob(content);
    Ok(response)
}

pub fn delete<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    _request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let digest = parse_digest(&route.param)?;
    let unlinked = repo
        .unlink_blob(&digest)
        .map_err(|e| Error::store(e, Code::BlobUnknown, Code::DigestInvalid))?;
    if !unlinked {
        return Err(Error::new(Code::BlobUnknown));
    }
    Ok(Response::new(202).header("content-length", "0"))
}

/// A digest from the path or the query: malformed and unsupported digests
/// are both 400 `DIGEST_INVALID`.
pub fn parse_digest(s: &str) -> Result<Digest, Error> {
    Digest::parse(s).map_err(|e| Error::new(Code::DigestInvalid).detail(e.to_string().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::http::Method;
    use crate::memory::{AllowAll, Store};
    use crate::testing::{Registry, bytes, code, header};

    const BLOB: &[u8] = b"0123456789";

    #[test]
    fn get_and_head_serve_a_linked_blob() {
        // end-2: 200 with the blob and its digest.
        let registry = Registry::new();
        let digest = registry.push_blob("a/b/c", BLOB);
        let path = format!("/v2/a/b/c/blobs/{digest}");
        let get = registry.get(&path);
        assert_eq!(get.status, 200);
        assert_eq!(bytes(&get), BLOB);
        assert!(matches!(get.body, Body::Blob(_)));
        assert_eq!(header(&get, "content-length"), Some("10"));
        assert_eq!(
            header(&get, "docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        assert_eq!(
            header(&get, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(header(&get, "accept-ranges"), Some("bytes"));
        let head = registry.head(&path);
        assert_eq!(head.status, 200);
        assert!(matches!(head.body, Body::Empty));
        assert_eq!(header(&head, "content-length"), Some("10"));
        assert_eq!(
            header(&head, "docker-content-digest"),
            Some(digest.to_string().as_str())
        );
    }

    #[test]
    fn a_get_the_host_offers_a_signed_url_for_is_a_redirect_and_head_is_not() {
        // registry:2 on object storage: 307 to the store, with the digest.
        let registry = Registry::with_auth(Store::with_redirects("http://store.test"), AllowAll);
        let digest = registry.push_blob("a", BLOB);
        let path = format!("/v2/a/blobs/{digest}");
        for headers in [&[][..], &[("range", "bytes=2-4")][..]] {
            let get = registry.send(Method::Get, &path, headers, b"");
            assert_eq!(get.status, 307);
            assert_eq!(
                header(&get, "location"),
                Some(format!("http://store.test/{digest}").as_str())
            );
            assert_eq!(
                header(&get, "docker-content-digest"),
                Some(digest.to_string().as_str())
            );
            assert!(matches!(get.body, Body::Empty));
        }
        let head = registry.head(&path);
        assert_eq!(head.status, 200);
        assert_eq!(header(&head, "content-length"), Some("10"));
        // Not linked here: 404, never a redirect.
        let elsewhere = registry.get(&format!("/v2/b/blobs/{digest}"));
        assert_eq!(code(&elsewhere), "BLOB_UNKNOWN");
    }

    #[test]
    fn a_blob_not_linked_to_the_repository_is_unknown() {
        // Blobs are per repository, as in registry:2: end-2 404.
        let registry = Registry::new();
        let digest = registry.push_blob("a", BLOB);
        for response in [
            registry.get(&format!("/v2/b/blobs/{digest}")),
            registry.head(&format!("/v2/b/blobs/{digest}")),
        ] {
            assert_eq!(response.status, 404);
        }
        let response = registry.get(&format!("/v2/b/blobs/{digest}"));
        assert_eq!(code(&response), "BLOB_UNKNOWN");
        let missing = Algorithm::Sha256.digest(b"missing");
        assert_eq!(
            code(&registry.get(&format!("/v2/a/blobs/{missing}"))),
            "BLOB_UNKNOWN"
        );
    }

    #[test]
    fn malformed_digests_are_digest_invalid() {
        let response = Registry::new().get("/v2/a/blobs/sha256:nothex");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "DIGEST_INVALID")
        );
        let response = Registry::new().get("/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "DIGEST_INVALID")
        );
    }

    #[test]
    fn range_get_returns_206_with_content_range() {
        // Resumable pull: RFC 9110 single byte ranges.
        let registry = Registry::new();
        let digest = registry.push_blob("a", BLOB);
        let path = format!("/v2/a/blobs/{digest}");
        for (range, want, content_range) in [
            ("bytes=2-4", &b"234"[..], "bytes 2-4/10"),
            ("bytes=7-", b"789", "bytes 7-9/10"),
            ("bytes=-2", b"89", "bytes 8-9/10"),
            ("bytes=9-99", b"9", "bytes 9-9/10"),
        ] {
            let response = registry.send(Method::Get, &path, &[("range", range)], b"");
            assert_eq!(response.status, 206, "{range}");
            assert_eq!(bytes(&response), want, "{range}");
            assert_eq!(header(&response, "content-range"), Some(content_range));
            assert_eq!(
                header(&response, "content-length"),
                Some(want.len().to_string().as_str())
            );
        }
    }

    #[test]
    fn unsatisfiable_range_is_416_with_the_size() {
        let registry = Registry::new();
        let digest = registry.push_blob("a", BLOB);
        let response = registry.send(
            Method::Get,
            &format!("/v2/a/blobs/{digest}"),
            &[("range", "bytes=10-")],
            b"",
        );
        assert_eq!(response.status, 416);
        assert_eq!(header(&response, "content-range"), Some("bytes */10"));
        assert_eq!(code(&response), "RANGE_INVALID");
    }

    #[test]
    fn backwards_range_is_416() {
        // RFC 9110 14.1.1: last-pos below first-pos is invalid; 14.2: 416.
        let registry = Registry::new();
        let digest = registry.push_blob("a", BLOB);
        let response = registry.send(
            Method::Get,
            &format!("/v2/a/blobs/{digest}"),
            &[("range", "bytes=5-0")],
            b"",
        );
        assert_eq!(response.status, 416);
        assert_eq!(header(&response, "content-range"), Some("bytes */10"));
    }

    #[test]
    fn malformed_range_is_ignored_and_the_whole_blob_served() {
        let registry = Registry::new();
        let digest = registry.push_blob("a", BLOB);
        let path = format!("/v2/a/blobs/{digest}");
        for range in ["lines=1-2", "bytes=0-1,4-5", "bytes=x-1"] {
            let response = registry.send(Method::Get, &path, &[("range", range)], b"");
            assert_eq!(response.status, 200, "{range}");
            assert_eq!(bytes(&response), BLOB);
        }
        let head = registry.send(Method::Head, &path, &[("range", "bytes=0-1")], b"");
        assert_eq!(
            (head.status, header(&head, "content-length")),
            (200, Some("10"))
        );
    }

    #[test]
    fn delete_unlinks_the_blob_from_the_repository() {
        // end-10: 202, then 404.
        let registry = Registry::new();
        let digest = registry.push_blob("a", BLOB);
        registry.push_blob("b", BLOB);
        let path = format!("/v2/a/blobs/{digest}");
        assert_eq!(registry.delete(&path).status, 202);
        assert_eq!(registry.get(&path).status, 404);
        let again = registry.delete(&path);
        assert_eq!((again.status, code(&again).as_str()), (404, "BLOB_UNKNOWN"));
        assert_eq!(registry.get(&format!("/v2/b/blobs/{digest}")).status, 200);
    }

    #[test]
    fn delete_when_deletion_is_disabled_is_405() {
        // end-10: 405 when the registry does not delete.
        let registry = Registry::with_auth(Store::without_deletes(), crate::memory::AllowAll);
        let digest = registry.push_blob("a", BLOB);
        let response = registry.delete(&format!("/v2/a/blobs/{digest}"));
        assert_eq!(
            (response.status, code(&response).as_str()),
            (405, "UNSUPPORTED")
        );
    }
}
