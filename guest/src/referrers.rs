//! `GET /v2/<name>/referrers/<digest>` (end-12a, end-12b): the manifests of
//! a repository whose `subject` is `<digest>`, as an OCI image index of
//! descriptors.
//!
//! The list has two sources, merged in lexical order of digest:
//!
//! - the store's index ([`Metadata::list_referrers`]), kept by every
//!   manifest push and delete (see [`crate::manifests`]);
//! - the image index tagged with the referrers tag schema
//!   (`<alg>-<encoded>`, see [`referrers_tag`]), which clients maintain for
//!   registries without this API. The spec's upgrade procedure requires
//!   its entries to be listed too: they are how a data directory written by
//!   registry:2, or a subject of an algorithm Wharf does not hash with,
//!   gets its referrers.
//!
//! Each entry is checked against the manifest itself: it must still be in
//! the repository and name the subject, so a stale index entry (a manifest
//! deleted by another registry sharing the directory) or a stale tag
//! listing is never served.
//!
//! A well-formed digest never gets a 404, whatever the repository holds: no
//! referrers is an empty index. A malformed digest is 400 `DIGEST_INVALID`.
//! `?artifactType=` filters (any of several values) and answers
//! `OCI-Filters-Applied: artifactType`. Pages hold up to
//! [`MAX_REFERRERS`] descriptors and never exceed [`MAX_MANIFEST_BYTES`];
//! when more follow, `Link: <…?last=<digest>&n=<n>>; rel="next"` points at
//! the rest (`n` and `last` are accepted as for tags).

use crate::capabilities::{Page, Readable, Registry, Repository, StoredManifest};
use crate::digest::{Digest, DigestError};
use crate::errors::{Code, Error};
use crate::http::{Request, Response};
use crate::manifests::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::names::Reference;
use crate::paging::Paging;
use crate::query::Query;
use crate::routes::Route;
use serde::Serialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Most descriptors one response carries.
pub const MAX_REFERRERS: u32 = 1_000;

/// One entry of the referrers index.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
}

pub fn list<R: Registry>(
    _registry: &R,
    repo: &R::Repository,
    route: &Route,
    request: Request<R::Body>,
) -> Result<Response<R::Reader>, Error> {
    let subject = route.param.as_str();
    // A well-formed digest of an algorithm Wharf does not hash with is
    // still a valid subject: only the referrers tag can list its referrers.
    let indexed = match Digest::parse(subject) {
        Ok(digest) => Some(digest),
        Err(DigestError::Unsupported(_)) => None,
        Err(e @ DigestError::Invalid(_)) => {
            return Err(Error::new(Code::DigestInvalid)
                .message("invalid digest")
                .detail(e.to_string().into()));
        }
    };
    let query = Query::parse(request.query.as_deref());
    let mut paging = Paging::from_query(&query)?;
    paging.n = paging.n.min(MAX_REFERRERS);
    let filters: Vec<&str> = query
        .get_all("artifactType")
        .filter(|t| !t.is_empty())
        .collect();
    let name = route.name.as_str();
    let to_error = |e| Error::store(e, Code::ManifestUnknown, Code::DigestInvalid);

    let tagged = tagged_referrers::<R>(repo, subject)?;
    let (entries, mut more) = paging
        .collect(|after, limit| {
            let stored = match &indexed {
                Some(digest) => repo
                    .list_referrers(digest, after, limit)
                    .map_err(to_error)?,
                None => Page::default(),
            };
            Ok(Some(merge(stored, &tagged, after, limit)))
        })?
        .unwrap_or_default();

    let mut descriptors = Vec::new();
    let mut budget = MAX_MANIFEST_BYTES.saturating_sub(256);
    let mut last_considered = None;
    for entry in &entries {
        let Some(descriptor) = describe::<R>(repo, entry, subject)? else {
            last_considered = Some(entry);
            continue;
        };
        if !filters.is_empty()
            && !descriptor
                .artifact_type
                .as_deref()
                .is_some_and(|t| filters.contains(&t))
        {
            last_considered = Some(entry);
            continue;
        }
        let size = serde_json::to_vec(&descriptor).map_or(0, |b| b.len()) + 1;
        if size > budget && !descriptors.is_empty() {
            more = true;
            break;
        }
        budget = budget.saturating_sub(size);
        descriptors.push(descriptor);
        last_considered = Some(entry);
    }

    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    let mut response = Response::new(200);
    if !filters.is_empty() {
        response = response.header("oci-filters-applied", "artifactType");
    }
    if let (true, Some(last)) = (more, last_considered) {
        let mut link = format!("/v2/{name}/referrers/{subject}?last={last}&n={}", paging.n);
        for filter in &filters {
            link.push_str("&artifactType=");
            link.push_str(&encode(filter));
        }
        response = response.header("link", format!("<{link}>; rel=\"next\""));
    }
    Ok(response.bytes(OCI_INDEX, body.to_string().into_bytes()))
}

/// The referrers tag of a digest (spec: Referrers Tag Schema): the
/// algorithm truncated to 32 characters, `-`, the encoded part truncated to
/// 64, with every character a tag may not hold replaced by `-`.
pub fn referrers_tag(digest: &str) -> String {
    let (algorithm, encoded) = digest.split_once(':').unwrap_or((digest, ""));
    let algorithm: String = algorithm.chars().take(32).collect();
    let encoded: String = encoded.chars().take(64).collect();
    format!("{algorithm}-{encoded}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The digests listed by the index under the subject's referrers tag,
/// sorted; empty when there is no such tag or it is not an index.
fn tagged_referrers<R: Registry>(
    repo: &R::Repository,
    subject: &str,
) -> Result<Vec<String>, Error> {
    let tag = referrers_tag(subject);
    if !crate::names::is_valid_tag(&tag) {
        return Ok(Vec::new());
    }
    let to_error = |e| Error::store(e, Code::ManifestUnknown, Code::ManifestInvalid);
    let Some(index) = read_manifest::<R>(repo, &Reference::Tag(tag)).map_err(to_error)? else {
        return Ok(Vec::new());
    };
    let Some(doc) = top_level_fields(&index.1, &["manifests"]) else {
        return Ok(Vec::new());
    };
    let mut digests: Vec<String> = match doc.get("manifests") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|d| d.get("digest")?.as_str())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    digests.sort();
    digests.dedup();
    Ok(digests)
}

/// A manifest's digest, type and size, and its bytes.
type ReadManifest = (StoredManifest<()>, Vec<u8>);

/// A manifest and its bytes, read into memory: a referrer must be parsed
/// to be described. A stored manifest is never larger than
/// [`MAX_MANIFEST_BYTES`]; one that reads as larger is skipped like a
/// missing one.
fn read_manifest<R: Registry>(
    repo: &R::Repository,
    reference: &Reference,
) -> Result<Option<ReadManifest>, crate::capabilities::StoreError> {
    let Some(mut manifest) = repo.manifest(reference)? else {
        return Ok(None);
    };
    let Ok(content) = manifest.content.read_to_end(MAX_MANIFEST_BYTES) else {
        return Ok(None);
    };
    let head = StoredManifest {
        digest: manifest.digest,
        media_type: manifest.media_type,
        size: manifest.size,
        content: (),
    };
    Ok(Some((head, content)))
}

/// One page of the store's index merged with the tag-listed digests: the
/// tagged digests after `after` (and, when the store has more, not beyond
/// its last entry, which the next page starts after), sorted, deduplicated
/// and cut to `limit`.
fn merge(stored: Page, tagged: &[String], after: Option<&str>, limit: u32) -> Page {
    let bound = if stored.more {
        stored.entries.last().cloned()
    } else {
        None
    };
    let mut entries = stored.entries;
    entries.extend(
        tagged
            .iter()
            .filter(|t| after.is_none_or(|a| t.as_str() > a))
            .filter(|t| bound.as_deref().is_none_or(|b| t.as_str() <= b))
            .cloned(),
    );
    entries.sort();
    entries.dedup();
    let limit = limit as usize;
    let cut = entries.len() > limit;
    entries.truncate(limit);
    Page {
        entries,
        more: stored.more || cut,
    }
}

/// The descriptor of referrer `digest`, if it is a manifest of `name` whose
/// `subject` names `subject`.
fn describe<R: Registry>(
    repo: &R::Repository,
    digest: &str,
    subject: &str,
) -> Result<Option<Descriptor>, Error> {
    let Ok(digest) = Digest::parse(digest) else {
        return Ok(None);
    };
    let Some((manifest, content)) = read_manifest::<R>(repo, &Reference::Digest(digest))
        .map_err(|e| Error::store(e, Code::ManifestUnknown, Code::ManifestInvalid))?
    else {
        return Ok(None);
    };
    let Some(doc) = top_level_fields(
        &content,
        &["subject", "artifactType", "config", "annotations"],
    ) else {
        return Ok(None);
    };
    let names_subject = doc
        .get("subject")
        .and_then(|s| s.get("digest"))
        .and_then(Value::as_str)
        == Some(subject);
    if !names_subject {
        return Ok(None);
    }
    Ok(Some(Descriptor {
        media_type: manifest.media_type,
        digest: manifest.digest.to_string(),
        size: manifest.size,
        artifact_type: artifact_type(&doc),
        annotations: match doc.get("annotations") {
            Some(Value::Object(a)) => Some(a.clone()),
            _ => None,
        },
    }))
}

/// The top-level fields `wanted` of a JSON object, as values; every other
/// field (`layers`, `manifests`: most of a manifest's bytes) is skipped
/// without being built. `None` unless `content` is a JSON object. As with a
/// whole `Value`, a repeated key's last value wins.
fn top_level_fields(content: &[u8], wanted: &'static [&'static str]) -> Option<Map<String, Value>> {
    let mut deserializer = serde_json::Deserializer::from_slice(content);
    let fields = Fields(wanted).deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(fields)
}

struct Fields(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Fields {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.0.contains(&key.as_str()) {
                fields.insert(key, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(fields)
    }
}

/// The manifest's `artifactType`, else (for an image manifest) its config's
/// `mediaType`; none for an index without one.
fn artifact_type(doc: &Map<String, Value>) -> Option<String> {
    let non_empty = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    non_empty(doc.get("artifactType"))
        .or_else(|| non_empty(doc.get("config").and_then(|c| c.get("mediaType"))))
}

/// Percent-encode a query value: everything but RFC 3986 unreserved bytes.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wanted_top_level_fields_are_read() {
        let doc =
            br#"{"layers":[{"a":1}],"subject":{"digest":"d"},"subject":{"digest":"e"},"x":1}"#;
        let fields = top_level_fields(doc, &["subject", "config"]).unwrap();
        assert_eq!(
            Value::Object(fields),
            serde_json::json!({"subject": {"digest": "e"}})
        );
        for not_an_object in [&b"[1]"[..], b"\"s\"", b"{", b"{} x", b""] {
            assert!(top_level_fields(not_an_object, &["subject"]).is_none());
        }
    }
    use crate::digest::Algorithm;
    use crate::manifests::OCI_MANIFEST;
    use crate::memory::{AllowAll, Store};
    use crate::testing::{Registry, code, header, json};

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{EMPTY}","size":0}},"layers":[]{extra}}}"#
        )
    }

    fn artifact(subject: &Digest, artifact_type: Option<&str>, note: &str) -> String {
        let at = artifact_type
            .map(|t| format!(r#","artifactType":"{t}""#))
            .unwrap_or_default();
        image(&format!(
            r#"{at},"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}},"annotations":{{"note":"{note}"}}"#
        ))
    }

    /// Push by digest; returns the digest.
    fn push(registry: &Registry, name: &str, body: &str) -> Digest {
        let digest = Algorithm::Sha256.digest(body.as_bytes());
        let response =
            registry.put_manifest(name, &digest.to_string(), OCI_MANIFEST, body.as_bytes());
        assert_eq!(response.status, 201, "{}", crate::testing::text(&response));
        digest
    }

    fn listed(response: &Response<Vec<u8>>) -> Vec<String> {
        json(response)["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn lists_referrers_with_artifact_type_and_annotations() {
        let registry = Registry::new();
        let subject = push(&registry, "a", &image(""));
        let sig = push(
            &registry,
            "a",
            &artifact(&subject, Some("application/x.sig"), "s"),
        );
        let sbom = push(&registry, "a", &artifact(&subject, None, "b"));
        let response = registry.get(&format!("/v2/a/referrers/{subject}"));
        assert_eq!(response.status, 200);
        assert_eq!(header(&response, "content-type"), Some(OCI_INDEX));
        let body = json(&response);
        assert_eq!(body["schemaVersion"], 2);
        assert_eq!(body["mediaType"], OCI_INDEX);
        let mut want = vec![sig.to_string(), sbom.to_string()];
        want.sort();
        assert_eq!(listed(&response), want);
        for d in body["manifests"].as_array().unwrap() {
            let (at, note) = if d["digest"] == sig.to_string() {
                ("application/x.sig", "s")
            } else {
                ("application/vnd.oci.image.config.v1+json", "b")
            };
            assert_eq!(d["artifactType"], at);
            assert_eq!(d["annotations"]["note"], note);
            assert_eq!(d["mediaType"], OCI_MANIFEST);
            assert!(d["size"].as_u64().unwrap() > 0);
        }
    }

    #[test]
    fn no_referrers_is_an_empty_index_never_404() {
        let registry = Registry::new();
        for path in [
            format!("/v2/nothing/here/referrers/{EMPTY}"),
            format!("/v2/a/referrers/sha384:{}", "a".repeat(96)),
        ] {
            let response = registry.get(&path);
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(json(&response)["manifests"], serde_json::json!([]));
        }
    }

    #[test]
    fn malformed_digest_is_400() {
        let registry = Registry::new();
        for bad in ["sha256:abc", "nope", "sha256:%ff"] {
            let response = registry.get(&format!("/v2/a/referrers/{bad}"));
            assert_eq!(
                (response.status, code(&response).as_str()),
                (400, "DIGEST_INVALID"),
                "{bad}"
            );
        }
    }

    #[test]
    fn filters_by_artifact_type() {
        let registry = Registry::new();
        let subject = Algorithm::Sha256.digest(b"not pushed");
        let sig = push(
            &registry,
            "a",
            &artifact(&subject, Some("application/x.sig"), "1"),
        );
        push(
            &registry,
            "a",
            &artifact(&subject, Some("application/x.sbom"), "2"),
        );
        let response = registry.get(&format!(
            "/v2/a/referrers/{subject}?artifactType=application%2Fx.sig"
        ));
        assert_eq!(listed(&response), [sig.to_string()]);
        assert_eq!(
            header(&response, "oci-filters-applied"),
            Some("artifactType")
        );
        let all = registry.get(&format!("/v2/a/referrers/{subject}"));
        assert_eq!(listed(&all).len(), 2);
        assert_eq!(header(&all, "oci-filters-applied"), None);
    }

    #[test]
    fn deleted_referrers_disappear() {
        let registry = Registry::new();
        let subject = Algorithm::Sha256.digest(b"s");
        let sig = push(&registry, "a", &artifact(&subject, None, "1"));
        assert_eq!(
            registry.delete(&format!("/v2/a/manifests/{sig}")).status,
            202
        );
        let response = registry.get(&format!("/v2/a/referrers/{subject}"));
        assert_eq!(listed(&response), Vec::<String>::new());
    }

    #[test]
    fn referrers_are_per_repository() {
        let registry = Registry::new();
        let subject = Algorithm::Sha256.digest(b"s");
        push(&registry, "a", &artifact(&subject, None, "1"));
        let response = registry.get(&format!("/v2/b/referrers/{subject}"));
        assert_eq!(listed(&response), Vec::<String>::new());
    }

    #[test]
    fn index_referrers_omit_artifact_type_unless_set() {
        let registry = Registry::new();
        let subject = Algorithm::Sha256.digest(b"s");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}}}}"#
        );
        let digest = Algorithm::Sha256.digest(body.as_bytes());
        let put = registry.put_manifest("a", &digest.to_string(), OCI_INDEX, body.as_bytes());
        assert_eq!(
            header(&put, "oci-subject"),
            Some(subject.to_string().as_str())
        );
        let response = registry.get(&format!("/v2/a/referrers/{subject}"));
        let d = &json(&response)["manifests"][0];
        assert_eq!(d["mediaType"], OCI_INDEX);
        assert!(d.get("artifactType").is_none());
        assert!(d.get("annotations").is_none());
    }

    #[test]
    fn pages_with_n_and_a_link() {
        let registry = Registry::new();
        let subject = Algorithm::Sha256.digest(b"s");
        let mut all: Vec<String> = (0..5)
            .map(|i| push(&registry, "a", &artifact(&subject, None, &i.to_string())).to_string())
            .collect();
        all.sort();
        let first = registry.get(&format!("/v2/a/referrers/{subject}?n=2"));
        assert_eq!(listed(&first), all[..2]);
        let link = header(&first, "link").unwrap().to_string();
        assert_eq!(
            link,
            format!(
                "</v2/a/referrers/{subject}?last={}&n=2>; rel=\"next\"",
                all[1]
            )
        );
        let next = link.trim_start_matches('<').split('>').next().unwrap();
        let second = registry.get(next);
        assert_eq!(listed(&second), all[2..4]);
        let rest = registry.get(&format!("/v2/a/referrers/{subject}?last={}", all[3]));
        assert_eq!(listed(&rest), all[4..]);
        assert_eq!(header(&rest, "link"), None);
    }

    #[test]
    fn the_referrers_tag_index_is_listed_too() {
        // Upgrade procedure: manifests listed in the referrers tag index
        // with a valid subject are included.
        let store = Store::new();
        let registry = Registry::with_auth(store.clone(), AllowAll);
        let subject = push(&registry, "a", &image(""));
        let sig_body = artifact(&subject, Some("application/x.sig"), "old");
        // As pushed by a registry without the referrers API: no index entry.
        let sig = Algorithm::Sha256.digest(sig_body.as_bytes());
        store
            .open("a")
            .put_manifest(
                &crate::Manifest {
                    digest: sig.clone(),
                    media_type: OCI_MANIFEST.into(),
                    content: sig_body.into_bytes(),
                    subject: None,
                },
                &[],
            )
            .unwrap();
        let unrelated = push(&registry, "a", &image(r#","annotations":{"x":"y"}"#));
        let tag_index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{sig}","size":1}},{{"mediaType":"{OCI_MANIFEST}","digest":"{unrelated}","size":1}}]}}"#
        );
        let tag = referrers_tag(&subject.to_string());
        assert_eq!(
            registry
                .put_manifest("a", &tag, OCI_INDEX, tag_index.as_bytes())
                .status,
            201
        );
        let indexed = push(&registry, "a", &artifact(&subject, None, "new"));
        let response = registry.get(&format!("/v2/a/referrers/{subject}"));
        let mut want = vec![sig.to_string(), indexed.to_string()];
        want.sort();
        assert_eq!(listed(&response), want);
    }

    #[test]
    fn referrers_tag_follows_the_schema() {
        assert_eq!(
            referrers_tag(&format!("sha256:{}", "a".repeat(64))),
            format!("sha256-{}", "a".repeat(64))
        );
        assert_eq!(
            referrers_tag(&format!("sha512:{}", "a".repeat(128))),
            format!("sha512-{}", "a".repeat(64))
        );
        assert_eq!(
            referrers_tag(
                "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation"
            ),
            "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot"
        );
    }

    #[test]
    fn merge_keeps_order_across_store_pages() {
        let tagged = vec!["b".to_string(), "d".to_string(), "f".to_string()];
        let page = |entries: &[&str], more| Page {
            entries: entries.iter().map(|s| s.to_string()).collect(),
            more,
        };
        let first = merge(page(&["a", "c"], true), &tagged, None, 2);
        assert_eq!(first, page(&["a", "b"], true));
        let second = merge(page(&["c", "e"], false), &tagged, Some("b"), 5);
        assert_eq!(second, page(&["c", "d", "e", "f"], false));
    }
}
