//! The keys a token may be signed with, as registry:2 trusts them:
//!
//! - a certificate chain in the token's `x5c` header that leads to a
//!   certificate of `auth.token.rootcertbundle` (a leaf that is itself in
//!   the bundle counts, as docker_auth's self-signed signing certificates
//!   are);
//! - or a key named by the `kid` header (or the `kid` of a `jwk` header):
//!   the bundle's keys by registry:2's libtrust key ID (GitLab, Harbor) or
//!   by their RFC 7638 thumbprint (Distribution 3), and the keys of
//!   `auth.token.jwks` by their own `kid`.
//!
//! Both files are read when the registry starts.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use x509_parser::prelude::*;

/// Longest `x5c` chain followed, the leaf included.
const MAX_CHAIN: usize = 8;

/// A trusted key, and where it came from (for the log).
pub struct Trusted {
    pub key: DecodingKey,
    pub origin: String,
}

/// What the registry trusts to sign tokens.
#[derive(Default)]
pub struct TrustedKeys {
    /// The bundle's certificates, DER.
    roots: Vec<Vec<u8>>,
    /// Keys by key ID.
    by_id: HashMap<String, Trusted>,
}

impl TrustedKeys {
    /// Read the bundle and the JWKS file (either may be absent, not both).
    pub fn load(bundle: Option<&Path>, jwks: Option<&Path>) -> anyhow::Result<TrustedKeys> {
        let mut keys = TrustedKeys::default();
        if let Some(path) = bundle {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("reading auth.token.rootcertbundle {shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("reading auth.token.rootcertbundle {shown}: {e}"))?;
            for der in certificates {
                keys.add_root(der.to_vec())
                    .map_err(|e| anyhow::anyhow!("auth.token.rootcertbundle {shown}: {e}"))?;
            }
        }
        if let Some(path) = jwks {
            let shown = path.display();
            let text = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading auth.token.jwks {shown}: {e}"))?;
            keys.add_jwks(&text)
                .map_err(|e| anyhow::anyhow!("auth.token.jwks {shown}: {e}"))?;
        }
        if keys.roots.is_empty() && keys.by_id.is_empty() {
            anyhow::bail!(
                "token authentication needs at least one signing key: auth.token.rootcertbundle \
                 names a PEM file of certificates, auth.token.jwks a JSON Web Key Set"
            );
        }
        Ok(keys)
    }

    /// A certificate of the bundle: trusted as an anchor of `x5c` chains,
    /// and its key by both of its key IDs.
    fn add_root(&mut self, der: Vec<u8>) -> Result<(), String> {
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| format!("a certificate cannot be parsed: {e}"))?;
        let spki = cert.public_key();
        let origin = format!("rootcertbundle certificate {}", cert.subject());
        let key = decoding_key(spki)?;
        for id in [libtrust_key_id(spki)].into_iter().chain(thumbprints(spki)) {
            self.by_id.insert(
                id,
                Trusted {
                    key: key.clone(),
                    origin: origin.clone(),
                },
            );
        }
        drop(cert);
        self.roots.push(der);
        Ok(())
    }

    /// The keys of a JSON Web Key Set, each by its `kid`.
    fn add_jwks(&mut self, text: &[u8]) -> Result<(), String> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
        for (n, jwk) in set.keys.iter().enumerate() {
            let Some(id) = jwk.common.key_id.clone() else {
                return Err(format!("keys[{n}] has no kid: tokens name their key by it"));
            };
            if matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            ) {
                return Err(format!(
                    "keys[{n}] ({id}) is a shared secret: only public keys (RSA, EC, Ed25519) sign tokens here"
                ));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{n}] ({id}): {e}"))?;
            self.by_id.insert(
                id.clone(),
                Trusted {
                    key,
                    origin: format!("jwks key {id}"),
                },
            );
        }
        Ok(())
    }

    /// The key that should verify a token with this header, or why none
    /// is trusted. `now` is a Unix time, for the certificates' validity.
    pub fn for_header(&self, header: &Header, now: i64) -> Result<Trusted, String> {
        if let Some(chain) = &header.x5c {
            return self.verify_chain(chain, now);
        }
        if let Some(jwk) = &header.jwk {
            if let Some(chain) = &jwk.common.x509_chain {
                return self.verify_chain(chain, now);
            }
            let Some(id) = &jwk.common.key_id else {
                return Err(
                    "the token's jwk header has neither a certificate chain nor a kid".into(),
                );
            };
            return self.by_id(id);
        }
        match &header.kid {
            Some(id) => self.by_id(id),
            None => Err("the token names no key: it has no x5c, jwk or kid header".into()),
        }
    }

    fn by_id(&self, id: &str) -> Result<Trusted, String> {
        self.by_id
            .get(id)
            .map(|t| Trusted {
                key: t.key.clone(),
                origin: t.origin.clone(),
            })
            .ok_or_else(|| format!("the token is signed by an untrusted key (kid {id:?})"))
    }

    /// The leaf's key, if the chain (leaf first, base64 DER) leads to a
    /// certificate of the bundle.
    fn verify_chain(&self, chain: &[String], now: i64) -> Result<Trusted, String> {
        // Bounded before anything is parsed: whoever sends a token chooses
        // how many signatures the walk below checks.
        if chain.len() > MAX_CHAIN {
            return Err(format!(
                "the token's x5c chain holds {} certificates; at most {MAX_CHAIN} are followed",
                chain.len()
            ));
        }
        let ders = chain
            .iter()
            .map(|c| STANDARD.decode(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the token's x5c header is not base64: {e}"))?;
        let certs = ders
            .iter()
            .map(|der| X509Certificate::from_der(der).map(|(_, c)| c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                format!("a certificate of the token's x5c header cannot be parsed: {e}")
            })?;
        let Some(leaf) = certs.first() else {
            return Err("the token's x5c header is empty".into());
        };
        let time = ASN1Time::from_timestamp(now).map_err(|e| e.to_string())?;
        let roots = self
            .roots
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .collect::<Vec<_>>();
        let valid = |c: &X509Certificate| c.validity().is_valid_at(time);
        let mut current = leaf;
        for _ in 0..MAX_CHAIN {
            if !valid(current) {
                return Err(format!(
                    "certificate {} of the token's x5c chain is not valid now",
                    current.subject()
                ));
            }
            let anchored = roots.iter().any(|root| {
                root.as_raw() == current.as_raw()
                    || (root.subject().as_raw() == current.issuer().as_raw()
                        && root.is_ca()
                        && valid(root)
                        && current.verify_signature(Some(root.public_key())).is_ok())
            });
            if anchored {
                return Ok(Trusted {
                    key: decoding_key(leaf.public_key())?,
                    origin: format!("x5c certificate {}", leaf.subject()),
                });
            }
            let Some(parent) = certs[1..].iter().find(|c| {
                c.subject().as_raw() == current.issuer().as_raw()
                    && c.is_ca()
                    && current.verify_signature(Some(c.public_key())).is_ok()
            }) else {
                return Err(format!(
                    "the token's x5c chain ({}, issued by {}) does not lead to a certificate of \
                     auth.token.rootcertbundle",
                    leaf.subject(),
                    current.issuer()
                ));
            };
            current = parent;
        }
        Err(format!(
            "the token's x5c chain is longer than {MAX_CHAIN} certificates"
        ))
    }
}

/// The key of a certificate, for jsonwebtoken.
fn decoding_key(spki: &SubjectPublicKeyInfo) -> Result<DecodingKey, String> {
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(
            DecodingKey::from_rsa_raw_components(unpadded(rsa.modulus), unpadded(rsa.exponent)),
        ),
        // The uncompressed point, which is what ring takes.
        Ok(x509_parser::public_key::PublicKey::EC(point)) => {
            Ok(DecodingKey::from_ec_der(point.data()))
        }
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            Ok(DecodingKey::from_ed_der(&spki.subject_public_key.data))
        }
        _ => Err(format!(
            "key algorithm {} cannot sign tokens here (RSA, ECDSA P-256/P-384 or Ed25519)",
            spki.algorithm.algorithm
        )),
    }
}

/// A big-endian integer without its leading zeros.
fn unpadded(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// registry:2's key ID (docker/libtrust): the first 240 bits of the
/// SHA-256 of the DER public key, in base32, in twelve groups of four.
pub fn libtrust_key_id(spki: &SubjectPublicKeyInfo) -> String {
    let digest = Sha256::digest(spki.raw);
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The RFC 7638 thumbprints of a key (SHA-256, base64url): as the RFC
/// writes EC coordinates (full length) and as Distribution 3 does (leading
/// zeros dropped); the two differ only for a few keys.
pub fn thumbprints(spki: &SubjectPublicKeyInfo) -> Vec<String> {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let members = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => vec![format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            b64(unpadded(rsa.exponent)),
            b64(unpadded(rsa.modulus))
        )],
        Ok(x509_parser::public_key::PublicKey::EC(point)) => {
            let data = point.data();
            let (crv, size) = match data.len() {
                65 => ("P-256", 32),
                97 => ("P-384", 48),
                _ => return Vec::new(),
            };
            let (x, y) = (&data[1..1 + size], &data[1 + size..]);
            let member = |x: &[u8], y: &[u8]| {
                format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    b64(x),
                    b64(y)
                )
            };
            let mut all = vec![member(x, y)];
            let short = member(unpadded(x), unpadded(y));
            if short != all[0] {
                all.push(short);
            }
            all
        }
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            vec![format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64(&spki.subject_public_key.data)
            )]
        }
        _ => Vec::new(),
    };
    members
        .iter()
        .map(|m| b64(&Sha256::digest(m.as_bytes())))
        .collect()
}
