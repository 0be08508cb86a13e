//! `GET /v2/` (end-1): the API version check. Reaching it at all means the
//! caller passed authorization for the registry; the version header every
//! response carries is added by [`crate::handle`].

use crate::capabilities::Registry;
use crate::errors::Error;
use crate::http::{Request, Response};
use crate::routes::Route;

pub fn get<R: Registry>(
    _catalog: &R::Catalog,
    _route: &Route,
    _request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    Ok(Response::new(200).bytes("application/json", b"{}".to_vec()))
}

#[cfg(test)]
mod tests {
    use crate::testing::{Registry, bytes, header};

    #[test]
    fn version_check_is_200_with_an_empty_object() {
        // end-1.
        for path in ["/v2/", "/v2"] {
            let response = Registry::new().get(path);
            assert_eq!(response.status, 200);
            assert_eq!(bytes(&response), b"{}");
            assert_eq!(header(&response, "content-type"), Some("application/json"));
            assert_eq!(
                header(&response, "docker-distribution-api-version"),
                Some("registry/2.0")
            );
        }
    }
}
