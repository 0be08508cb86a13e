//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>` (end-3,
//! end-7, end-9).
//!
//! Manifests are stored byte for byte with the media type they were pushed
//! with (the `content-type` header's essence, else the body's `mediaType`)
//! and served with that type whatever the `Accept` header says: the only
//! conversion registry:2 makes is to Docker schema 1, which Wharf does not
//! support. The four image manifest and index types are checked
//! structurally; any other type (an artifact) need only be a JSON object,
//! and its type must be `application/<subtype>+json` (see
//! [`is_accepted_media_type`]): a manifest is served under its type, and a
//! type a browser renders (`text/html`, `image/svg+xml`) would put stored
//! script on the registry's origin.
//! Referenced blobs need not exist (sparse manifests, OCI 1.1).
//!
//! A manifest with a `subject` is handed to the store with that subject,
//! which lists it among the subject's referrers (see [`crate::referrers`]);
//! the answer then carries `OCI-Subject`, telling the client not to
//! maintain the referrers tag itself.
//!
//! A push sets at most [`MAX_TAGS_PER_PUSH`] tags (400 `TAG_INVALID`
//! beyond). Bodies over [`MAX_MANIFEST_BYTES`] are 413 `SIZE_INVALID` (the spec asks
//! for 413 but names no code); JSON with duplicate keys is refused, since
//! two parsers could read it differently.

use crate::capabilities::{BodyError, Manifest, Readable, Registry, Repository};
use crate::digest::{Algorithm, Digest, DigestError};
use crate::errors::{Code, Error};
use crate::http::{Body, Method, Request, Response};
use crate::names::{Reference, ReferenceError, is_valid_tag};
use crate::query::Query;
use crate::routes::Route;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeSet;

/// Largest manifest accepted: 4 MiB, the size the spec says registries
/// should at least accept.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Most tags one push may set: the reference, if it is a tag, plus every
/// `?tag=`. Each is answered with an `OCI-Tag` header, and wasi-http refuses
/// a response whose headers exceed its field limit; beyond this the push is
/// 400 `TAG_INVALID` before anything is stored.
pub const MAX_TAGS_PER_PUSH: usize = 100;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// One crossing: the host resolves the reference and hands over the
/// manifest's bytes as a stream, which goes to the response unread.
pub fn get<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    // A reference that cannot exist (malformed tag or digest) is as
    // unknown as a missing one.
    let reference =
        Reference::parse(&route.param).map_err(|_| Error::new(Code::ManifestUnknown))?;
    let manifest = repo
        .manifest(&reference)
        .map_err(|e| Error::store(e, Code::ManifestUnknown, Code::ManifestInvalid))?
        .ok_or_else(|| Error::new(Code::ManifestUnknown))?;
    let mut response = Response::new(200)
        .header("docker-content-digest", manifest.digest.to_string())
        .header("etag", format!("\"{}\"", manifest.digest))
        .header("content-type", manifest.media_type)
        .header("content-length", manifest.size.to_string());
    if request.method != Method::Head {
        response.body = Body::Blob(manifest.content);
    }
    Ok(response)
}

pub fn put<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    mut request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let name = route.name.as_str();
    let reference = Reference::parse(&route.param).map_err(|e| match e {
        ReferenceError::Tag(tag) => invalid_tag(&tag),
        ReferenceError::Digest(e) => Error::new(Code::DigestInvalid).detail(e.to_string().into()),
    })?;
    let query = Query::parse(request.query.as_deref());
    let extra_tags: Vec<String> = query.get_all("tag").map(str::to_string).collect();
    let tag_count = extra_tags.len() + usize::from(matches!(reference, Reference::Tag(_)));
    if tag_count > MAX_TAGS_PER_PUSH {
        return Err(Error::new(Code::TagInvalid)
            .message(format!(
                "a push may set at most {MAX_TAGS_PER_PUSH} tags (the reference and ?tag= parameters); this one sets {tag_count}"
            )));
    }
    if let Some(bad) = extra_tags.iter().find(|t| !is_valid_tag(t)) {
        return Err(invalid_tag(bad));
    }
    let declared = request
        .header("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let header_type = request
        .header("content-type")
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
        .filter(|ct| !ct.is_empty());
    let content = request
        .body
        .read_to_end(MAX_MANIFEST_BYTES)
        .map_err(|e| match e {
            BodyError::TooLarge(_) => too_large(),
            BodyError::Io(_) => {
                Error::new(Code::ManifestInvalid).message("reading the manifest failed")
            }
        })?;
    let checked = check(header_type.as_deref(), &content)?;
    let digest = match &reference {
        Reference::Digest(expected) => {
            let actual = expected.algorithm().digest(&content);
            if &actual != expected {
                return Err(Error::new(Code::DigestInvalid)
                    .detail(serde_json::json!({ "expected": expected.to_string(), "actual": actual.to_string() })));
            }
            actual
        }
        Reference::Tag(_) => Algorithm::Sha256.digest(&content),
    };
    // A subject of an algorithm Wharf does not hash with cannot be indexed:
    // without `OCI-Subject` the client maintains the referrers tag, which
    // the referrers API reads too.
    let subject = checked
        .subject
        .as_deref()
        .and_then(|s| Digest::parse(s).ok());
    let manifest = Manifest {
        digest: digest.clone(),
        media_type: checked.media_type,
        content,
        subject: subject.clone(),
    };
    let tags = match &reference {
        Reference::Tag(tag) => std::iter::once(tag)
            .chain(&extra_tags)
            .map(String::as_str)
            .collect::<Vec<_>>(),
        Reference::Digest(_) => extra_tags.iter().map(String::as_str).collect(),
    };
    // Storing never finds nothing; setting a tag does when the manifest was
    // deleted meanwhile: MANIFEST_UNKNOWN, as registry:2 answers.
    repo.put_manifest(&manifest, &tags)
        .map_err(|e| Error::store(e, Code::ManifestUnknown, Code::ManifestInvalid))?;
    let mut response = Response::new(201)
        .header("location", format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header("content-length", "0");
    for tag in &extra_tags {
        response = response.header("oci-tag", tag.as_str());
    }
    if let Some(subject) = subject {
        response = response.header("oci-subject", subject.to_string());
    }
    Ok(response)
}

pub fn delete<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    _request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let to_error = |e| Error::store(e, Code::ManifestUnknown, Code::ManifestInvalid);
    let deleted = match Reference::parse(&route.param) {
        Ok(Reference::Digest(digest)) => repo.delete_manifest(&digest).map_err(to_error)?,
        Ok(Reference::Tag(tag)) => repo.delete_tag(&tag).map_err(to_error)?,
        Err(_) => false,
    };
    if !deleted {
        return Err(Error::new(Code::ManifestUnknown));
    }
    Ok(Response::new(202).header("content-length", "0"))
}

fn invalid_tag(tag: &str) -> Error {
    Error::new(Code::ManifestInvalid)
        .message("invalid tag")
        .detail(serde_json::json!({ "tag": tag }))
}

fn too_large() -> Error {
    Error::new(Code::SizeInvalid)
        .status(413)
        .message(format!("manifest larger than {MAX_MANIFEST_BYTES} bytes"))
}

fn malformed(why: impl Into<String>) -> Error {
    Error::new(Code::ManifestInvalid).detail(Value::String(why.into()))
}

/// What validation learnt about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub media_type: String,
    /// The `subject` descriptor's digest, if there is one.
    pub subject: Option<String>,
}

/// Validate a manifest body against its declared media type.
///
/// One pass over the bytes ([`Doc`]): no tree of JSON values is built, only
/// the fields validation reads are kept, borrowed from `content`.
pub fn check(header_type: Option<&str>, content: &[u8]) -> Result<Checked, Error> {
    let Root(doc) =
        serde_json::from_slice(content).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    let Some(doc) = doc else {
        return Err(malformed("a manifest must be a JSON object"));
    };
    let body_type = match &doc.media_type {
        None => None,
        Some(Scalar::Str(t)) => Some(t.as_ref()),
        Some(_) => return Err(malformed("mediaType must be a string")),
    };
    let media_type = match (header_type, body_type) {
        (Some(header), Some(body)) if header != body => {
            return Err(malformed(format!(
                "mediaType {body:?} does not match content-type {header:?}"
            )));
        }
        (Some(t), _) | (None, Some(t)) => t.to_string(),
        (None, None) => return Err(malformed("no content-type header and no mediaType field")),
    };
    let kind = media_type.to_ascii_lowercase();
    if DOCKER_SCHEMA1.contains(&kind.as_str()) {
        return Err(malformed("Docker schema 1 manifests are not supported"));
    }
    if !is_accepted_media_type(&kind) {
        return Err(Error::new(Code::ManifestInvalid)
            .message(format!(
                "manifest media type not accepted: {ACCEPTED_MEDIA_TYPES}"
            ))
            .detail(serde_json::json!({ "mediaType": media_type })));
    }
    if [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&kind.as_str()) {
        if !matches!(doc.schema_version, Some(Scalar::Unsigned(2))) {
            return Err(malformed("schemaVersion must be 2"));
        }
        if kind == OCI_MANIFEST || kind == DOCKER_MANIFEST {
            descriptor(doc.config, "config")?;
            descriptors(doc.layers, "layers")?;
        } else {
            descriptors(doc.manifests, "manifests")?;
        }
    }
    let subject = match doc.subject {
        None => None,
        Some(s) => Some(descriptor(Some(s), "subject")?.into_owned()),
    };
    Ok(Checked {
        media_type,
        subject,
    })
}

/// What [`is_accepted_media_type`] accepts, as error messages say it.
pub const ACCEPTED_MEDIA_TYPES: &str = "a manifest must be an OCI image manifest or index \
(application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json), \
a Docker image manifest or manifest list (application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json), or an artifact whose type is \
application/<subtype>+json, without parameters";

/// Whether a manifest may be stored, and later served, under `kind` (in
/// lower case): the four image manifest and index types, or an
/// `application/<subtype>+json` type (RFC 6838 restricted-name grammar, RFC
/// 6839 `+json` suffix), such as the OCI artifact manifest. Manifests are
/// served under their type from the registry's origin, so a type a browser
/// renders as a document (`text/html`, `image/svg+xml`,
/// `application/xhtml+xml`) would be stored script; `+json` types are not
/// rendered.
pub fn is_accepted_media_type(kind: &str) -> bool {
    if [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&kind) {
        return true;
    }
    let Some(subtype) = kind.strip_prefix("application/") else {
        return false;
    };
    let first = subtype.bytes().next();
    subtype.len() <= 127
        && first.is_some_and(|b| b.is_ascii_alphanumeric())
        && subtype.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                )
        })
        && subtype.ends_with("+json")
}

fn descriptors(value: Option<Descriptors>, field: &str) -> Result<(), Error> {
    match value {
        Some(Descriptors::Items(Ok(()))) => Ok(()),
        Some(Descriptors::Items(Err(what))) => Err(malformed(format!("{field}: {what}"))),
        None | Some(Descriptors::NotArray) => Err(malformed(format!(
            "{field} must be an array of descriptors"
        ))),
    }
}

/// A checked descriptor's digest. Well-formed digests of algorithms Wharf
/// does not hash with are accepted: they only point.
fn descriptor<'a>(value: Option<Descriptor<'a>>, field: &str) -> Result<Cow<'a, str>, Error> {
    value
        .map_or(Err(NOT_A_DESCRIPTOR), |Descriptor(d)| d)
        .map_err(|what| malformed(format!("{field}: {what}")))
}

// The one pass over a manifest. Every visitor below accepts any JSON value
// (what it does not expect it records as such and skips), refuses objects
// with duplicate keys at any depth, since two parsers could read them
// differently, and nests through serde_json's own `deserialize_any`, whose
// recursion limit turns deep nesting into an error. Strings are borrowed
// from the body unless they hold escapes.

const NOT_A_DESCRIPTOR: &str = "must be a descriptor object";

/// The document: the top-level fields validation reads, or `None` when it
/// is not an object.
struct Root<'a>(Option<Doc<'a>>);

#[derive(Default)]
struct Doc<'a> {
    media_type: Option<Scalar<'a>>,
    schema_version: Option<Scalar<'a>>,
    config: Option<Descriptor<'a>>,
    layers: Option<Descriptors>,
    manifests: Option<Descriptors>,
    subject: Option<Descriptor<'a>>,
}

/// A value where a string or a count is expected.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Unsigned(u64),
    Other,
}

/// A descriptor, checked where it is read: its digest, or what is wrong.
struct Descriptor<'a>(Result<Cow<'a, str>, &'static str>);

/// An array of descriptors, checked where it is read: the first problem.
enum Descriptors {
    NotArray,
    Items(Result<(), &'static str>),
}

/// Any value, checked for duplicate keys and dropped.
struct Skip;

/// An object key.
struct Key<'a>(Cow<'a, str>);

/// The keys of the object being read, to refuse duplicates.
#[derive(Default)]
struct Keys<'a>(BTreeSet<Cow<'a, str>>);

impl<'a> Keys<'a> {
    fn next<A: MapAccess<'a>>(&mut self, map: &mut A) -> Result<Option<Cow<'a, str>>, A::Error> {
        let Some(Key(key)) = map.next_key()? else {
            return Ok(None);
        };
        if !self.0.insert(key.clone()) {
            return Err(de::Error::custom(format!("duplicate key {key:?}")));
        }
        Ok(Some(key))
    }
}

fn skip_seq<'a, S: SeqAccess<'a>>(mut seq: S) -> Result<(), S::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

fn skip_map<'a, A: MapAccess<'a>>(mut map: A) -> Result<(), A::Error> {
    let mut keys = Keys::default();
    while keys.next(&mut map)?.is_some() {
        map.next_value::<Skip>()?;
    }
    Ok(())
}

/// The visitor methods for the scalars a visitor does not expect: each
/// answers `$other`.
macro_rules! other_scalars {
    ($value:ty, $other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_str<E>(self, _: &str) -> Result<$value, E> {
            Ok($other)
        }
        fn visit_unit<E>(self) -> Result<$value, E> {
            Ok($other)
        }
    };
}

/// `Deserialize` through `deserialize_any` with the visitor `$visitor`.
macro_rules! deserialize_any_with {
    ($target:ident, $visitor:ident) => {
        impl<'de> Deserialize<'de> for $target<'de> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any($visitor)
            }
        }
    };
}

struct RootVisitor;
deserialize_any_with!(Root, RootVisitor);

impl<'de> Visitor<'de> for RootVisitor {
    type Value = Root<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    other_scalars!(Root<'de>, Root(None));

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Self::Value, S::Error> {
        skip_seq(seq).map(|()| Root(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut doc = Doc::default();
        let mut keys = Keys::default();
        while let Some(key) = keys.next(&mut map)? {
            match key.as_ref() {
                "mediaType" => doc.media_type = Some(map.next_value()?),
                "schemaVersion" => doc.schema_version = Some(map.next_value()?),
                "config" => doc.config = Some(map.next_value()?),
                "layers" => doc.layers = Some(map.next_value()?),
                "manifests" => doc.manifests = Some(map.next_value()?),
                "subject" => doc.subject = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Root(Some(doc)))
    }
}

struct ScalarVisitor;
deserialize_any_with!(Scalar, ScalarVisitor);

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Scalar::Other, Scalar::Unsigned))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Unsigned(v))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Self::Value, S::Error> {
        skip_seq(seq).map(|()| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Scalar::Other)
    }
}

struct DescriptorVisitor;
deserialize_any_with!(Descriptor, DescriptorVisitor);

impl<'de> Visitor<'de> for DescriptorVisitor {
    type Value = Descriptor<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    other_scalars!(Descriptor<'de>, Descriptor(Err(NOT_A_DESCRIPTOR)));

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Self::Value, S::Error> {
        skip_seq(seq).map(|()| Descriptor(Err(NOT_A_DESCRIPTOR)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut media_type, mut size, mut digest) = (None, None, None);
        let mut keys = Keys::default();
        while let Some(key) = keys.next(&mut map)? {
            match key.as_ref() {
                "mediaType" => media_type = Some(map.next_value()?),
                "size" => size = Some(map.next_value()?),
                "digest" => digest = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let checked = if !matches!(media_type, Some(Scalar::Str(_))) {
            Err("descriptor mediaType must be a string")
        } else if !matches!(size, Some(Scalar::Unsigned(_))) {
            Err("descriptor size must be a non-negative integer")
        } else if let Some(Scalar::Str(digest)) = digest {
            match Digest::parse(&digest) {
                Ok(_) | Err(DigestError::Unsupported(_)) => Ok(digest),
                Err(DigestError::Invalid(_)) => Err("descriptor digest is malformed"),
            }
        } else {
            Err("descriptor digest must be a string")
        };
        Ok(Descriptor(checked))
    }
}

struct DescriptorsVisitor;

impl<'de> Deserialize<'de> for Descriptors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DescriptorsVisitor)
    }
}

impl<'de> Visitor<'de> for DescriptorsVisitor {
    type Value = Descriptors;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    other_scalars!(Descriptors, Descriptors::NotArray);

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut first = Ok(());
        while let Some(Descriptor(d)) = seq.next_element()? {
            if let (Ok(()), Err(what)) = (first, d) {
                first = Err(what);
            }
        }
        Ok(Descriptors::Items(first))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Descriptors::NotArray)
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    other_scalars!(Skip, Skip);

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Skip, S::Error> {
        skip_seq(seq).map(|()| Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Skip, A::Error> {
        skip_map(map).map(|()| Skip)
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Body;
    use crate::memory::{AllowAll, Store};
    use crate::testing::{Registry, bytes, code, header, location};

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(media_type: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{EMPTY}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{EMPTY}","size":0}}]}}"#
        )
        .into_bytes()
    }

    fn index(media_type: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{EMPTY}","size":7,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn each_image_media_type_round_trips_by_tag_and_digest() {
        // end-7 then end-3: push by tag, pull by tag and by digest.
        let registry = Registry::new();
        for (media_type, body) in [
            (OCI_MANIFEST, image(OCI_MANIFEST)),
            (DOCKER_MANIFEST, image(DOCKER_MANIFEST)),
            (OCI_INDEX, index(OCI_INDEX)),
            (DOCKER_LIST, index(DOCKER_LIST)),
        ] {
            let digest = Algorithm::Sha256.digest(&body);
            let response = registry.put_manifest("a/b", "v1", media_type, &body);
            assert_eq!(
                response.status,
                201,
                "{media_type}: {}",
                crate::testing::text(&response)
            );
            assert_eq!(location(&response), format!("/v2/a/b/manifests/{digest}"));
            assert_eq!(
                header(&response, "docker-content-digest"),
                Some(digest.to_string().as_str())
            );
            for reference in ["v1".to_string(), digest.to_string()] {
                let get = registry.get(&format!("/v2/a/b/manifests/{reference}"));
                assert_eq!(get.status, 200);
                assert_eq!(bytes(&get), body);
                assert_eq!(header(&get, "content-type"), Some(media_type));
                assert_eq!(
                    header(&get, "docker-content-digest"),
                    Some(digest.to_string().as_str())
                );
                assert_eq!(
                    header(&get, "content-length"),
                    Some(body.len().to_string().as_str())
                );
            }
        }
    }

    #[test]
    fn push_by_digest_verifies_the_digest() {
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let digest = Algorithm::Sha256.digest(&body);
        assert_eq!(
            registry
                .put_manifest("a", &digest.to_string(), OCI_MANIFEST, &body)
                .status,
            201
        );
        let sha512 = Algorithm::Sha512.digest(&body);
        let response = registry.put_manifest("a", &sha512.to_string(), OCI_MANIFEST, &body);
        assert_eq!(response.status, 201);
        assert_eq!(
            header(&response, "docker-content-digest"),
            Some(sha512.to_string().as_str())
        );
        let wrong = Algorithm::Sha256.digest(b"other");
        let response = registry.put_manifest("a", &wrong.to_string(), OCI_MANIFEST, &body);
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "DIGEST_INVALID")
        );
        assert_eq!(
            registry.get(&format!("/v2/a/manifests/{wrong}")).status,
            404
        );
    }

    #[test]
    fn head_gives_the_headers_without_the_body() {
        // end-3: HEAD to check existence.
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        registry.put_manifest("a", "latest", OCI_MANIFEST, &body);
        let head = registry.head("/v2/a/manifests/latest");
        assert_eq!(head.status, 200);
        assert!(matches!(head.body, Body::Empty));
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(header(&head, "content-type"), Some(OCI_MANIFEST));
        let digest = Algorithm::Sha256.digest(&body).to_string();
        assert_eq!(
            header(&head, "docker-content-digest"),
            Some(digest.as_str())
        );
        assert_eq!(
            header(&head, "etag"),
            Some(format!("\"{digest}\"").as_str())
        );
    }

    #[test]
    fn unknown_manifests_are_404_manifest_unknown() {
        let registry = Registry::new();
        for reference in ["latest", EMPTY, "-bad-tag", "sha256:short"] {
            let response = registry.get(&format!("/v2/a/manifests/{reference}"));
            assert_eq!(
                (response.status, code(&response).as_str()),
                (404, "MANIFEST_UNKNOWN"),
                "{reference}"
            );
        }
    }

    #[test]
    fn custom_fields_are_preserved_byte_for_byte() {
        let registry = Registry::new();
        let body = format!(
            "{{\n  \"schemaVersion\": 2, \"x-custom\": {{\"z\": 1, \"a\": [1.50, \"\\u00e9\"]}},\n  \"config\": {{\"mediaType\": \"a/b\", \"digest\": \"{EMPTY}\", \"size\": 0}}, \"layers\": [] }}\n"
        );
        assert_eq!(
            registry
                .put_manifest("a", "t", OCI_MANIFEST, body.as_bytes())
                .status,
            201
        );
        assert_eq!(bytes(&registry.get("/v2/a/manifests/t")), body.as_bytes());
    }

    #[test]
    fn artifacts_of_other_media_types_only_need_to_be_json_objects() {
        let registry = Registry::new();
        let response = registry.put_manifest(
            "a",
            "art",
            "application/vnd.example.thing+json",
            br#"{"anything":true}"#,
        );
        assert_eq!(response.status, 201);
        let response =
            registry.put_manifest("a", "art", "application/vnd.example.thing+json", b"[1]");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "MANIFEST_INVALID")
        );
    }

    #[test]
    fn media_type_defaults_to_the_body_field() {
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let response = registry.send(Method::Put, "/v2/a/manifests/t", &[], &body);
        assert_eq!(response.status, 201);
        assert_eq!(
            header(&registry.get("/v2/a/manifests/t"), "content-type"),
            Some(OCI_MANIFEST)
        );
        let params = format!("{OCI_MANIFEST}; charset=utf-8");
        assert_eq!(registry.put_manifest("a", "u", &params, &body).status, 201);
    }

    #[test]
    fn invalid_manifests_are_manifest_invalid() {
        let registry = Registry::new();
        let no_config = r#"{"schemaVersion":2,"layers":[]}"#.to_string();
        let bad_version = String::from_utf8(image(OCI_MANIFEST))
            .unwrap()
            .replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        let no_manifests = r#"{"schemaVersion":2}"#.to_string();
        for (media_type, body) in [
            (OCI_MANIFEST, "not json".to_string()),
            (OCI_MANIFEST, "{\"schemaVersion\":2,".to_string()),
            (OCI_MANIFEST, no_config.clone()),
            (DOCKER_MANIFEST, no_config),
            (OCI_MANIFEST, bad_version),
            (OCI_INDEX, no_manifests.clone()),
            (DOCKER_LIST, no_manifests),
            (OCI_INDEX, String::from_utf8(image(OCI_MANIFEST)).unwrap()),
            (OCI_MANIFEST, r#"{"a":1,"a":1}"#.to_string()),
        ] {
            let response = registry.put_manifest("a", "t", media_type, body.as_bytes());
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "MANIFEST_INVALID"),
                "{body}"
            );
        }
        let response = registry.send(Method::Put, "/v2/a/manifests/t", &[], b"{}");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (400, "MANIFEST_INVALID")
        );
        assert_eq!(registry.get("/v2/a/manifests/t").status, 404);
    }

    #[test]
    fn oversize_manifests_are_413() {
        let registry = Registry::new();
        let mut body = br#"{"pad":""#.to_vec();
        body.resize(MAX_MANIFEST_BYTES + 1, b' ');
        let response = registry.put_manifest("a", "t", "application/vnd.example+json", &body);
        assert_eq!(
            (response.status, code(&response).as_str()),
            (413, "SIZE_INVALID")
        );
        let response = registry.send(
            Method::Put,
            "/v2/a/manifests/t",
            &[("content-type", OCI_MANIFEST), ("content-length", "")],
            &body,
        );
        assert_eq!(response.status, 413);
    }

    #[test]
    fn invalid_tags_on_push_are_refused() {
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let long = "a".repeat(129);
        for target in [
            format!("/v2/a/manifests/{long}"),
            "/v2/a/manifests/.x".into(),
            "/v2/a/manifests/t?tag=-x".into(),
        ] {
            let response = registry.send(
                Method::Put,
                &target,
                &[("content-type", OCI_MANIFEST)],
                &body,
            );
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "MANIFEST_INVALID"),
                "{target}"
            );
        }
        assert_eq!(registry.get("/v2/a/manifests/t").status, 404);
    }

    #[test]
    fn push_by_digest_with_tag_parameters_sets_every_tag() {
        // OCI 1.1+: PUT by digest with ?tag= answers one OCI-Tag per tag.
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let digest = Algorithm::Sha256.digest(&body);
        let response = registry.send(
            Method::Put,
            &format!("/v2/a/manifests/{digest}?tag=v1&tag=v1.0&tag=latest"),
            &[("content-type", OCI_MANIFEST)],
            &body,
        );
        assert_eq!(response.status, 201);
        let tags: Vec<&str> = response
            .headers
            .iter()
            .filter(|(n, _)| n == "oci-tag")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(tags, ["v1", "v1.0", "latest"]);
        for tag in tags {
            let get = registry.get(&format!("/v2/a/manifests/{tag}"));
            assert_eq!(
                header(&get, "docker-content-digest"),
                Some(digest.to_string().as_str())
            );
        }
    }

    #[test]
    fn a_push_sets_at_most_max_tags_per_push_tags() {
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let digest = Algorithm::Sha256.digest(&body);
        let query = |n: usize| {
            (0..n)
                .map(|i| format!("tag=t{i}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let put = |reference: &str, n: usize| {
            registry.send(
                Method::Put,
                &format!("/v2/a/manifests/{reference}?{}", query(n)),
                &[("content-type", OCI_MANIFEST)],
                &body,
            )
        };
        // The reference tag counts: one over the limit either way.
        for response in [
            put(&digest.to_string(), MAX_TAGS_PER_PUSH + 1),
            put("ref", MAX_TAGS_PER_PUSH),
            put("ref", 5_000),
        ] {
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "TAG_INVALID")
            );
            assert!(crate::testing::text(&response).contains(&MAX_TAGS_PER_PUSH.to_string()));
        }
        // Nothing was stored: no manifest, no tag.
        assert_eq!(
            registry.get(&format!("/v2/a/manifests/{digest}")).status,
            404
        );
        for tag in ["ref", "t0", "t99"] {
            assert_eq!(registry.get(&format!("/v2/a/manifests/{tag}")).status, 404);
        }
        // At the limit, every tag is set and answered.
        let response = put("ref", MAX_TAGS_PER_PUSH - 1);
        assert_eq!(response.status, 201);
        let answered = response
            .headers
            .iter()
            .filter(|(n, _)| n == "oci-tag")
            .count();
        assert_eq!(answered, MAX_TAGS_PER_PUSH - 1);
        let response = put(&digest.to_string(), MAX_TAGS_PER_PUSH);
        assert_eq!(response.status, 201);
        let last = format!("/v2/a/manifests/t{}", MAX_TAGS_PER_PUSH - 1);
        assert_eq!(registry.get(&last).status, 200);
    }

    #[test]
    fn subject_is_reported_in_oci_subject() {
        // OCI 1.1: a manifest with a subject answers OCI-Subject.
        let registry = Registry::new();
        let subject = Algorithm::Sha256.digest(b"subject");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{EMPTY}","size":0}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":10}}}}"#
        );
        let response = registry.put_manifest(
            "a",
            &Algorithm::Sha256.digest(body.as_bytes()).to_string(),
            OCI_MANIFEST,
            body.as_bytes(),
        );
        assert_eq!(response.status, 201);
        assert_eq!(
            header(&response, "oci-subject"),
            Some(subject.to_string().as_str())
        );
        let bad = body.replace(&subject.to_string(), "sha256:nope");
        assert_eq!(
            registry
                .put_manifest("a", "sig", OCI_MANIFEST, bad.as_bytes())
                .status,
            400
        );
    }

    #[test]
    fn delete_by_digest_removes_the_manifest_and_its_tags() {
        // end-9: 202, then 404.
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let digest = Algorithm::Sha256.digest(&body);
        registry.put_manifest("a", "latest", OCI_MANIFEST, &body);
        assert_eq!(
            registry.delete(&format!("/v2/a/manifests/{digest}")).status,
            202
        );
        assert_eq!(
            registry.get(&format!("/v2/a/manifests/{digest}")).status,
            404
        );
        assert_eq!(registry.get("/v2/a/manifests/latest").status, 404);
        let again = registry.delete(&format!("/v2/a/manifests/{digest}"));
        assert_eq!(
            (again.status, code(&again).as_str()),
            (404, "MANIFEST_UNKNOWN")
        );
    }

    #[test]
    fn delete_by_tag_removes_only_the_tag() {
        // Deleting tags: 202, the manifest stays.
        let registry = Registry::new();
        let body = image(OCI_MANIFEST);
        let digest = Algorithm::Sha256.digest(&body);
        registry.put_manifest("a", "latest", OCI_MANIFEST, &body);
        assert_eq!(registry.delete("/v2/a/manifests/latest").status, 202);
        assert_eq!(registry.get("/v2/a/manifests/latest").status, 404);
        assert_eq!(
            registry.get(&format!("/v2/a/manifests/{digest}")).status,
            200
        );
        assert_eq!(registry.delete("/v2/a/manifests/latest").status, 404);
    }

    #[test]
    fn delete_when_deletion_is_disabled_is_405() {
        // end-9: "the registry MUST respond with either a 400 Bad Request or a 405".
        let registry = Registry::with_auth(Store::without_deletes(), AllowAll);
        registry.put_manifest("a", "latest", OCI_MANIFEST, &image(OCI_MANIFEST));
        let response = registry.delete("/v2/a/manifests/latest");
        assert_eq!(
            (response.status, code(&response).as_str()),
            (405, "UNSUPPORTED")
        );
        assert_eq!(registry.get("/v2/a/manifests/latest").status, 200);
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let t = Some("application/vnd.example+json");
        assert!(check(t, br#"{"a":1,"a":2}"#).is_err());
        assert!(check(t, br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(check(t, br#"{"a":[{"b":1},{"b":1}]}"#).is_ok());
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check(Some("application/vnd.example+json"), deep.as_bytes()).is_err());
    }

    #[test]
    fn media_type_comes_from_header_or_body_and_must_agree() {
        let (a, c) = ("application/vnd.a+json", "application/vnd.c+json");
        let body = br#"{"mediaType":"application/vnd.a+json"}"#;
        assert_eq!(check(None, body).unwrap().media_type, a);
        assert_eq!(check(Some(a), body).unwrap().media_type, a);
        assert!(check(Some(c), body).is_err());
        assert!(check(None, b"{}").is_err());
        assert!(check(Some(a), br#"{"mediaType":7}"#).is_err());
    }

    #[test]
    fn descriptors_need_media_type_digest_and_size() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let manifest = |config: &str| {
            format!(r#"{{"schemaVersion":2,"config":{config},"layers":[]}}"#).into_bytes()
        };
        let good = format!(r#"{{"mediaType":"a/b","digest":"{d}","size":0}}"#);
        assert!(check(Some(OCI_MANIFEST), &manifest(&good)).is_ok());
        for bad in [
            format!(r#"{{"digest":"{d}","size":0}}"#),
            format!(r#"{{"mediaType":"a/b","digest":"{d}","size":-1}}"#),
            format!(r#"{{"mediaType":"a/b","digest":"{d}","size":1.5}}"#),
            r#"{"mediaType":"a/b","digest":"sha256:xyz","size":0}"#.to_string(),
            r#"{"mediaType":"a/b","size":0}"#.to_string(),
            "[]".to_string(),
        ] {
            assert!(check(Some(OCI_MANIFEST), &manifest(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_types_must_be_application_json_suffix_types() {
        for accepted in [
            "application/vnd.oci.artifact.manifest.v1+json",
            "application/vnd.example.thing.v1+json",
            "application/vnd.cncf.helm.config.v1+json",
            "Application/VND.Example+JSON",
            "application/x_y-z!#$&^.a+b+json",
        ] {
            assert!(check(Some(accepted), b"{}").is_ok(), "{accepted}");
        }
    }

    #[test]
    fn types_browsers_render_are_refused() {
        // Served back under their type, these would be script on the
        // registry's origin.
        let registry = Registry::new();
        for refused in [
            "text/html",
            "text/plain",
            "text/xml",
            "image/svg+xml",
            "application/xml",
            "application/xhtml+xml",
            "application/javascript",
            "application/json",
            "application/pdf",
            "application/octet-stream",
            "multipart/x-mixed-replace",
        ] {
            let response = registry.put_manifest("a", "t", refused, br#"{"a":1}"#);
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "MANIFEST_INVALID"),
                "{refused}"
            );
            assert!(
                crate::testing::text(&response).contains("application/<subtype>+json"),
                "{refused}: {}",
                crate::testing::text(&response)
            );
        }
        assert_eq!(registry.get("/v2/a/manifests/t").status, 404);
    }

    #[test]
    fn malformed_media_types_are_refused() {
        // RFC 6838: a subtype has at most 127 characters.
        let subtype = |n: usize| format!("application/{}+json", "a".repeat(n - 5));
        assert!(check(Some(&subtype(127)), b"{}").is_ok());
        assert!(check(Some(&subtype(128)), b"{}").is_err());
        for refused in [
            "application",
            "application/",
            "application/+json",
            "application/.x+json",
            "/x+json",
            "x+json",
            "application/x+json/y",
            "application/x json+json",
            "application/x+json\\r\\nx-injected: 1",
            "application/x+json; charset=utf-8",
            "application/\\u00e9+json",
            "application/x+json ",
            "*/*",
            "application/*",
        ] {
            // From the body's mediaType, where nothing strips parameters.
            let body = format!(r#"{{"mediaType":"{refused}"}}"#);
            assert!(check(None, body.as_bytes()).is_err(), "{refused}");
        }
        for refused in ["application", "application/+json", "a/b", "x/y+json"] {
            assert!(check(Some(refused), b"{}").is_err(), "{refused}");
        }
    }

    #[test]
    fn content_type_parameters_are_dropped_not_stored() {
        let registry = Registry::new();
        let t = "application/vnd.example+json";
        let response = registry.put_manifest("a", "t", &format!("{t}; charset=utf-8"), b"{}");
        assert_eq!(response.status, 201);
        assert_eq!(
            header(&registry.get("/v2/a/manifests/t"), "content-type"),
            Some(t)
        );
    }

    #[test]
    fn schema1_is_refused() {
        assert!(check(Some(DOCKER_SCHEMA1[0]), br#"{"schemaVersion":1}"#).is_err());
    }
}
