//! `GET /v2/<name>/tags/list` (end-8a, end-8b): a repository's tags in
//! lexical order, paginated with `n` and `last`.

use crate::capabilities::{Registry, Repository};
use crate::errors::{Code, Error};
use crate::http::{Request, Response};
use crate::paging::Paging;
use crate::query::Query;
use crate::routes::Route;

pub fn list<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let paging = Paging::from_query(&Query::parse(request.query.as_deref()))?;
    let name = route.name.as_str();
    let (tags, more) = paging
        .collect(|after, limit| {
            repo.list_tags(after, limit)
                .map_err(|e| Error::store(e, Code::NameUnknown, Code::Unsupported))
        })?
        .ok_or_else(|| Error::new(Code::NameUnknown).detail(serde_json::json!({ "name": name })))?;
    let body = serde_json::json!({ "name": name, "tags": tags });
    let mut response = Response::new(200);
    if let (true, Some(last)) = (more, tags.last()) {
        response = response.header(
            "link",
            paging.next_link(&format!("/v2/{name}/tags/list"), last),
        );
    }
    Ok(response.bytes("application/json", body.to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use crate::manifests::OCI_MANIFEST;
    use crate::testing::{Registry, code, header, json};

    fn registry_with_tags(tags: &[&str]) -> Registry {
        let registry = Registry::new();
        for tag in tags {
            let response = registry.put_manifest("a/b", tag, OCI_MANIFEST, br#"{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#);
            assert_eq!(response.status, 201);
        }
        registry
    }

    #[test]
    fn lists_all_tags_in_lexical_order() {
        // end-8a.
        let registry = registry_with_tags(&["v2", "latest", "v1"]);
        let response = registry.get("/v2/a/b/tags/list");
        assert_eq!(response.status, 200);
        assert_eq!(
            json(&response),
            serde_json::json!({ "name": "a/b", "tags": ["latest", "v1", "v2"] })
        );
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(header(&response, "link"), None);
    }

    #[test]
    fn paginates_with_n_and_last_and_a_link_header() {
        // end-8b.
        let registry = registry_with_tags(&["a", "b", "c", "d", "e"]);
        let first = registry.get("/v2/a/b/tags/list?n=2");
        assert_eq!(json(&first)["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(
            header(&first, "link"),
            Some(r#"</v2/a/b/tags/list?last=b&n=2>; rel="next""#)
        );
        let second = registry.get("/v2/a/b/tags/list?last=b&n=2");
        assert_eq!(json(&second)["tags"], serde_json::json!(["c", "d"]));
        let third = registry.get("/v2/a/b/tags/list?last=d&n=2");
        assert_eq!(json(&third)["tags"], serde_json::json!(["e"]));
        assert_eq!(header(&third, "link"), None);
        let rest = registry.get("/v2/a/b/tags/list?last=c");
        assert_eq!(json(&rest)["tags"], serde_json::json!(["d", "e"]));
        let exact = registry.get("/v2/a/b/tags/list?n=5");
        assert_eq!(header(&exact, "link"), None);
    }

    #[test]
    fn n_zero_is_an_empty_list_without_link() {
        // end-8b: "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link header."
        let registry = registry_with_tags(&["a"]);
        let response = registry.get("/v2/a/b/tags/list?n=0");
        assert_eq!(response.status, 200);
        assert_eq!(json(&response)["tags"], serde_json::json!([]));
        assert_eq!(header(&response, "link"), None);
    }

    #[test]
    fn unknown_repository_is_name_unknown() {
        let response = Registry::new().get("/v2/nope/tags/list");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (404, "NAME_UNKNOWN")
        );
    }

    #[test]
    fn invalid_n_is_400() {
        let registry = registry_with_tags(&["a"]);
        let response = registry.get("/v2/a/b/tags/list?n=many");
        assert_eq!(response.status, 400);
    }
}
