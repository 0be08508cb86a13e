//! Where everything lives on disk: the one place that knows the paths.
//!
//! The layout is CNCF Distribution's (registry:2), so a data directory that
//! registry:2 wrote can be served by Wharf and the other way round:
//!
//! ```text
//! <rootdirectory>/docker/registry/v2/
//!   blobs/<alg>/<hex[0..2]>/<hex>/data                   blob and manifest bytes
//!   repositories/<name>/
//!     _layers/<alg>/<hex>/link                           blob linked to the repository
//!     _manifests/revisions/<alg>/<hex>/link              manifest in the repository
//!     _manifests/revisions/<alg>/<hex>/wharf-media-type  media type it was pushed with (Wharf only)
//!     _manifests/revisions/<alg>/<hex>/wharf-subject     digest of its `subject` (Wharf only)
//!     _manifests/referrers/<s-alg>/<s-hex>/<alg>/<hex>/link
//!                                                        manifest <alg>:<hex> names subject
//!                                                        <s-alg>:<s-hex> (Wharf only)
//!     _manifests/tags/<tag>/current/link                 what the tag points at
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link       every digest the tag pointed at
//!     _uploads/<id>/data                                 an upload session's bytes
//!     _uploads/<id>/wharf-part-<offset>                  or, from the standalone component,
//!                                                        its bytes from <offset> (Wharf only)
//!     _uploads/<id>/startedat                            when it started (Unix seconds)
//!     _uploads/<id>/wharf-algorithm                      the hash it was started with
//!   wharf-tmp/                                           files being written, renamed into place
//!   wharf-catalog/<name>                                 on S3: an empty object per repository,
//!                                                        so a catalog page is one listing (Wharf only)
//!   wharf-catalog-complete                               on S3: every repository has its object
//! ```
//!
//! The `wharf-*` files and `_manifests/referrers/` are Wharf's additions;
//! registry:2 ignores them. A referrer link is written before the revision
//! link that makes the manifest visible and removed after it, so a visible
//! manifest is always listed; a link left behind (a crash, or a delete by
//! registry:2) names a manifest that no longer exists, and the guest skips
//! it.
//!
//! Every name reaching this module has been validated (digests parsed,
//! repository names and tags checked against the spec grammar, upload ids
//! checked as UUIDs), so no component can be `..` or contain a separator it
//! should not.

use crate::Digest;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    v2: PathBuf,
}

impl Layout {
    pub fn new(rootdirectory: &Path) -> Layout {
        Layout {
            v2: rootdirectory.join("docker/registry/v2"),
        }
    }

    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        let alg = d.algorithm().name();
        let hex = d.hex();
        self.v2.join("blobs").join(alg).join(&hex[..2]).join(hex)
    }

    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.blob_dir(d).join("data")
    }

    pub fn repositories(&self) -> PathBuf {
        self.v2.join("repositories")
    }

    pub fn repository(&self, name: &str) -> PathBuf {
        self.repositories().join(name)
    }

    pub fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repository(name)
            .join("_layers")
            .join(d.algorithm().name())
            .join(d.hex())
            .join("link")
    }

    pub fn manifests(&self, name: &str) -> PathBuf {
        self.repository(name).join("_manifests")
    }

    pub fn revisions(&self, name: &str) -> PathBuf {
        self.manifests(name).join("revisions")
    }

    pub fn layers(&self, name: &str) -> PathBuf {
        self.repository(name).join("_layers")
    }

    pub fn blobs(&self) -> PathBuf {
        self.v2.join("blobs")
    }

    pub fn revision_dir(&self, name: &str, d: &Digest) -> PathBuf {
        self.revisions(name)
            .join(d.algorithm().name())
            .join(d.hex())
    }

    pub fn revision_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.revision_dir(name, d).join("link")
    }

    pub fn revision_media_type(&self, name: &str, d: &Digest) -> PathBuf {
        self.revision_dir(name, d).join("wharf-media-type")
    }

    pub fn revision_subject(&self, name: &str, d: &Digest) -> PathBuf {
        self.revision_dir(name, d).join("wharf-subject")
    }

    /// The directory of the referrers of `subject`: `<alg>/<hex>/link`
    /// entries below it.
    pub fn referrers(&self, name: &str, subject: &Digest) -> PathBuf {
        self.manifests(name)
            .join("referrers")
            .join(subject.algorithm().name())
            .join(subject.hex())
    }

    pub fn referrer_dir(&self, name: &str, subject: &Digest, d: &Digest) -> PathBuf {
        self.referrers(name, subject)
            .join(d.algorithm().name())
            .join(d.hex())
    }

    pub fn referrer_link(&self, name: &str, subject: &Digest, d: &Digest) -> PathBuf {
        self.referrer_dir(name, subject, d).join("link")
    }

    pub fn tags(&self, name: &str) -> PathBuf {
        self.manifests(name).join("tags")
    }

    pub fn tag_dir(&self, name: &str, tag: &str) -> PathBuf {
        self.tags(name).join(tag)
    }

    pub fn tag_current(&self, name: &str, tag: &str) -> PathBuf {
        self.tag_dir(name, tag).join("current").join("link")
    }

    pub fn tag_index(&self, name: &str, tag: &str, d: &Digest) -> PathBuf {
        self.tag_dir(name, tag)
            .join("index")
            .join(d.algorithm().name())
            .join(d.hex())
            .join("link")
    }

    pub fn uploads(&self, name: &str) -> PathBuf {
        self.repository(name).join("_uploads")
    }

    pub fn upload_dir(&self, name: &str, id: &str) -> PathBuf {
        self.uploads(name).join(id)
    }

    pub fn tmp(&self) -> PathBuf {
        self.v2.join("wharf-tmp")
    }

    pub fn catalog(&self) -> PathBuf {
        self.v2.join("wharf-catalog")
    }

    pub fn catalog_entry(&self, name: &str) -> PathBuf {
        self.catalog().join(name)
    }

    pub fn catalog_complete(&self) -> PathBuf {
        self.v2.join("wharf-catalog-complete")
    }
}

/// The media type a manifest records inside (its `mediaType`), for a
/// revision stored without `wharf-media-type` (registry:2's data). Only
/// that field is read; every other is skipped unread.
pub fn embedded_media_type(content: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<serde_json::Value>,
    }
    let typed: Typed = serde_json::from_slice(content).ok()?;
    typed.media_type?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path, spelled out as registry:2 writes it (its storage
    /// driver's documented layout, `registry/storage/paths.go`) for a
    /// nested repository name, and Wharf's additions beside it: a drop-in
    /// registry finds registry:2's data only if these strings are exact.
    #[test]
    fn paths_are_registry_2s_byte_for_byte() {
        let hex = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        let s = Digest::parse(&format!("sha512:{}", "ab".repeat(64))).unwrap();
        let layout = Layout::new(Path::new("/var/lib/registry"));
        let v2 = "/var/lib/registry/docker/registry/v2";
        let repo = format!("{v2}/repositories/team/app");
        let cases: Vec<(PathBuf, String)> = vec![
            (
                layout.blob_data(&d),
                format!("{v2}/blobs/sha256/a3/{hex}/data"),
            ),
            (layout.blob_dir(&d), format!("{v2}/blobs/sha256/a3/{hex}")),
            (layout.blobs(), format!("{v2}/blobs")),
            (layout.repositories(), format!("{v2}/repositories")),
            (
                layout.layer_link("team/app", &d),
                format!("{repo}/_layers/sha256/{hex}/link"),
            ),
            (layout.layers("team/app"), format!("{repo}/_layers")),
            (
                layout.revision_link("team/app", &d),
                format!("{repo}/_manifests/revisions/sha256/{hex}/link"),
            ),
            (
                layout.tag_current("team/app", "v1.0"),
                format!("{repo}/_manifests/tags/v1.0/current/link"),
            ),
            (
                layout.tag_index("team/app", "v1.0", &d),
                format!("{repo}/_manifests/tags/v1.0/index/sha256/{hex}/link"),
            ),
            (
                layout.upload_dir("team/app", "9a2e3c1d-0b5f-4e7a-8c6d-1f2e3a4b5c6d"),
                format!("{repo}/_uploads/9a2e3c1d-0b5f-4e7a-8c6d-1f2e3a4b5c6d"),
            ),
            // Wharf's additions, which registry:2 ignores.
            (
                layout.revision_media_type("team/app", &d),
                format!("{repo}/_manifests/revisions/sha256/{hex}/wharf-media-type"),
            ),
            (
                layout.revision_subject("team/app", &d),
                format!("{repo}/_manifests/revisions/sha256/{hex}/wharf-subject"),
            ),
            (
                layout.referrer_link("team/app", &s, &d),
                format!(
                    "{repo}/_manifests/referrers/sha512/{}/sha256/{hex}/link",
                    "ab".repeat(64)
                ),
            ),
            (layout.tmp(), format!("{v2}/wharf-tmp")),
            (
                layout.catalog_entry("team/app"),
                format!("{v2}/wharf-catalog/team/app"),
            ),
            (
                layout.catalog_complete(),
                format!("{v2}/wharf-catalog-complete"),
            ),
        ];
        for (built, expected) in cases {
            assert_eq!(built, PathBuf::from(&expected), "expected {expected}");
        }
    }

    #[test]
    fn a_manifest_names_its_media_type_inside_or_not_at_all() {
        let typed = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert_eq!(
            embedded_media_type(typed).as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(embedded_media_type(br#"{"schemaVersion":2}"#), None);
        assert_eq!(embedded_media_type(br#"{"mediaType":7}"#), None);
        assert_eq!(embedded_media_type(b"not json"), None);
    }
}
