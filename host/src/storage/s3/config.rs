//! `storage.s3`: registry:2's S3 driver keys, read the way it reads them.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The smallest part S3 takes in a multipart upload (but the last).
pub const MIN_CHUNK: u64 = 5 << 20;
/// registry:2's default `chunksize`.
pub const DEFAULT_CHUNK: u64 = 10 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    /// `region`: the bucket's region (any name for a self-hosted store).
    pub region: String,
    /// `bucket`: where everything lives.
    pub bucket: String,
    /// `regionendpoint`: the S3 endpoint URL; default AWS's for `region`.
    #[serde(default)]
    pub regionendpoint: Option<String>,
    /// `accesskey` and `secretkey`; without them the usual `AWS_*`
    /// variables (or instance credentials) are used.
    #[serde(default)]
    pub accesskey: Option<String>,
    #[serde(default)]
    pub secretkey: Option<String>,
    #[serde(default)]
    pub sessiontoken: Option<String>,
    /// `forcepathstyle`: `endpoint/bucket/key` rather than
    /// `bucket.endpoint/key` (self-hosted stores want it).
    #[serde(default)]
    pub forcepathstyle: bool,
    /// `rootdirectory`: a prefix for every key, so a bucket can hold
    /// several registries.
    #[serde(default)]
    pub rootdirectory: String,
    /// `secure`: https (default) or http to the endpoint.
    #[serde(default = "yes")]
    pub secure: bool,
    /// `skipverify`: do not verify the endpoint's TLS certificate.
    #[serde(default)]
    pub skipverify: bool,
    /// `chunksize`: bytes per multipart part (at least 5 MiB, the S3
    /// minimum; default 10 MiB). An upload holds at most about three in
    /// memory, whatever the blob's size.
    #[serde(default)]
    pub chunksize: Option<u64>,
    /// `v4auth`: Wharf always signs with AWS Signature Version 4.
    #[serde(default)]
    pub v4auth: Option<bool>,
    /// `encrypt`, `keyid`: server-side encryption (not supported yet).
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub keyid: Option<String>,
    /// `storageclass`, `objectacl`: only the defaults.
    #[serde(default)]
    pub storageclass: Option<String>,
    #[serde(default)]
    pub objectacl: Option<String>,
    /// `multipartcopychunksize`, `multipartcopymaxconcurrency`,
    /// `multipartcopythresholdsize`: accepted; Wharf moves a finished upload
    /// with one server-side copy.
    #[serde(default, rename = "multipartcopychunksize")]
    pub _multipartcopychunksize: Option<IgnoredAny>,
    #[serde(default, rename = "multipartcopymaxconcurrency")]
    pub _multipartcopymaxconcurrency: Option<IgnoredAny>,
    #[serde(default, rename = "multipartcopythresholdsize")]
    pub _multipartcopythresholdsize: Option<IgnoredAny>,
    /// `loglevel`, `useragent`: accepted, not used.
    #[serde(default, rename = "loglevel")]
    pub _loglevel: Option<IgnoredAny>,
    #[serde(default, rename = "useragent")]
    pub _useragent: Option<IgnoredAny>,
    #[serde(default)]
    pub accelerate: bool,
    #[serde(default)]
    pub usedualstack: bool,
}

fn yes() -> bool {
    true
}

impl S3 {
    /// Bytes per multipart part.
    pub fn chunk_size(&self) -> u64 {
        self.chunksize.unwrap_or(DEFAULT_CHUNK)
    }

    /// What Wharf cannot do as asked: `(key, value, reason)` under
    /// `prefix` (`storage.s3` or a tenant's).
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        if self.bucket.trim().is_empty() {
            return Err(("bucket", String::new(), "the bucket is required".into()));
        }
        if self.region.trim().is_empty() {
            return Err((
                "region",
                String::new(),
                "the region is required (any name, such as garage, for a self-hosted store)".into(),
            ));
        }
        if self.chunk_size() < MIN_CHUNK {
            return Err((
                "chunksize",
                self.chunk_size().to_string(),
                format!("S3 parts are at least {MIN_CHUNK} bytes (5 MiB)"),
            ));
        }
        if self.accesskey.is_some() != self.secretkey.is_some() {
            return Err((
                "accesskey",
                String::new(),
                "set both accesskey and secretkey, or neither (to use AWS_* variables)".into(),
            ));
        }
        if self.v4auth == Some(false) {
            return Err((
                "v4auth",
                "false".into(),
                "Wharf signs every request with AWS Signature Version 4".into(),
            ));
        }
        if self.encrypt || self.keyid.is_some() {
            return Err((
                "encrypt",
                self.encrypt.to_string(),
                "server-side encryption is not supported yet: encrypt the bucket by default \
                 on the storage side instead"
                    .into(),
            ));
        }
        if let Some(class) = &self.storageclass
            && !["STANDARD", "NONE"].contains(&class.to_ascii_uppercase().as_str())
        {
            return Err((
                "storageclass",
                class.clone(),
                "only the bucket's default class (STANDARD) is supported".into(),
            ));
        }
        if let Some(acl) = &self.objectacl
            && acl != "private"
        {
            return Err((
                "objectacl",
                acl.clone(),
                "objects are private; only objectacl: private is supported".into(),
            ));
        }
        if self.accelerate || self.usedualstack {
            return Err((
                "accelerate",
                "true".into(),
                "S3 transfer acceleration and dual-stack endpoints are not supported".into(),
            ));
        }
        if let Some(endpoint) = &self.regionendpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err((
                "regionendpoint",
                endpoint.clone(),
                "expected a URL such as http://127.0.0.1:3900".into(),
            ));
        }
        Ok(())
    }
}
