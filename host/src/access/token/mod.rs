//! `auth.token`: Docker's token authentication, as registry:2 has it. A
//! client without a token is sent to the token server named by `realm`
//! with the scope it needs; it comes back with a JWT that the token server
//! signed, and the token's `access` claim says what it may do.
//!
//! ```yaml
//! auth:
//!   token:
//!     realm: https://auth.example.com/token   # where clients get tokens
//!     service: registry.example.com           # the tokens' audience
//!     issuer: auth.example.com                # the tokens' iss
//!     rootcertbundle: /certs/token-signer.pem # and/or jwks: /certs/jwks.json
//! ```
//!
//! Decided in the host: [`Token::authenticate`] verifies the token before
//! an instance is taken (the signature with a trusted key, `keys.rs`; `iss`,
//! `aud`, `exp` and `nbf` with a minute's leeway, as registry:2) and keeps
//! what it grants as the request's [`Identity::Token`];
//! [`Token::authorize`] answers each repository the component opens from
//! those grants, and the server checks `registry:catalog:*` for the
//! catalog. A verified token is remembered (by its SHA-256) until it
//! expires, so a client's next requests cost a hash.

mod keys;

pub use keys::TrustedKeys;

use crate::access::{AccessControl, Action, Caller, Identity, Refused, Verdict};
use crate::metrics::METRICS;
use crate::sync::lock;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// registry:2's leeway for `exp` and `nbf`: clocks drift.
pub const LEEWAY_SECONDS: u64 = 60;

/// How many verified tokens are remembered at most.
const CACHE_ENTRIES: usize = 4096;

/// The algorithms a token may be signed with when `signingalgorithms` is
/// not set: every public-key one registry:2 knows. (Its HMAC ones need a
/// shared secret, which this configuration has no place for.)
pub const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("EdDSA", Algorithm::EdDSA),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
];

/// What a verified token allows: its `access` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `sub`: who the token server issued it to (empty: anonymous).
    pub subject: String,
    access: Vec<ResourceActions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ResourceActions {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    /// Required by the validation, so always there.
    exp: u64,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    access: Vec<ResourceActions>,
}

impl Grant {
    /// Whether the token grants `action` (or `*`) on this resource.
    fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|r| {
            r.kind == kind && r.name == name && r.actions.iter().any(|a| a == "*" || a == action)
        })
    }
}

/// The token actions an action needs, as registry:2 asks for them: a push
/// needs `pull` too (a client reads what it pushes onto).
fn token_actions(action: Action) -> &'static [&'static str] {
    match action {
        Action::Pull => &["pull"],
        Action::Push => &["pull", "push"],
        Action::Delete => &["delete"],
    }
}

/// Token authentication for one registry.
pub struct Token {
    realm: String,
    service: String,
    keys: TrustedKeys,
    /// The algorithms accepted.
    algorithms: Vec<Algorithm>,
    /// `iss`, `aud`, `exp` and `nbf`, with the leeway.
    validation: Validation,
    tenant: String,
    cache: Mutex<HashMap<[u8; 32], Remembered>>,
}

struct Remembered {
    grant: Arc<Grant>,
    /// Unix time after which the token no longer counts (`exp` + leeway).
    until: u64,
}

impl Token {
    /// Token authentication as `settings` say, trusting `keys`; its
    /// `signingalgorithms` are names from [`ALGORITHMS`] (none: all of them).
    pub fn new(
        settings: &crate::access::config::TokenAuth,
        keys: TrustedKeys,
        tenant: &str,
    ) -> anyhow::Result<Token> {
        let algorithms = if settings.signingalgorithms.is_empty() {
            ALGORITHMS.iter().map(|(_, a)| *a).collect()
        } else {
            settings
                .signingalgorithms
                .iter()
                .map(|name| algorithm(name).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.service]);
        Ok(Token {
            realm: settings.realm.clone(),
            service: settings.service.clone(),
            keys,
            algorithms,
            validation,
            tenant: tenant.to_string(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// registry:2's `WWW-Authenticate` value: where to get a token, for
    /// what, and why the one sent did not do.
    fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> String {
        let mut value = format!(
            "Bearer realm={},service={}",
            quoted(&self.realm),
            quoted(&self.service)
        );
        if let Some(scope) = scope {
            value.push_str(&format!(",scope={}", quoted(scope)));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error={}", quoted(error)));
        }
        value
    }

    /// The grant of a raw token, verified now or remembered.
    fn verify(&self, raw: &str) -> Result<Arc<Grant>, String> {
        let now = jsonwebtoken::get_current_timestamp();
        let id: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
        {
            let mut cache = lock(&self.cache);
            match cache.get(&id) {
                Some(known) if known.until >= now => {
                    METRICS.credential(&self.tenant, "cached");
                    return Ok(known.grant.clone());
                }
                Some(_) => {
                    cache.remove(&id);
                }
                None => {}
            }
        }
        let header =
            jsonwebtoken::decode_header(raw).map_err(|e| format!("malformed token: {e}"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!(
                "the token is signed with {:?}, which auth.token.signingalgorithms leaves out",
                header.alg
            ));
        }
        let trusted = self.keys.for_header(&header, now as i64)?;
        // jsonwebtoken checks every listed algorithm against the key's
        // kind: list the token's own, now known to be accepted.
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Claims>(raw, &trusted.key, &validation)
            .map_err(|e| format!("token signed by {} refused: {e}", trusted.origin))?;
        METRICS.credential(&self.tenant, "verified");
        let until = data.claims.exp.saturating_add(LEEWAY_SECONDS);
        let grant = Arc::new(Grant {
            subject: data.claims.sub,
            access: data.claims.access,
        });
        let mut cache = lock(&self.cache);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, r| r.until >= now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            id,
            Remembered {
                grant: grant.clone(),
                until,
            },
        );
        Ok(grant)
    }
}

impl AccessControl for Token {
    fn authenticate<'a>(&'a self, caller: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
        let answer = match caller.credentials.as_deref().and_then(bearer) {
            // No token (or other credentials): asked for one, with the
            // scope the request needs, when the component opens what it
            // needs.
            None => Ok(Identity::Anonymous),
            Some(raw) => match self.verify(raw) {
                Ok(grant) => Ok(Identity::Token(grant)),
                Err(why) => {
                    METRICS.credential(&self.tenant, "failed");
                    tracing::info!(tenant = self.tenant, peer = ?caller.peer, reason = why, "token refused");
                    Err(Refused {
                        challenge: self.challenge(None, Some("invalid_token")),
                    })
                }
            },
        };
        Box::pin(std::future::ready(answer))
    }

    fn authorize(&self, identity: &Identity, repository: Option<&str>, action: Action) -> Verdict {
        // Made only for a challenge: an allowed open is the hot path.
        let scope = || {
            repository.map(|name| format!("repository:{name}:{}", token_actions(action).join(",")))
        };
        match (identity, repository) {
            // The registry itself (`GET /v2/`): any valid token.
            (Identity::Token(grant), None) => Verdict::Allow(Some(grant.subject.clone())),
            (Identity::Token(grant), Some(name)) => {
                if token_actions(action)
                    .iter()
                    .all(|a| grant.allows("repository", name, a))
                {
                    Verdict::Allow(Some(grant.subject.clone()))
                } else {
                    Verdict::Challenge(
                        self.challenge(scope().as_deref(), Some("insufficient_scope")),
                    )
                }
            }
            (Identity::Anonymous, _) => {
                Verdict::Challenge(self.challenge(scope().as_deref(), None))
            }
            (Identity::User(user), _) => Verdict::Deny(format!(
                "{user} signed in with a password, but this registry takes tokens from {}",
                self.realm
            )),
        }
    }

    fn authorize_catalog(&self, identity: &Identity) -> Verdict {
        const SCOPE: &str = "registry:catalog:*";
        match identity {
            Identity::Token(grant) if grant.allows("registry", "catalog", "*") => {
                Verdict::Allow(Some(grant.subject.clone()))
            }
            Identity::Token(_) => {
                Verdict::Challenge(self.challenge(Some(SCOPE), Some("insufficient_scope")))
            }
            _ => Verdict::Challenge(self.challenge(Some(SCOPE), None)),
        }
    }

    /// A token that may read the catalog sees all of it, as registry:2.
    fn lists(&self, _: &Identity, _: &str) -> bool {
        true
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(credentials: &str) -> Option<&str> {
    let (scheme, token) = credentials.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Go's `%q` for the plain text of a challenge.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The algorithm of a `signingalgorithms` entry.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            let known: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
            if name.starts_with("HS") {
                format!(
                    "{name} needs a shared secret, which token authentication here has no place \
                     for: sign tokens with a key pair ({})",
                    known.join(", ")
                )
            } else {
                format!(
                    "unknown signing algorithm {name:?}: use {}",
                    known.join(", ")
                )
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use jsonwebtoken::{EncodingKey, Header};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use serde_json::json;

    const REALM: &str = "https://auth.example.com/token";
    const SERVICE: &str = "registry.example.com";
    const ISSUER: &str = "auth.example.com";

    fn settings() -> crate::access::config::TokenAuth {
        crate::access::config::TokenAuth {
            realm: REALM.into(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            ..Default::default()
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    /// Claims for `grants` of `repository:NAME:ACTIONS`, valid for 5 min.
    fn claims(access: serde_json::Value) -> serde_json::Value {
        json!({
            "iss": ISSUER, "aud": SERVICE, "sub": "alice",
            "exp": now() + 300, "nbf": now() - 5, "iat": now() - 5,
            "access": access,
        })
    }

    fn pull_push(name: &str) -> serde_json::Value {
        json!([{"type": "repository", "name": name, "actions": ["pull", "push"]}])
    }

    struct Signer {
        key: KeyPair,
        alg: Algorithm,
    }

    impl Signer {
        fn new(alg: Algorithm) -> Signer {
            let scheme = match alg {
                Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
                Algorithm::EdDSA => &rcgen::PKCS_ED25519,
                _ => unreachable!("rcgen makes EC and Ed25519 keys"),
            };
            Signer {
                key: KeyPair::generate_for(scheme).unwrap(),
                alg,
            }
        }

        fn encoding(&self) -> EncodingKey {
            match self.alg {
                Algorithm::EdDSA => EncodingKey::from_ed_der(&self.key.serialize_der()),
                _ => EncodingKey::from_ec_der(&self.key.serialize_der()),
            }
        }

        fn sign(&self, header: Header, claims: &serde_json::Value) -> String {
            jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
        }

        /// A self-signed certificate of this key (a CA, as `openssl req
        /// -x509` makes them).
        fn certificate(&self, name: &str) -> Vec<u8> {
            params(name, true)
                .self_signed(&self.key)
                .unwrap()
                .der()
                .to_vec()
        }
    }

    fn params(name: &str, ca: bool) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params
    }

    fn token_auth(keys: TrustedKeys) -> Token {
        Token::new(&settings(), keys, "test").unwrap()
    }

    fn trusting(certificates: &[&[u8]], jwks: Option<&serde_json::Value>) -> Token {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        let pem: String = certificates
            .iter()
            .map(|der| {
                let body = STANDARD.encode(der);
                let lines: Vec<&str> = body
                    .as_bytes()
                    .chunks(64)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect();
        std::fs::write(&bundle, pem).unwrap();
        let jwks_path = dir.path().join("jwks.json");
        if let Some(set) = jwks {
            std::fs::write(&jwks_path, set.to_string()).unwrap();
        }
        let keys = TrustedKeys::load(
            (!certificates.is_empty()).then_some(bundle.as_path()),
            jwks.map(|_| jwks_path.as_path()),
        )
        .unwrap();
        token_auth(keys)
    }

    fn with_kid(alg: Algorithm, kid: &str) -> Header {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        header
    }

    #[test]
    fn challenges_are_registry_2s() {
        let signer = Signer::new(Algorithm::ES256);
        let auth = trusting(&[&signer.certificate("signer")], None);
        let anonymous = Identity::Anonymous;
        let base = format!(r#"Bearer realm="{REALM}",service="{SERVICE}""#);
        assert_eq!(
            auth.authorize(&anonymous, None, Action::Pull),
            Verdict::Challenge(base.clone())
        );
        assert_eq!(
            auth.authorize(&anonymous, Some("team/app"), Action::Pull),
            Verdict::Challenge(format!(r#"{base},scope="repository:team/app:pull""#))
        );
        assert_eq!(
            auth.authorize(&anonymous, Some("team/app"), Action::Push),
            Verdict::Challenge(format!(r#"{base},scope="repository:team/app:pull,push""#))
        );
        assert_eq!(
            auth.authorize(&anonymous, Some("team/app"), Action::Delete),
            Verdict::Challenge(format!(r#"{base},scope="repository:team/app:delete""#))
        );
        assert_eq!(
            auth.authorize_catalog(&anonymous),
            Verdict::Challenge(format!(r#"{base},scope="registry:catalog:*""#))
        );
        // A pull-only grant: pulls in, pushes and deletes asked to get more.
        let kid = keys::libtrust_key_id(
            &x509_parser::parse_x509_certificate(&signer.certificate("signer"))
                .unwrap()
                .1
                .tbs_certificate
                .subject_pki,
        );
        let pull = json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]);
        let raw = signer.sign(with_kid(Algorithm::ES256, &kid), &claims(pull));
        let identity = Identity::Token(auth.verify(&raw).unwrap());
        assert_eq!(identity.user(), Some("alice"));
        assert_eq!(
            auth.authorize(&identity, Some("team/app"), Action::Pull),
            Verdict::Allow(Some("alice".into()))
        );
        assert_eq!(
            auth.authorize(&identity, None, Action::Pull),
            Verdict::Allow(Some("alice".into()))
        );
        assert_eq!(
            auth.authorize(&identity, Some("team/app"), Action::Push),
            Verdict::Challenge(format!(
                r#"{base},scope="repository:team/app:pull,push",error="insufficient_scope""#
            ))
        );
        assert!(matches!(
            auth.authorize(&identity, Some("team/other"), Action::Pull),
            Verdict::Challenge(c) if c.ends_with(r#"error="insufficient_scope""#)
        ));
        assert_eq!(
            auth.authorize_catalog(&identity),
            Verdict::Challenge(format!(
                r#"{base},scope="registry:catalog:*",error="insufficient_scope""#
            ))
        );
        let catalog = json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]);
        let raw = signer.sign(with_kid(Algorithm::ES256, &kid), &claims(catalog));
        let identity = Identity::Token(auth.verify(&raw).unwrap());
        assert!(matches!(
            auth.authorize_catalog(&identity),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn keys_by_libtrust_id_thumbprint_and_jwks() {
        let es = Signer::new(Algorithm::ES256);
        let ed = Signer::new(Algorithm::EdDSA);
        let es_cert = es.certificate("es");
        let ed_cert = ed.certificate("ed");
        let jwks_signer = Signer::new(Algorithm::ES384);
        let jwks_der = jwks_signer.certificate("j");
        let (_, jwks_cert) = x509_parser::parse_x509_certificate(&jwks_der).unwrap();
        let point = match jwks_cert.public_key().parsed().unwrap() {
            x509_parser::public_key::PublicKey::EC(p) => p.data().to_vec(),
            _ => unreachable!(),
        };
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-384", "kid": "jwks-key-1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..49]),
            "y": URL_SAFE_NO_PAD.encode(&point[49..]),
        }]});
        let auth = trusting(&[&es_cert, &ed_cert], Some(&jwks));
        let spki = |der: &[u8]| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
            (
                keys::libtrust_key_id(cert.public_key()),
                keys::thumbprints(cert.public_key()),
            )
        };
        let (es_id, es_thumbs) = spki(&es_cert);
        let (ed_id, ed_thumbs) = spki(&ed_cert);
        // libtrust's shape: twelve groups of four base32 characters.
        assert_eq!(es_id.split(':').count(), 12, "{es_id}");
        assert!(es_id.split(':').all(|g| g.len() == 4));
        let grants = pull_push("a");
        for (signer, kid) in [
            (&es, es_id.as_str()),
            (&es, es_thumbs[0].as_str()),
            (&ed, ed_id.as_str()),
            (&ed, ed_thumbs[0].as_str()),
            (&jwks_signer, "jwks-key-1"),
        ] {
            let raw = signer.sign(with_kid(signer.alg, kid), &claims(grants.clone()));
            let grant = auth
                .verify(&raw)
                .unwrap_or_else(|e| panic!("{:?} by {kid}: {e}", signer.alg));
            assert!(grant.allows("repository", "a", "push"));
        }
        // A key the registry does not know, under a known kid.
        let stranger = Signer::new(Algorithm::ES256);
        let raw = stranger.sign(with_kid(Algorithm::ES256, &es_id), &claims(grants.clone()));
        assert!(auth.verify(&raw).unwrap_err().contains("InvalidSignature"));
        let raw = stranger.sign(
            with_kid(Algorithm::ES256, "nobody"),
            &claims(grants.clone()),
        );
        assert!(auth.verify(&raw).unwrap_err().contains("untrusted key"));
        let raw = es.sign(Header::new(Algorithm::ES256), &claims(grants));
        assert!(auth.verify(&raw).unwrap_err().contains("names no key"));
    }

    #[test]
    fn x5c_chains_lead_to_the_bundle() {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = params("token root", true);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, &root_key);
        let middle_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let middle_params = params("token intermediate", true);
        let middle = middle_params.signed_by(&middle_key, &root_issuer).unwrap();
        let middle_issuer = Issuer::new(middle_params, &middle_key);
        let leaf = Signer::new(Algorithm::ES256);
        let leaf_cert = params("token signer", false)
            .signed_by(&leaf.key, &middle_issuer)
            .unwrap();
        let auth = trusting(&[root.der()], None);
        let x5c = |certs: &[&[u8]]| {
            let mut header = Header::new(Algorithm::ES256);
            header.x5c = Some(certs.iter().map(|c| STANDARD.encode(c)).collect());
            header
        };
        let grants = claims(pull_push("a"));
        let good = leaf.sign(x5c(&[leaf_cert.der(), middle.der()]), &grants);
        assert!(auth.verify(&good).is_ok());
        // Without the intermediate the chain stops short of the bundle.
        let short = leaf.sign(x5c(&[leaf_cert.der()]), &grants);
        assert!(auth.verify(&short).unwrap_err().contains("does not lead"));
        // A chain of someone else's making.
        let other_root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other_params = params("token root", true);
        let other_issuer = Issuer::new(other_params, &other_root_key);
        let forged_leaf = params("token signer", false)
            .signed_by(&leaf.key, &other_issuer)
            .unwrap();
        let forged = leaf.sign(x5c(&[forged_leaf.der()]), &grants);
        assert!(auth.verify(&forged).unwrap_err().contains("does not lead"));
        // The right chain, but the token signed by another key.
        let stranger = Signer::new(Algorithm::ES256);
        let wrong_key = stranger.sign(x5c(&[leaf_cert.der(), middle.der()]), &grants);
        assert!(
            auth.verify(&wrong_key)
                .unwrap_err()
                .contains("InvalidSignature")
        );
        // The leaf's own certificate in the bundle is trusted directly.
        let direct = trusting(&[&leaf.certificate("self-signed signer")], None);
        let header = x5c(&[&leaf.certificate("self-signed signer")]);
        assert!(direct.verify(&leaf.sign(header, &grants)).is_ok());
    }

    #[test]
    fn bad_tokens_are_refused() {
        let signer = Signer::new(Algorithm::EdDSA);
        let cert = signer.certificate("signer");
        let auth = trusting(&[&cert], None);
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let kid = keys::libtrust_key_id(parsed.public_key());
        let header = || with_kid(Algorithm::EdDSA, &kid);
        let with = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims(pull_push("a"));
            change(&mut c);
            signer.sign(header(), &c)
        };
        let refused = |raw: &str, why: &str| {
            let e = auth.verify(raw).unwrap_err();
            assert!(e.contains(why), "{e} (wanted {why})");
        };
        refused(
            &with(&|c| c["exp"] = json!(now() - 120)),
            "ExpiredSignature",
        );
        refused(
            &with(&|c| c["nbf"] = json!(now() + 600)),
            "ImmatureSignature",
        );
        refused(&with(&|c| c["aud"] = json!("elsewhere")), "InvalidAudience");
        refused(&with(&|c| c["iss"] = json!("someone")), "InvalidIssuer");
        refused(
            &with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "exp",
        );
        // Within the leeway, a token just expired still counts.
        assert!(
            auth.verify(&with(&|c| c["exp"] = json!(now() - 30)))
                .is_ok()
        );
        // The payload changed after signing.
        let good = with(&|_| {});
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["access"] = json!([{"type": "repository", "name": "a", "actions": ["*"]}]);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        refused(&tampered, "InvalidSignature");
        refused("not a token", "malformed");
        // An algorithm left out of signingalgorithms.
        let mut only_rsa = settings();
        only_rsa.signingalgorithms = vec!["RS256".into()];
        let strict = Token::new(
            &only_rsa,
            TrustedKeys::load(
                Some(&{
                    let dir = tempfile::tempdir().unwrap().keep();
                    let path = dir.join("b.pem");
                    std::fs::write(
                        &path,
                        rcgen::CertificateParams::new(Vec::<String>::new())
                            .unwrap()
                            .self_signed(&signer.key)
                            .unwrap()
                            .pem(),
                    )
                    .unwrap();
                    path
                }),
                None,
            )
            .unwrap(),
            "t",
        )
        .unwrap();
        assert!(strict.verify(&good).unwrap_err().contains("leaves out"));
        assert!(algorithm("HS256").unwrap_err().contains("shared secret"));
    }

    #[tokio::test]
    async fn verified_tokens_are_remembered_and_bad_ones_challenged() {
        let signer = Signer::new(Algorithm::ES256);
        let cert = signer.certificate("signer");
        let auth = trusting(&[&cert], None);
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let kid = keys::libtrust_key_id(parsed.public_key());
        let raw = signer.sign(with_kid(Algorithm::ES256, &kid), &claims(pull_push("a")));
        let caller = |credentials: &str| Caller {
            credentials: Some(credentials.to_string()),
            peer: None,
        };
        let first = auth
            .authenticate(&caller(&format!("Bearer {raw}")))
            .await
            .unwrap();
        let again = auth
            .authenticate(&caller(&format!("bearer {raw}")))
            .await
            .unwrap();
        match (first, again) {
            (Identity::Token(a), Identity::Token(b)) => assert!(Arc::ptr_eq(&a, &b)),
            other => panic!("{other:?}"),
        }
        // Basic credentials are no token: the caller is asked for one.
        assert_eq!(
            auth.authenticate(&caller("Basic YWxpY2U6c2VjcmV0"))
                .await
                .unwrap(),
            Identity::Anonymous
        );
        let refused = auth
            .authenticate(&caller(&format!("Bearer {raw}x")))
            .await
            .unwrap_err();
        assert_eq!(
            refused.challenge,
            format!(r#"Bearer realm="{REALM}",service="{SERVICE}",error="invalid_token""#)
        );
    }
}
