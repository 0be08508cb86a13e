//! The blob upload state machine (end-4a, end-4b, end-5, end-6, end-11,
//! end-13): `POST /v2/<name>/blobs/uploads/` starts a session (or uploads
//! monolithically with `?digest=`, or mounts with `?mount=&from=`), `PATCH`
//! appends chunks, `GET` reports progress, `PUT ?digest=` closes it and
//! `DELETE` abandons it.
//!
//! Sessions answer with `location`, `docker-upload-uuid` and `range:
//! 0-<last byte held>`. An empty session has no last byte; like registry:2
//! it reports `0-0`, which clients read as "start at the beginning".
//!
//! A chunk's `content-range` (`<first>-<last>`, tolerating a `bytes ` or
//! `bytes=` prefix and a `/<total>` suffix) must start at the session's
//! offset, else 416 `RANGE_INVALID` with the current `range`. If the body
//! turns out not to be as long as the range said, the bytes are already
//! appended when that is noticed: the answer is 400 `BLOB_UPLOAD_INVALID`
//! and the client can read the true offset with `GET`.

use crate::blobs::parse_digest;
use crate::capabilities::{Access, Registry, Repository, StoreError, Upload};
use crate::digest::{Algorithm, Digest};
use crate::errors::{Code, Error};
use crate::http::{Request, Response};
use crate::names::is_valid_name;
use crate::query::Query;
use crate::routes::Route;

pub fn start<R: Registry>(
    registry: &R,
    repo: &R::Repository,
    route: &Route,
    mut request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let query = Query::parse(request.query.as_deref());
    let name = route.name.as_str();
    if let Some(digest) = query.get("digest") {
        let digest = parse_digest(digest)?;
        let mut upload = repo.start_upload(digest.algorithm()).map_err(start_error)?;
        if let Err(e) = upload.append(&mut request.body) {
            let _ = upload.cancel();
            return Err(append_error(e));
        }
        return complete(name, upload, &digest);
    }
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        if mount_blob(registry, repo, &digest, query.get("from"))? {
            return Ok(created(name, &digest));
        }
    }
    let algorithm = match query.get("digest-algorithm") {
        None => Algorithm::Sha256,
        Some(alg) => Algorithm::from_name(alg).ok_or_else(|| {
            Error::new(Code::Unsupported)
                .status(400)
                .message("digest algorithm not supported (use sha256 or sha512)")
                .detail(serde_json::json!({ "algorithm": alg }))
        })?,
    };
    let upload = repo.start_upload(algorithm).map_err(start_error)?;
    Ok(session(202, name, &upload))
}

pub fn status<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    _request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let upload = open::<R>(repo, route)?;
    Ok(session(204, &route.name, &upload))
}

pub fn patch<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    mut request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let range = content_range(&request)?;
    let mut upload = open::<R>(repo, route)?;
    append(&route.name, &mut upload, &mut request, range)?;
    Ok(session(202, &route.name, &upload))
}

pub fn finish<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    mut request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let query = Query::parse(request.query.as_deref());
    let digest = query
        .get("digest")
        .ok_or_else(|| Error::new(Code::DigestInvalid).message("digest query parameter required"))
        .and_then(parse_digest)?;
    let range = content_range(&request)?;
    let mut upload = open::<R>(repo, route)?;
    if request.header("content-length") != Some("0") {
        append(&route.name, &mut upload, &mut request, range)?;
    }
    complete(&route.name, upload, &digest)
}

pub fn cancel<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    _request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    open::<R>(repo, route)?
        .cancel()
        .map_err(|e| Error::store(e, Code::BlobUploadUnknown, Code::BlobUploadInvalid))?;
    Ok(Response::new(204).header("content-length", "0"))
}

fn open<R: Registry>(repo: &R::Repository, route: &Route) -> Result<R::Upload, Error> {
    repo.open_upload(&route.param)
        .map_err(|e| Error::store(e, Code::BlobUploadUnknown, Code::BlobUploadInvalid))
}

/// Verify and store the session's bytes, which links the blob into the
/// session's repository: 201.
fn complete<U: Upload, R>(name: &str, upload: U, digest: &Digest) -> Result<Response<R>, Error> {
    upload
        .finish(digest)
        .map_err(|e| Error::store(e, Code::BlobUploadUnknown, Code::DigestInvalid))?;
    Ok(created(name, digest))
}

/// Mount `digest` into `repo`: from `from` when it names a repository the
/// caller may pull from (the host opens it only then), or without `from`
/// from wherever the caller may pull it. False (fall back to an ordinary
/// session, as the spec allows) when it is nowhere the caller may see it,
/// when `from` is not a valid name, or when the caller may not pull from it.
fn mount_blob<R: Registry>(
    registry: &R,
    repo: &R::Repository,
    digest: &Digest,
    from: Option<&str>,
) -> Result<bool, Error> {
    let to_error = |e| Error::store(e, Code::BlobUnknown, Code::BlobUploadInvalid);
    match from {
        None => repo.mount_blob(digest, None).map_err(to_error),
        Some(from) if is_valid_name(from) => match registry.open_repository(from, Access::PULL) {
            Ok(source) => repo.mount_blob(digest, Some(&source)).map_err(to_error),
            Err(_) => Ok(false),
        },
        Some(_) => Ok(false),
    }
}

/// Append the request body, checking it against `range` when given.
fn append<U: Upload>(
    name: &str,
    upload: &mut U,
    request: &mut Request<U::Body>,
    range: Option<ChunkRange>,
) -> Result<u64, Error> {
    if let Some(range) = range {
        if range.first != upload.offset() {
            let mut error = Error::new(Code::RangeInvalid)
                .detail(serde_json::json!({ "offset": upload.offset() }));
            error.headers = session_headers(name, upload);
            return Err(error);
        }
        let declared = request
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok());
        if declared.is_some_and(|len| len != range.len) {
            return Err(Error::new(Code::SizeInvalid)
                .message("content-length does not match content-range"));
        }
    }
    let appended = upload.append(&mut request.body).map_err(append_error)?;
    if let Some(range) = range
        && appended != range.len
    {
        return Err(Error::new(Code::BlobUploadInvalid)
            .message("chunk length does not match content-range; the bytes were appended")
            .detail(serde_json::json!({ "appended": appended, "offset": upload.offset() })));
    }
    Ok(appended)
}

/// The request's `content-range`, if any: 400 `BLOB_UPLOAD_INVALID` when
/// it is not `<first>-<last>` with `first <= last`.
fn content_range<Body>(request: &Request<Body>) -> Result<Option<ChunkRange>, Error> {
    let Some(raw) = request.header("content-range") else {
        return Ok(None);
    };
    parse_content_range(raw).map(Some).ok_or_else(|| {
        Error::new(Code::BlobUploadInvalid)
            .message("content-range must be <first>-<last>")
            .detail(raw.into())
    })
}

/// Where a chunk goes: its first byte's offset and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub first: u64,
    pub len: u64,
}

pub fn parse_content_range(raw: &str) -> Option<ChunkRange> {
    let raw = raw.trim();
    let raw = raw
        .strip_prefix("bytes=")
        .or_else(|| raw.strip_prefix("bytes "))
        .unwrap_or(raw)
        .trim();
    let raw = raw.split_once('/').map_or(raw, |(range, _total)| range);
    let (first, last) = raw.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (first, last) = (number(first)?, number(last)?);
    let len = last.checked_sub(first)?.checked_add(1)?;
    Some(ChunkRange { first, len })
}

fn session_headers<U: Upload>(name: &str, upload: &U) -> Vec<(String, String)> {
    let id = upload.id();
    let last = upload.offset().saturating_sub(1);
    vec![
        ("location".into(), format!("/v2/{name}/blobs/uploads/{id}")),
        ("range".into(), format!("0-{last}")),
        ("docker-upload-uuid".into(), id),
    ]
}

fn session<U: Upload, R>(status: u16, name: &str, upload: &U) -> Response<R> {
    let mut response = Response::new(status);
    response.headers = session_headers(name, upload);
    response.header("content-length", "0")
}

fn created<R>(name: &str, digest: &Digest) -> Response<R> {
    Response::new(201)
        .header("location", format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header("content-length", "0")
}

fn start_error(e: StoreError) -> Error {
    Error::store(e, Code::NameUnknown, Code::BlobUploadInvalid)
}

fn append_error(e: StoreError) -> Error {
    Error::store(e, Code::BlobUploadUnknown, Code::BlobUploadInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::memory::{Rules, Store};
    use crate::testing::{Registry, bytes, code, header, location};

    fn digest(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.digest(bytes)
    }

    fn patch(
        registry: &Registry,
        location: &str,
        range: Option<&str>,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let headers: Vec<(&str, &str)> = range
            .map(|r| vec![("content-range", r)])
            .unwrap_or_default();
        registry.send(Method::Patch, location, &headers, body)
    }

    fn put(registry: &Registry, location: &str, digest: &Digest, body: &[u8]) -> Response<Vec<u8>> {
        registry.send(
            Method::Put,
            &format!("{location}?digest={digest}"),
            &[],
            body,
        )
    }

    #[test]
    fn monolithic_post_stores_and_links_the_blob() {
        // end-4b: single POST with ?digest= is 201 with the blob location.
        let registry = Registry::new();
        let d = digest(b"hello");
        let response = registry.send(
            Method::Post,
            &format!("/v2/a/b/blobs/uploads/?digest={d}"),
            &[],
            b"hello",
        );
        assert_eq!(response.status, 201);
        assert_eq!(location(&response), format!("/v2/a/b/blobs/{d}"));
        assert_eq!(
            header(&response, "docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(bytes(&registry.get(&location(&response))), b"hello");
        assert_eq!(registry.store.sessions(), 0);
    }

    #[test]
    fn monolithic_post_accepts_a_percent_encoded_sha512_digest() {
        let registry = Registry::new();
        let d = Algorithm::Sha512.digest(b"hello");
        let encoded = d.to_string().replace(':', "%3A");
        let response = registry.send(
            Method::Post,
            &format!("/v2/a/blobs/uploads?digest={encoded}"),
            &[],
            b"hello",
        );
        assert_eq!(response.status, 201);
        assert_eq!(registry.get(&format!("/v2/a/blobs/{d}")).status, 200);
    }

    #[test]
    fn monolithic_post_with_the_wrong_digest_stores_nothing() {
        let registry = Registry::new();
        let d = digest(b"other");
        let response = registry.send(
            Method::Post,
            &format!("/v2/a/blobs/uploads/?digest={d}"),
            &[],
            b"hello",
        );
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "DIGEST_INVALID")
        );
        assert!(registry.store.blob(&digest(b"hello")).is_none());
        assert_eq!(registry.store.sessions(), 0);
    }

    #[test]
    fn post_opens_a_session_then_put_uploads_monolithically() {
        // end-4a then end-6: 202 with Location, then 201.
        let registry = Registry::new();
        let response = registry.send(Method::Post, "/v2/a/blobs/uploads/", &[], b"");
        assert_eq!(response.status, 202);
        let loc = location(&response);
        let id = header(&response, "docker-upload-uuid").unwrap();
        assert_eq!(loc, format!("/v2/a/blobs/uploads/{id}"));
        assert_eq!(header(&response, "range"), Some("0-0"));
        assert_eq!(header(&response, "content-length"), Some("0"));
        let d = digest(b"layer");
        let response = put(&registry, &loc, &d, b"layer");
        assert_eq!(response.status, 201);
        assert_eq!(location(&response), format!("/v2/a/blobs/{d}"));
        assert_eq!(
            header(&response, "docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(bytes(&registry.get(&format!("/v2/a/blobs/{d}"))), b"layer");
    }

    #[test]
    fn chunks_in_order_then_put_without_a_body() {
        // Pushing a blob in chunks: PATCH with Content-Range, 202 with Range.
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        let first = patch(&registry, &loc, Some("0-2"), b"abc");
        assert_eq!(first.status, 202);
        assert_eq!(header(&first, "range"), Some("0-2"));
        assert_eq!(location(&first), loc);
        let second = patch(&registry, &location(&first), Some("bytes 3-5/*"), b"def");
        assert_eq!(
            (second.status, header(&second, "range")),
            (202, Some("0-5"))
        );
        let d = digest(b"abcdef");
        let done = put(&registry, &loc, &d, b"");
        assert_eq!(done.status, 201);
        assert_eq!(bytes(&registry.get(&format!("/v2/a/blobs/{d}"))), b"abcdef");
    }

    #[test]
    fn out_of_order_chunk_is_416_with_the_current_range() {
        // "If a chunk is uploaded out of order, the registry MUST respond with 416."
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        assert_eq!(patch(&registry, &loc, Some("0-2"), b"abc").status, 202);
        for range in ["5-7", "0-2", "2-4"] {
            let response = patch(&registry, &loc, Some(range), b"xyz");
            assert_eq!(response.status, 416, "{range}");
            assert_eq!(code(&response), "RANGE_INVALID");
            assert_eq!(header(&response, "range"), Some("0-2"));
            assert_eq!(location(&response), loc);
        }
        let status = registry.get(&loc);
        assert_eq!(header(&status, "range"), Some("0-2"));
    }

    #[test]
    fn streamed_patch_without_content_range_appends() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        assert_eq!(patch(&registry, &loc, None, b"abc").status, 202);
        let response = patch(&registry, &loc, None, b"de");
        assert_eq!(header(&response, "range"), Some("0-4"));
        assert_eq!(put(&registry, &loc, &digest(b"abcde"), b"").status, 201);
    }

    #[test]
    fn final_chunk_may_come_with_the_put() {
        // end-6: the closing PUT MAY carry the last chunk.
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        patch(&registry, &loc, Some("0-1"), b"ab");
        let d = digest(b"abcd");
        let response = registry.send(
            Method::Put,
            &format!("{loc}?digest={d}"),
            &[("content-range", "2-3")],
            b"cd",
        );
        assert_eq!(response.status, 201);
        assert_eq!(bytes(&registry.get(&format!("/v2/a/blobs/{d}"))), b"abcd");
    }

    #[test]
    fn final_chunk_at_the_wrong_offset_is_416() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        patch(&registry, &loc, None, b"ab");
        let d = digest(b"abcd");
        let response = registry.send(
            Method::Put,
            &format!("{loc}?digest={d}"),
            &[("content-range", "5-6")],
            b"cd",
        );
        assert_eq!(response.status, 416);
        assert_eq!(registry.store.sessions(), 1);
    }

    #[test]
    fn chunk_shorter_than_its_range_is_blob_upload_invalid() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        let response = registry.send(
            Method::Patch,
            &loc,
            &[("content-range", "0-9"), ("content-length", "3")],
            b"abc",
        );
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "SIZE_INVALID")
        );
        let headers = [
            ("content-range", "0-9"),
            ("transfer-encoding", "chunked"),
            ("content-length", ""),
        ];
        let response = registry.send(Method::Patch, &loc, &headers, b"abc");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "BLOB_UPLOAD_INVALID")
        );
        // The bytes were appended; the session says so.
        assert_eq!(header(&registry.get(&loc), "range"), Some("0-2"));
    }

    #[test]
    fn malformed_content_range_is_400() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        for range in ["3-1", "0-18446744073709551615", "x"] {
            let response = patch(&registry, &loc, Some(range), b"abc");
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "BLOB_UPLOAD_INVALID")
            );
        }
    }

    #[test]
    fn status_get_reports_the_offset() {
        // end-13: 204 with Location and Range.
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        patch(&registry, &loc, None, b"12345");
        let response = registry.get(&loc);
        assert_eq!(response.status, 204);
        assert_eq!(header(&response, "range"), Some("0-4"));
        assert_eq!(location(&response), loc);
        assert!(header(&response, "docker-upload-uuid").is_some_and(|id| loc.ends_with(id)));
    }

    #[test]
    fn cancel_deletes_the_session() {
        // DELETE /v2/<name>/blobs/uploads/<id>: 204, then unknown.
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        assert_eq!(registry.delete(&loc).status, 204);
        assert_eq!(registry.store.sessions(), 0);
        for response in [
            registry.delete(&loc),
            registry.get(&loc),
            patch(&registry, &loc, None, b"x"),
        ] {
            assert_eq!(
                (response.status, code(&response).as_str()),
                (404, "BLOB_UPLOAD_UNKNOWN")
            );
        }
    }

    #[test]
    fn wrong_digest_on_finish_stores_nothing_and_ends_the_session() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        patch(&registry, &loc, None, b"abc");
        let wrong = digest(b"abd");
        let response = put(&registry, &loc, &wrong, b"");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "DIGEST_INVALID")
        );
        assert!(registry.store.blob(&wrong).is_none());
        assert!(registry.store.blob(&digest(b"abc")).is_none());
        assert_eq!(registry.get(&format!("/v2/a/blobs/{wrong}")).status, 404);
        assert_eq!(registry.get(&loc).status, 404);
    }

    #[test]
    fn put_without_a_valid_digest_is_digest_invalid_and_keeps_the_session() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        for target in [
            loc.clone(),
            format!("{loc}?digest=sha256:zz"),
            format!("{loc}?digest="),
        ] {
            let response = registry.send(Method::Put, &target, &[], b"");
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "DIGEST_INVALID"),
                "{target}"
            );
        }
        assert_eq!(registry.get(&loc).status, 204);
    }

    #[test]
    fn sessions_belong_to_their_repository() {
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        let id = loc.rsplit('/').next().unwrap();
        let response = registry.get(&format!("/v2/b/blobs/uploads/{id}"));
        assert_eq!(
            (response.status, code(&response).as_str()),
            (404, "BLOB_UPLOAD_UNKNOWN")
        );
    }

    #[test]
    fn a_session_in_use_is_409() {
        use crate::capabilities::Repository;
        let registry = Registry::new();
        let loc = registry.start_upload("a");
        let id = loc.rsplit('/').next().unwrap();
        let _held = registry.store.open("a").open_upload(id).unwrap();
        let response = patch(&registry, &loc, None, b"x");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (409, "BLOB_UPLOAD_INVALID")
        );
    }

    #[test]
    fn digest_algorithm_selects_the_session_hash() {
        let registry = Registry::new();
        let response = registry.send(
            Method::Post,
            "/v2/a/blobs/uploads/?digest-algorithm=sha512",
            &[],
            b"",
        );
        assert_eq!(response.status, 202);
        let loc = location(&response);
        let d = Algorithm::Sha512.digest(b"abc");
        assert_eq!(put(&registry, &loc, &d, b"abc").status, 201);
        let response = registry.send(
            Method::Post,
            "/v2/a/blobs/uploads/?digest-algorithm=md5",
            &[],
            b"",
        );
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "UNSUPPORTED")
        );
    }

    #[test]
    fn mount_from_a_readable_repository_is_201() {
        // end-11: cross-repository mount.
        let registry = Registry::new();
        let d = registry.push_blob("src/app", b"shared");
        let response = registry.send(
            Method::Post,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/app"),
            &[],
            b"",
        );
        assert_eq!(response.status, 201);
        assert_eq!(location(&response), format!("/v2/dst/blobs/{d}"));
        assert_eq!(
            header(&response, "docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(
            bytes(&registry.get(&format!("/v2/dst/blobs/{d}"))),
            b"shared"
        );
        assert_eq!(registry.store.sessions(), 0);
    }

    #[test]
    fn failed_mounts_fall_back_to_a_session() {
        // end-11: "if a registry ... is unable to mount the requested blob, it SHOULD return a 202".
        let registry = Registry::new();
        let d = registry.push_blob("src", b"shared");
        let missing = digest(b"missing");
        for query in [
            format!("mount={missing}&from=src"),
            format!("mount={d}&from=other"),
            format!("mount={d}&from=..%2Fsrc"),
            format!("mount={missing}"),
        ] {
            let response = registry.send(
                Method::Post,
                &format!("/v2/dst/blobs/uploads/?{query}"),
                &[],
                b"",
            );
            assert_eq!(response.status, 202, "{query}");
            assert!(location(&response).starts_with("/v2/dst/blobs/uploads/"));
        }
        assert_eq!(registry.get(&format!("/v2/dst/blobs/{d}")).status, 404);
    }

    #[test]
    fn mount_without_from_takes_a_blob_the_caller_may_pull_elsewhere() {
        let store = Store::new();
        let d = Registry::with_auth(store.clone(), crate::memory::AllowAll).push_blob("src", b"s");
        let hidden = Registry::with_auth(store.clone(), crate::memory::AllowAll)
            .push_blob("secret", b"hidden");
        let rules = Rules::deny()
            .allow(Some("dst"), Access::ALL)
            .allow(Some("src"), Access::PULL);
        let registry = Registry::with_auth(store, rules);
        let mount = |d: &Digest| {
            registry.send(
                Method::Post,
                &format!("/v2/dst/blobs/uploads/?mount={d}"),
                &[],
                b"",
            )
        };
        assert_eq!(mount(&d).status, 201);
        assert_eq!(bytes(&registry.get(&format!("/v2/dst/blobs/{d}"))), b"s");
        // Linked only where the caller may not pull: a new session instead.
        assert_eq!(mount(&hidden).status, 202);
        assert_eq!(registry.get(&format!("/v2/dst/blobs/{hidden}")).status, 404);
    }

    #[test]
    fn mount_needs_pull_on_the_source() {
        let rules = Rules::deny()
            .allow(Some("dst"), Access::PUSH)
            .allow(Some("dst"), Access::PULL);
        let store = Store::new();
        let d =
            Registry::with_auth(store.clone(), crate::memory::AllowAll).push_blob("secret", b"s");
        let registry = Registry::with_auth(store, rules);
        let response = registry.send(
            Method::Post,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=secret"),
            &[],
            b"",
        );
        assert_eq!(response.status, 202);
        assert_eq!(registry.get(&format!("/v2/dst/blobs/{d}")).status, 404);
    }

    #[test]
    fn mount_of_a_blob_already_in_the_repository_is_201() {
        let registry = Registry::new();
        let d = registry.push_blob("dst", b"x");
        let response = registry.send(
            Method::Post,
            &format!("/v2/dst/blobs/uploads/?mount={d}"),
            &[],
            b"",
        );
        assert_eq!(response.status, 201);
    }

    #[test]
    fn content_ranges_tolerate_common_spellings() {
        let range = |first, len| Some(ChunkRange { first, len });
        assert_eq!(parse_content_range("0-9"), range(0, 10));
        assert_eq!(parse_content_range("bytes 10-19/*"), range(10, 10));
        assert_eq!(parse_content_range("bytes=10-19"), range(10, 10));
        assert_eq!(parse_content_range(" 5-5 "), range(5, 1));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "9-3",
            "a-b",
            "1-2-3",
            "+1-2",
            "99999999999999999999-1",
            "0-18446744073709551615",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
