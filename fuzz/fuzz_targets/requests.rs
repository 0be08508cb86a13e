//! Whole requests through `handle` on the in-memory store: a short sequence
//! of arbitrary requests (so uploads, manifests and tags build state the
//! next ones meet) always gets an HTTP status, and every error carries an
//! OCI error body.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use wharf_guest::memory::{AllowAll, Body, Host, Store};
use wharf_guest::{Method, Request, handle};

#[derive(Debug, Arbitrary)]
enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other(String),
}

/// Path shapes the router knows, so the fuzzer reaches the handlers often.
#[derive(Debug, Arbitrary)]
enum Path {
    Raw(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
    Tags(String),
    Referrers(String, String),
    Catalog,
}

#[derive(Debug, Arbitrary)]
struct Fuzzed {
    verb: Verb,
    path: Path,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn path(p: Path) -> String {
    match p {
        Path::Raw(raw) => raw,
        Path::Manifest(name, reference) => format!("/v2/{name}/manifests/{reference}"),
        Path::Blob(name, digest) => format!("/v2/{name}/blobs/{digest}"),
        Path::Uploads(name) => format!("/v2/{name}/blobs/uploads/"),
        Path::Upload(name, id) => format!("/v2/{name}/blobs/uploads/{id}"),
        Path::Tags(name) => format!("/v2/{name}/tags/list"),
        Path::Referrers(name, digest) => format!("/v2/{name}/referrers/{digest}"),
        Path::Catalog => "/v2/_catalog".into(),
    }
}

fuzz_target!(|requests: Vec<Fuzzed>| {
    let host = Host::new(Store::new(), AllowAll);
    for fuzzed in requests.into_iter().take(8) {
        let method = match fuzzed.verb {
            Verb::Get => Method::Get,
            Verb::Head => Method::Head,
            Verb::Post => Method::Post,
            Verb::Put => Method::Put,
            Verb::Patch => Method::Patch,
            Verb::Delete => Method::Delete,
            Verb::Other(m) => Method::Other(m),
        };
        let request = Request {
            method,
            path: path(fuzzed.path),
            query: fuzzed.query,
            headers: fuzzed
                .headers
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect(),
            body: Body(fuzzed.body),
        };
        let head = request.method == Method::Head;
        let response = handle(&host, request);
        assert!((200..600).contains(&response.status), "{}", response.status);
        if response.status >= 400 && !head {
            let wharf_guest::Body::Bytes(bytes) = &response.body else {
                panic!("error {} without a body", response.status);
            };
            let doc: serde_json::Value = serde_json::from_slice(bytes).expect("error body is JSON");
            assert!(doc["errors"][0]["code"].is_string(), "{doc}");
        }
    }
});
