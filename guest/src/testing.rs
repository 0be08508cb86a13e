//! A test harness: a registry on [`crate::memory`] driven through
//! [`crate::handle`] with requests written as method, path and body.

use crate::digest::{Algorithm, Digest};
use crate::handle;
use crate::http::{Body, Method, Request, Response};
use crate::memory::{self, AllowAll, Auth, Host, Store};

pub struct Registry<A = AllowAll> {
    pub store: Store,
    pub auth: A,
}

impl Registry {
    pub fn new() -> Self {
        Registry {
            store: Store::new(),
            auth: AllowAll,
        }
    }
}

impl<A: Auth> Registry<A> {
    pub fn with_auth(store: Store, auth: A) -> Self {
        Registry { store, auth }
    }

    /// Send a request; `target` may carry a `?query`.
    pub fn send(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect();
        if !headers.iter().any(|(n, _)| n == "content-length")
            && method != Method::Get
            && method != Method::Head
        {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        let request = Request {
            method,
            path,
            query,
            headers,
            body: memory::Body(body.to_vec()),
        };
        let host = Host::new(self.store.clone(), self.auth.clone());
        handle(&host, request)
    }

    pub fn get(&self, target: &str) -> Response<Vec<u8>> {
        self.send(Method::Get, target, &[], b"")
    }

    pub fn head(&self, target: &str) -> Response<Vec<u8>> {
        self.send(Method::Head, target, &[], b"")
    }

    pub fn delete(&self, target: &str) -> Response<Vec<u8>> {
        self.send(Method::Delete, target, &[], b"")
    }

    /// Push `bytes` monolithically into `repository` and return the digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> Digest {
        let digest = Algorithm::Sha256.digest(bytes);
        let response = self.send(
            Method::Post,
            &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
            &[],
            bytes,
        );
        assert_eq!(response.status, 201, "{}", text(&response));
        digest
    }

    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        self.send(
            Method::Put,
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("content-type", media_type)],
            body,
        )
    }

    /// Start an upload session and return its location.
    pub fn start_upload(&self, repository: &str) -> String {
        let response = self.send(
            Method::Post,
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(response.status, 202, "{}", text(&response));
        location(&response)
    }
}

pub fn bytes(response: &Response<Vec<u8>>) -> Vec<u8> {
    match &response.body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) | Body::Blob(b) => b.clone(),
    }
}

pub fn text(response: &Response<Vec<u8>>) -> String {
    String::from_utf8_lossy(&bytes(response)).into_owned()
}

pub fn json(response: &Response<Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(&bytes(response)).unwrap_or_else(|e| panic!("{e}: {}", text(response)))
}

/// The `code` of the first OCI error in the body.
pub fn code(response: &Response<Vec<u8>>) -> String {
    json(response)["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn location(response: &Response<Vec<u8>>) -> String {
    response
        .get_header("location")
        .expect("location header")
        .to_string()
}

pub fn header<'a>(response: &'a Response<Vec<u8>>, name: &str) -> Option<&'a str> {
    response.get_header(name)
}
