//! The core's view of a request: the part of `wasi:http/types` it imports,
//! implemented over the host's own resources. Every resource wraps the
//! host's and passes each call on, except that the request's headers are a
//! copy without `Authorization`. Streams are the host's `wasi:io` streams
//! themselves, so bodies are still spliced by the host and never cross
//! this component's memory.

use crate::bindings::exports::wharf::registry::http_types::{
    self as view, ErrorCode, FieldName, FieldValue, HeaderError, Method,
};
use crate::bindings::wasi::http::types as host;
use crate::bindings::wasi::io::streams::{InputStream, OutputStream};
use std::cell::RefCell;
use wharf_guest::{Body, Response};

/// Header names and values, as `wasi:http` lists them.
type Entries = Vec<(String, Vec<u8>)>;

/// The headers a stock host passes on that the core must not see.
const WITHHELD: &[&str] = &["authorization"];

/// The core's view of `request`, whose host headers are `headers`, and of
/// where its answer goes.
pub fn admitted(
    request: host::IncomingRequest,
    headers: Entries,
    out: host::ResponseOutparam,
) -> (view::IncomingRequest, view::ResponseOutparam) {
    let headers = headers
        .into_iter()
        .filter(|(name, _)| !WITHHELD.iter().any(|w| name.eq_ignore_ascii_case(w)))
        .collect();
    (
        view::IncomingRequest::new(Request {
            host: request,
            headers: RefCell::new(Some(headers)),
        }),
        view::ResponseOutparam::new(Outparam(out)),
    )
}

/// Answer on the host's `out` directly: the gate's own 401s and 500s.
pub fn answer(out: host::ResponseOutparam, response: Response<()>) {
    let headers = host::Fields::new();
    for (name, value) in &response.headers {
        let _ = headers.append(name, value.as_bytes());
    }
    let bytes = match response.body {
        Body::Bytes(bytes) => bytes,
        Body::Empty | Body::Blob(()) => Vec::new(),
    };
    let _ = headers.append("content-length", bytes.len().to_string().as_bytes());
    let outgoing = host::OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let body = outgoing.body().expect("a new response has a body");
    host::ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        let _ = stream.blocking_write_and_flush(&bytes);
    }
    let _ = host::OutgoingBody::finish(body, None);
}

pub struct Request {
    host: host::IncomingRequest,
    /// The headers the core may see; taken by the first `headers` call.
    headers: RefCell<Option<Entries>>,
}

pub struct Fields(host::Fields);
pub struct IncomingBody(host::IncomingBody);
pub struct OutgoingResponse(host::OutgoingResponse);
pub struct OutgoingBody(host::OutgoingBody);
pub struct Outparam(host::ResponseOutparam);

impl view::Guest for crate::component::Gate {
    type Fields = Fields;
    type IncomingRequest = Request;
    type IncomingBody = IncomingBody;
    type OutgoingResponse = OutgoingResponse;
    type OutgoingBody = OutgoingBody;
    type ResponseOutparam = Outparam;
}

impl view::GuestFields for Fields {
    fn new() -> Fields {
        Fields(host::Fields::new())
    }

    fn append(&self, name: FieldName, value: FieldValue) -> Result<(), HeaderError> {
        self.0.append(&name, &value).map_err(|e| match e {
            host::HeaderError::InvalidSyntax => HeaderError::InvalidSyntax,
            host::HeaderError::Forbidden => HeaderError::Forbidden,
            host::HeaderError::Immutable => HeaderError::Immutable,
        })
    }

    fn entries(&self) -> Vec<(FieldName, FieldValue)> {
        self.0.entries()
    }
}

impl view::GuestIncomingRequest for Request {
    fn method(&self) -> Method {
        match self.host.method() {
            host::Method::Get => Method::Get,
            host::Method::Head => Method::Head,
            host::Method::Post => Method::Post,
            host::Method::Put => Method::Put,
            host::Method::Delete => Method::Delete,
            host::Method::Connect => Method::Connect,
            host::Method::Options => Method::Options,
            host::Method::Trace => Method::Trace,
            host::Method::Patch => Method::Patch,
            host::Method::Other(other) => Method::Other(other),
        }
    }

    fn path_with_query(&self) -> Option<String> {
        self.host.path_with_query()
    }

    fn headers(&self) -> view::Headers {
        let entries = self.headers.borrow_mut().take().unwrap_or_else(|| {
            // Asked again: the same view, from the host's headers.
            self.host
                .headers()
                .entries()
                .into_iter()
                .filter(|(name, _)| !WITHHELD.iter().any(|w| name.eq_ignore_ascii_case(w)))
                .collect()
        });
        let fields = host::Fields::from_list(&entries).unwrap_or_else(|_| host::Fields::new());
        view::Fields::new(Fields(fields))
    }

    fn consume(&self) -> Result<view::IncomingBody, ()> {
        self.host
            .consume()
            .map(|body| view::IncomingBody::new(IncomingBody(body)))
    }
}

impl view::GuestIncomingBody for IncomingBody {
    fn stream(&self) -> Result<InputStream, ()> {
        self.0.stream()
    }
}

impl view::GuestOutgoingResponse for OutgoingResponse {
    fn new(headers: view::Headers) -> OutgoingResponse {
        OutgoingResponse(host::OutgoingResponse::new(
            headers.into_inner::<Fields>().0,
        ))
    }

    fn set_status_code(&self, status: view::StatusCode) -> Result<(), ()> {
        self.0.set_status_code(status)
    }

    fn body(&self) -> Result<view::OutgoingBody, ()> {
        self.0
            .body()
            .map(|body| view::OutgoingBody::new(OutgoingBody(body)))
    }
}

impl view::GuestOutgoingBody for OutgoingBody {
    fn write(&self) -> Result<OutputStream, ()> {
        self.0.write()
    }

    fn finish(this: view::OutgoingBody, trailers: Option<view::Trailers>) -> Result<(), ErrorCode> {
        let trailers = trailers.map(|t| t.into_inner::<Fields>().0);
        host::OutgoingBody::finish(this.into_inner::<OutgoingBody>().0, trailers)
            .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))
    }
}

impl view::GuestResponseOutparam for Outparam {
    fn set(param: view::ResponseOutparam, response: Result<view::OutgoingResponse, ErrorCode>) {
        let response = response
            .map(|r| r.into_inner::<OutgoingResponse>().0)
            // The core answers with a response or not at all; an error code
            // crosses as the host's internal error, describing the original.
            .map_err(|e| host::ErrorCode::InternalError(Some(format!("{e:?}"))));
        host::ResponseOutparam::set(param.into_inner::<Outparam>().0, response);
    }
}
