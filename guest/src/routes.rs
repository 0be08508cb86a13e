//! The one router: request path to [`Route`], and the table that pairs each
//! method and path shape with its handler and the [`Access`] it opens the
//! repository with (or the catalog, for the registry-wide routes).
//!
//! Repository names have any number of components (`a/b/c/app`), so a path
//! is matched from the right: the trailing `tags/list`, `manifests/<ref>`,
//! `referrers/<digest>`, `blobs/<digest>`, `blobs/uploads/` or
//! `blobs/uploads/<id>` fixes the shape, and everything before it is the
//! name.
//!
//! A path of no known shape is 404 `UNSUPPORTED` (registry:2 answers a bare
//! 404 there; the spec has no code for it, and a 404 is what clients
//! expect from an endpoint a registry lacks). A
//! known shape with an invalid name is 400 `NAME_INVALID`; a known shape
//! with a method it does not take is 405 `UNSUPPORTED`.

use crate::capabilities::{Access, Registry};
use crate::errors::{Code, Error};
use crate::http::{Method, Request, Response};
use crate::names::is_valid_name;
use crate::query::percent_decode;
use crate::{base, blobs, catalog, manifests, referrers, tags, uploads};

/// The kinds of resource the API has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/v2/` (end-1)
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list` (end-8a, end-8b)
    Tags,
    /// `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9)
    Manifest,
    /// `/v2/<name>/referrers/<digest>` (end-12a, end-12b)
    Referrers,
    /// `/v2/<name>/blobs/<digest>` (end-2, end-10)
    Blob,
    /// `/v2/<name>/blobs/uploads/` (end-4a, end-4b, end-11)
    Uploads,
    /// `/v2/<name>/blobs/uploads/<id>` (end-5, end-6, end-13)
    Upload,
}

/// A matched path: its shape, the repository name (empty for `Base` and
/// `Catalog`) and the last segment it captured (reference, digest or upload
/// id; percent-decoded for references and digests, empty when there is
/// none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub shape: Shape,
    pub name: String,
    pub param: String,
}

impl Route {
    /// Match a raw (still percent-encoded) request path.
    pub fn parse(path: &str) -> Result<Route, Error> {
        let unknown = || {
            Error::new(Code::Unsupported)
                .status(404)
                .message("no such endpoint")
        };
        let rest = match path.strip_prefix("/v2") {
            Some("" | "/") => return Ok(Route::bare(Shape::Base)),
            Some(rest) => rest.strip_prefix('/').ok_or_else(unknown)?,
            None => return Err(unknown()),
        };
        if rest == "_catalog" {
            return Ok(Route::bare(Shape::Catalog));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let (shape, suffix, param) = match segments.as_slice() {
            [.., "blobs", "uploads", ""] => (Shape::Uploads, 3, None),
            [.., "blobs", "uploads"] => (Shape::Uploads, 2, None),
            [.., "tags", "list"] => (Shape::Tags, 2, None),
            [.., "blobs", "uploads", id] => (Shape::Upload, 3, Some(id.to_string())),
            [.., "manifests", reference] => (Shape::Manifest, 2, Some(percent_decode(reference))),
            [.., "blobs", digest] => (Shape::Blob, 2, Some(percent_decode(digest))),
            [.., "referrers", digest] => (Shape::Referrers, 2, Some(percent_decode(digest))),
            _ => return Err(unknown()),
        };
        let name_len = segments.len().saturating_sub(suffix);
        if name_len == 0 || param.as_deref() == Some("") {
            return Err(unknown());
        }
        let name = segments.get(..name_len).ok_or_else(unknown)?.join("/");
        if !is_valid_name(&name) {
            return Err(Error::new(Code::NameInvalid).detail(serde_json::json!({ "name": name })));
        }
        Ok(Route {
            shape,
            name,
            param: param.unwrap_or_default(),
        })
    }

    fn bare(shape: Shape) -> Route {
        Route {
            shape,
            name: String::new(),
            param: String::new(),
        }
    }
}

/// A request handler. The route is matched, and what the handler may
/// touch is already open: the catalog for the registry-wide routes, the
/// route's repository (for the access its row names) for all others. The
/// registry is passed on for handlers that open a second repository (a
/// mount's source).
pub enum Handler<R: Registry> {
    Registry(RegistryHandler<R>),
    Repository(Access, RepositoryHandler<R>),
}

/// What a handler answers: a response whose body may stream from storage.
pub type Answer<R> = Result<Response<<R as Registry>::Reader>, Error>;
/// A handler of a registry-wide route.
pub type RegistryHandler<R> =
    fn(&<R as Registry>::Catalog, &Route, Request<<R as Registry>::Body>) -> Answer<R>;
/// A handler of a repository's route.
pub type RepositoryHandler<R> =
    fn(&R, &<R as Registry>::Repository, &Route, Request<<R as Registry>::Body>) -> Answer<R>;

/// One row of the routing table.
pub struct Entry<H> {
    pub method: Method,
    pub shape: Shape,
    pub handler: H,
}

/// The routing table. Upload status and cancel need push, like every
/// other step of an upload (as in registry:2): a session belongs to a push.
pub fn table<R: Registry>() -> [Entry<Handler<R>>; 18] {
    use Method::{
        Delete as DELETE, Get as GET, Head as HEAD, Patch as PATCH, Post as POST, Put as PUT,
    };
    macro_rules! row {
        ($method:expr, $shape:ident, registry, $handler:expr) => {
            Entry {
                method: $method,
                shape: Shape::$shape,
                handler: Handler::Registry($handler),
            }
        };
        ($method:expr, $shape:ident, $access:expr, $handler:expr) => {
            Entry {
                method: $method,
                shape: Shape::$shape,
                handler: Handler::Repository($access, $handler),
            }
        };
    }
    [
        row!(GET, Base, registry, base::get::<R>),
        row!(HEAD, Base, registry, base::get::<R>),
        row!(GET, Catalog, registry, catalog::list::<R>),
        row!(GET, Tags, Access::PULL, tags::list::<R>),
        row!(GET, Manifest, Access::PULL, manifests::get::<R>),
        row!(HEAD, Manifest, Access::PULL, manifests::get::<R>),
        row!(PUT, Manifest, Access::PUSH, manifests::put::<R>),
        row!(DELETE, Manifest, Access::DELETE, manifests::delete::<R>),
        row!(GET, Referrers, Access::PULL, referrers::list::<R>),
        row!(GET, Blob, Access::PULL, blobs::get::<R>),
        row!(HEAD, Blob, Access::PULL, blobs::get::<R>),
        row!(DELETE, Blob, Access::DELETE, blobs::delete::<R>),
        row!(POST, Uploads, Access::PUSH, uploads::start::<R>),
        row!(GET, Upload, Access::PUSH, uploads::status::<R>),
        row!(PATCH, Upload, Access::PUSH, uploads::patch::<R>),
        row!(PUT, Upload, Access::PUSH, uploads::finish::<R>),
        row!(DELETE, Upload, Access::PUSH, uploads::cancel::<R>),
        row!(HEAD, Upload, Access::PUSH, uploads::status::<R>),
    ]
}

/// The row for `method` on `shape`: 405 `UNSUPPORTED` when the shape exists
/// but not with this method.
pub fn lookup<R: Registry>(method: &Method, shape: Shape) -> Result<Entry<Handler<R>>, Error> {
    table::<R>()
        .into_iter()
        .find(|entry| entry.shape == shape && &entry.method == method)
        .ok_or_else(|| Error::new(Code::Unsupported).message("method not allowed on this endpoint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> (Shape, String, String) {
        let r = Route::parse(path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        (r.shape, r.name, r.param)
    }

    fn fails(path: &str) -> (u16, Code) {
        let e = Route::parse(path).expect_err(path);
        (e.status, e.code)
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn routes_every_endpoint() {
        let s = String::new;
        assert_eq!(route("/v2/"), (Shape::Base, s(), s()));
        assert_eq!(route("/v2"), (Shape::Base, s(), s()));
        assert_eq!(route("/v2/_catalog"), (Shape::Catalog, s(), s()));
        assert_eq!(route("/v2/a/tags/list"), (Shape::Tags, "a".into(), s()));
        assert_eq!(
            route("/v2/a/manifests/latest"),
            (Shape::Manifest, "a".into(), "latest".into())
        );
        assert_eq!(
            route(&format!("/v2/a/blobs/{D}")),
            (Shape::Blob, "a".into(), D.into())
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/"),
            (Shape::Uploads, "a".into(), s())
        );
        assert_eq!(
            route("/v2/a/blobs/uploads"),
            (Shape::Uploads, "a".into(), s())
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/xyz"),
            (Shape::Upload, "a".into(), "xyz".into())
        );
        assert_eq!(
            route(&format!("/v2/a/b/referrers/{D}")),
            (Shape::Referrers, "a/b".into(), D.into())
        );
    }

    #[test]
    fn multi_component_names_are_matched_from_the_right() {
        assert_eq!(route("/v2/a/b/c/app/tags/list").1, "a/b/c/app");
        assert_eq!(route("/v2/a/b/c/app/manifests/v1").1, "a/b/c/app");
        assert_eq!(route("/v2/a/b/blobs/uploads/").1, "a/b");
        assert_eq!(
            route("/v2/a/b/blobs/uploads/id1"),
            (Shape::Upload, "a/b".into(), "id1".into())
        );
        // Components that look like keywords belong to the name.
        assert_eq!(
            route("/v2/x/manifests/blobs/uploads/"),
            (Shape::Uploads, "x/manifests".into(), String::new())
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/manifests/v1").1,
            "a/blobs/uploads"
        );
        assert_eq!(route("/v2/tags/list/tags/list").1, "tags/list");
    }

    #[test]
    fn references_and_digests_are_percent_decoded() {
        let encoded = D.replace(':', "%3A");
        assert_eq!(route(&format!("/v2/a/manifests/{encoded}")).2, D);
        assert_eq!(route(&format!("/v2/a/blobs/{encoded}")).2, D);
    }

    #[test]
    fn invalid_names_are_name_invalid() {
        for path in [
            "/v2/A/tags/list",
            "/v2/../tags/list",
            "/v2/a/../b/manifests/latest",
            "/v2/%2e%2e/manifests/latest",
            "/v2/a%2fb/tags/list",
            "/v2/a//b/tags/list",
            "/v2/_catalog/tags/list",
        ] {
            assert_eq!(fails(path), (400, Code::NameInvalid), "{path}");
        }
        let long = format!("/v2/{}/tags/list", "a".repeat(256));
        assert_eq!(fails(&long), (400, Code::NameInvalid));
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in [
            "",
            "/",
            "/v1/",
            "/v2x",
            "/v2//",
            "/v2/a",
            "/v2/a/",
            "/v2/tags/list",
            "/v2/a/manifests/",
            "/v2/a/blobs/",
            "/v2/a/referrers/",
            "/v2/referrers/sha256:x",
            "/v2/blobs/uploads/",
        ] {
            assert_eq!(fails(path), (404, Code::Unsupported), "{path}");
        }
    }
}
