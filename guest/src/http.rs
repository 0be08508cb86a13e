//! The HTTP request and response as the protocol core sees them: plain data,
//! with the request body and the blob reader left to the shell's types.

/// An incoming request. Header names are lower case.
#[derive(Debug)]
pub struct Request<B> {
    pub method: Method,
    /// The path without the query, still percent-encoded, e.g. `/v2/a/b/manifests/latest`.
    pub path: String,
    /// The raw query string without `?`, if any.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: B,
}

impl<B> Request<B> {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Other(String),
}

/// What the core answers. The shell writes `headers` as given and sends the
/// body; for HEAD the body is `Empty` and `Content-Length` is already set.
#[derive(Debug)]
pub struct Response<R> {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body<R>,
}

#[derive(Debug)]
pub enum Body<R> {
    Empty,
    Bytes(Vec<u8>),
    /// A blob range from [`crate::Blobs::read`], streamed by the shell;
    /// `Content-Length` is set.
    Blob(R),
}

impl<R> Response<R> {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn bytes(mut self, content_type: &str, bytes: Vec<u8>) -> Self {
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.headers
            .push(("content-length".into(), bytes.len().to_string()));
        self.body = Body::Bytes(bytes);
        self
    }

    /// The first value of header `name` (lower case).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}
