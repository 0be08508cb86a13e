//! `GET /v2/_catalog`: every repository name in lexical order, paginated
//! with `n` and `last` like the tag list.

use crate::capabilities::{Catalog, Registry};
use crate::errors::{Code, Error};
use crate::http::{Request, Response};
use crate::paging::Paging;
use crate::query::Query;
use crate::routes::Route;

pub fn list<R: Registry>(
    catalog: &R::Catalog,
    _route: &Route,
    request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let paging = Paging::from_query(&Query::parse(request.query.as_deref()))?;
    let (repositories, more) = paging
        .collect(|after, limit| {
            catalog
                .list(after, limit)
                .map(Some)
                .map_err(|e| Error::store(e, Code::NameUnknown, Code::Unsupported))
        })?
        .unwrap_or_default();
    let body = serde_json::json!({ "repositories": repositories });
    let mut response = Response::new(200);
    if let (true, Some(last)) = (more, repositories.last()) {
        response = response.header("link", paging.next_link("/v2/_catalog", last));
    }
    Ok(response.bytes("application/json", body.to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use crate::testing::{Registry, header, json};

    #[test]
    fn lists_repositories_with_pagination() {
        let registry = Registry::new();
        for repository in ["c/x", "a", "b/y/z"] {
            registry.push_blob(repository, b"x");
        }
        let all = registry.get("/v2/_catalog");
        assert_eq!(all.status, 200);
        assert_eq!(
            json(&all),
            serde_json::json!({ "repositories": ["a", "b/y/z", "c/x"] })
        );
        let first = registry.get("/v2/_catalog?n=2");
        assert_eq!(
            json(&first)["repositories"],
            serde_json::json!(["a", "b/y/z"])
        );
        assert_eq!(
            header(&first, "link"),
            Some(r#"</v2/_catalog?last=b/y/z&n=2>; rel="next""#)
        );
        let second = registry.get("/v2/_catalog?n=2&last=b/y/z");
        assert_eq!(json(&second)["repositories"], serde_json::json!(["c/x"]));
        assert_eq!(header(&second, "link"), None);
    }

    #[test]
    fn empty_registry_has_an_empty_catalog() {
        let response = Registry::new().get("/v2/_catalog");
        assert_eq!(json(&response), serde_json::json!({ "repositories": [] }));
    }
}
