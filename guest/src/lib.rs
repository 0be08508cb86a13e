//! Wharf's protocol core: the OCI distribution-spec as a plain Rust library.
//!
//! [`handle`] turns a [`Request`] into a [`Response`], reaching storage only
//! through the handles a [`Registry`] opens for it: the [`Catalog`], or a
//! [`Repository`] opened for the access the route needs. It never touches a
//! file, a socket or a credential itself, and never panics on input: every
//! bad request becomes an OCI error response.
//!
//! The `wharf-component` crate binds these traits to the WIT imports for the
//! `wasm32-wasip2` component, where the host decides what a handle may do;
//! [`memory`] binds them to an in-memory store that decides the same way, so
//! the whole protocol is testable natively with `cargo test`.

pub mod base;
pub mod blobs;
pub mod capabilities;
pub mod catalog;
pub mod errors;
pub mod http;
pub mod manifests;
pub mod memory;
pub mod paging;
pub mod query;
pub mod referrers;
pub mod routes;
pub mod tags;
#[cfg(test)]
mod testing;
pub mod uploads;

pub use capabilities::*;
pub use errors::{Code, Error};
pub use http::{Body, Method, Request, Response};
pub use wharf_spec::{Algorithm, Digest, DigestError};
pub use wharf_spec::{digest, names, ranges};

/// Answer one request. Every response, errors included, carries
/// `docker-distribution-api-version: registry/2.0`; a `HEAD` response never
/// carries a body.
pub fn handle<R: Registry>(registry: &R, request: Request<R::Body>) -> Response<R::Reader> {
    let head = request.method == Method::Head;
    let mut response = respond(registry, request).unwrap_or_else(Error::into_response);
    if head {
        response.body = Body::Empty;
    }
    response.header("docker-distribution-api-version", "registry/2.0")
}

/// Route, open what the route needs, dispatch. Opening is the whole of
/// authorization: the registry refuses a handle the caller may not hold.
fn respond<R: Registry>(
    registry: &R,
    request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let route = routes::Route::parse(&request.path)?;
    let entry = routes::lookup::<R>(&request.method, route.shape)?;
    match entry.handler {
        routes::Handler::Registry(handler) => {
            let catalog = registry.open_catalog().map_err(refused)?;
            handler(&catalog, &route, request)
        }
        routes::Handler::Repository(access, handler) => {
            let repository = registry
                .open_repository(&route.name, access)
                .map_err(refused)?;
            handler(registry, &repository, &route, request)
        }
    }
}

fn refused(refusal: Refusal) -> Error {
    match refusal {
        Refusal::Challenge(challenge) => Error::challenge(&challenge),
        Refusal::Deny(reason) => Error::denied(&reason),
        Refusal::Invalid(reason) => Error::new(Code::NameInvalid).detail(reason.into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::capabilities::Access;
    use crate::http::{Body, Method};
    use crate::memory::{Rules, Store};
    use crate::testing::{Registry, code, header, text};

    #[test]
    fn every_response_carries_the_api_version_header() {
        let registry = Registry::new();
        for (method, path) in [
            (Method::Get, "/v2/"),
            (Method::Get, "/nope"),
            (Method::Get, "/v2/Bad/tags/list"),
            (Method::Get, "/v2/a/manifests/missing"),
            (Method::Post, "/v2/_catalog"),
            (Method::Post, "/v2/a/blobs/uploads/"),
        ] {
            let response = registry.send(method.clone(), path, &[], b"");
            assert_eq!(
                header(&response, "docker-distribution-api-version"),
                Some("registry/2.0"),
                "{method:?} {path}"
            );
        }
    }

    #[test]
    fn unauthenticated_requests_get_the_exact_401() {
        // end-1: 401 with WWW-Authenticate; body as registry:2 renders it.
        let challenge = r#"Basic realm="wharf""#;
        let registry = Registry::with_auth(Store::new(), Rules::challenge(challenge));
        for path in [
            "/v2/",
            "/v2/_catalog",
            "/v2/a/b/tags/list",
            "/v2/a/manifests/latest",
        ] {
            let response = registry.get(path);
            assert_eq!(response.status, 401, "{path}");
            assert_eq!(
                text(&response),
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#
            );
            assert_eq!(header(&response, "www-authenticate"), Some(challenge));
            assert_eq!(header(&response, "content-type"), Some("application/json"));
        }
    }

    #[test]
    fn authenticated_but_not_allowed_is_403_denied() {
        let rules = Rules::deny().allow(Some("team/app"), Access::PULL);
        let registry = Registry::with_auth(Store::new(), rules);
        let push = registry.send(Method::Post, "/v2/team/app/blobs/uploads/", &[], b"");
        assert_eq!((push.status, code(&push).as_str()), (403, "DENIED"));
        let other = registry.get("/v2/team/other/tags/list");
        assert_eq!((other.status, code(&other).as_str()), (403, "DENIED"));
        assert_eq!(registry.get("/v2/team/app/manifests/x").status, 404);
    }

    #[test]
    fn authorization_is_asked_with_the_route_action() {
        // Delete alone allows DELETE but neither pull nor push.
        let rules = Rules::deny().allow(Some("a"), Access::DELETE);
        let registry = Registry::with_auth(Store::new(), rules);
        assert_eq!(registry.delete("/v2/a/manifests/latest").status, 404);
        assert_eq!(registry.get("/v2/a/manifests/latest").status, 403);
        assert_eq!(
            registry
                .send(Method::Put, "/v2/a/manifests/latest", &[], b"{}")
                .status,
            403
        );
        assert_eq!(registry.get("/v2/").status, 403);
    }

    #[test]
    fn wrong_method_on_a_known_path_is_405_unsupported() {
        let registry = Registry::new();
        for (method, path) in [
            (Method::Post, "/v2/"),
            (Method::Delete, "/v2/_catalog"),
            (Method::Put, "/v2/a/tags/list"),
            (Method::Post, "/v2/a/manifests/latest"),
            (Method::Patch, "/v2/a/blobs/uploads/"),
            (Method::Other("TRACE".into()), "/v2/a/blobs/uploads/x"),
        ] {
            let response = registry.send(method.clone(), path, &[], b"");
            assert_eq!(
                (response.status, code(&response).as_str()),
                (405, "UNSUPPORTED"),
                "{method:?} {path}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404_with_an_oci_error_body() {
        let response = Registry::new().get("/v2/a/nothing/here");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (404, "UNSUPPORTED")
        );
    }

    #[test]
    fn hostile_names_are_name_invalid_before_authorization() {
        let registry = Registry::with_auth(Store::new(), Rules::challenge("Basic"));
        for path in [
            "/v2/%2e%2e/manifests/x",
            "/v2/a/%2e%2e/tags/list",
            "/v2/../../etc/blobs/uploads/",
        ] {
            let response = registry.get(path);
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "NAME_INVALID"),
                "{path}"
            );
        }
    }

    #[test]
    fn head_responses_never_carry_a_body() {
        let registry = Registry::new();
        let response = registry.head("/v2/a/manifests/missing");
        assert_eq!(response.status, 404);
        assert!(matches!(response.body, Body::Empty));
    }

    #[test]
    fn never_panics_on_garbage() {
        let registry = Registry::new();
        let digest = registry.push_blob("a", b"x");
        let segments = [
            "",
            "/",
            "//",
            "v2",
            "/v2",
            "/v2/",
            "a",
            "A",
            "..",
            ".",
            "%",
            "%2",
            "%2e",
            "%ff",
            "%00",
            "_catalog",
            "tags",
            "list",
            "manifests",
            "blobs",
            "uploads",
            "upload-1",
            "latest",
            "sha256:",
            "sha256:abc",
            "\u{0}",
            "é",
            "\u{202e}",
            "a/b",
            "-",
            ":::",
            "?",
            "#",
        ];
        let digest = digest.to_string();
        let mut paths = vec![];
        for a in segments {
            for b in segments {
                paths.push(format!("/v2/{a}/{b}"));
                paths.push(format!("/v2/x/{a}/{b}"));
                paths.push(format!("{a}{b}"));
            }
            paths.push(format!("/v2/a/blobs/{a}"));
            paths.push(format!("/v2/a/manifests/{a}"));
            paths.push(format!("/v2/a/blobs/uploads/{a}"));
        }
        paths.push(format!("/v2/a/blobs/{digest}"));
        paths.push(format!("/v2/{}/tags/list", "a/".repeat(10_000)));
        let queries = [
            "",
            "?",
            "?n=",
            "?n=-1&last=%ff",
            "?digest=%",
            "?mount=x&from=..",
            "?tag=&tag=%2e",
            "?=&&=",
        ];
        let headers: [&[(&str, &str)]; 4] = [
            &[],
            &[
                ("range", "bytes=-"),
                ("content-range", "0-18446744073709551615"),
            ],
            &[
                (
                    "content-range",
                    "bytes 18446744073709551615-18446744073709551615",
                ),
                ("content-length", "x"),
            ],
            &[
                ("range", "bytes=18446744073709551615-"),
                ("content-type", ";;;"),
            ],
        ];
        let methods = [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
        ];
        for (i, path) in paths.iter().enumerate() {
            let method = methods[i % methods.len()].clone();
            let query = queries[i % queries.len()];
            let headers = headers[i % headers.len()];
            let body: &[u8] = if i % 2 == 0 { b"" } else { b"\xff{\"" };
            let response = registry.send(method, &format!("{path}{query}"), headers, body);
            assert!((200..600).contains(&response.status));
            assert_eq!(
                header(&response, "docker-distribution-api-version"),
                Some("registry/2.0")
            );
        }
    }
}
