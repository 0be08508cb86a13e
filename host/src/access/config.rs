//! The `auth` section, a registry's or a tenant's: htpasswd, Docker's
//! token authentication, and Wharf's access rules ([`super::rules`]).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// `auth.htpasswd`: HTTP Basic authentication against an htpasswd file.
    pub htpasswd: Option<Htpasswd>,
    /// `auth.access` (Wharf's): who may pull, push or delete which
    /// repositories (`access/rules.rs`). Without it, every htpasswd user
    /// may do everything, as with registry:2.
    pub access: Option<crate::access::rules::Rules>,
    /// `auth.token`: Docker's token authentication (`access/token/mod.rs`).
    pub token: Option<TokenAuth>,
}

/// `auth.token`, as registry:2 reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenAuth {
    /// `auth.token.realm`: the token server's URL, sent in challenges.
    pub realm: String,
    /// `auth.token.service`: this registry's name; tokens must be for it
    /// (`aud`), and clients send it to the token server.
    pub service: String,
    /// `auth.token.issuer`: who must have issued the tokens (`iss`).
    pub issuer: String,
    /// `auth.token.rootcertbundle`: PEM certificates whose keys sign
    /// tokens, or that anchor the tokens' `x5c` chains.
    pub rootcertbundle: Option<PathBuf>,
    /// `auth.token.jwks`: a JSON Web Key Set file of signing keys.
    pub jwks: Option<PathBuf>,
    /// `auth.token.autoredirect`: registry:2's realm rewritten to this
    /// host; not supported (refused when true).
    pub autoredirect: bool,
    /// `auth.token.autoredirectpath`: see `autoredirect`.
    pub autoredirectpath: Option<String>,
    /// `auth.token.signingalgorithms`: the algorithms accepted (default:
    /// every public-key one).
    pub signingalgorithms: Vec<String>,
}

impl TokenAuth {
    /// What is wrong with these settings, as (key, value, reason).
    pub(crate) fn problem(&self) -> Option<(&'static str, String, String)> {
        for (key, value) in [
            ("realm", &self.realm),
            ("service", &self.service),
            ("issuer", &self.issuer),
        ] {
            if value.trim().is_empty() {
                return Some((
                    key,
                    String::new(),
                    format!(
                        "token authentication needs auth.token.{key} (REGISTRY_AUTH_TOKEN_{})",
                        key.to_ascii_uppercase()
                    ),
                ));
            }
        }
        if self.rootcertbundle.is_none() && self.jwks.is_none() {
            return Some((
                "rootcertbundle",
                String::new(),
                "token authentication needs the keys that sign tokens: auth.token.rootcertbundle \
                 (PEM certificates) or auth.token.jwks (a JSON Web Key Set file)"
                    .into(),
            ));
        }
        if self.autoredirect {
            return Some((
                "autoredirect",
                "true".into(),
                "not supported: set auth.token.realm to the token server's full URL".into(),
            ));
        }
        for name in &self.signingalgorithms {
            if let Err(why) = crate::access::token::algorithm(name) {
                return Some(("signingalgorithms", name.clone(), why));
            }
        }
        None
    }
}

impl Auth {
    /// What is wrong with this `auth` section, as (key under `auth`,
    /// value, reason).
    pub(crate) fn problem(&self) -> Option<(String, String, String)> {
        if self.htpasswd.is_some() && self.token.is_some() {
            return Some((
                "token".into(),
                String::new(),
                "configure one of auth.htpasswd and auth.token, not both".into(),
            ));
        }
        if self.access.is_some() && self.token.is_some() {
            return Some((
                "access".into(),
                String::new(),
                "with token authentication the token server's grants decide: remove auth.access"
                    .into(),
            ));
        }
        if let Some(token) = &self.token
            && let Some((key, value, reason)) = token.problem()
        {
            return Some((format!("token.{key}"), value, reason));
        }
        None
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    /// `auth.htpasswd.realm`: the realm in the `WWW-Authenticate` challenge.
    /// Default `Registry Realm`.
    pub realm: String,
    /// `auth.htpasswd.path`: the htpasswd file, bcrypt entries only. Required.
    pub path: PathBuf,
}

impl Default for Htpasswd {
    fn default() -> Htpasswd {
        Htpasswd {
            realm: "Registry Realm".to_string(),
            path: PathBuf::new(),
        }
    }
}
