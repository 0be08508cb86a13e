//! A token server for the token-authentication tests, as GitLab or
//! docker_auth run one: `GET /token?service=…&scope=…` with a user's Basic
//! credentials answers a JWT granting what the policy lets that user do of
//! the scope asked, signed RS256 with a key whose self-signed certificate
//! the registry trusts, named by registry:2's libtrust key ID. On loopback,
//! stopped on drop.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The `iss` of every token the server issues.
pub const ISSUER: &str = "wharf-test-token-issuer";

/// An RSA key pair made with `openssl`, and its self-signed certificate.
pub struct Signer {
    key: EncodingKey,
    /// registry:2's key ID of the public key.
    pub kid: String,
    /// The certificate, PEM: the registry's `rootcertbundle`.
    pub certificate: PathBuf,
}

impl Signer {
    /// A new key in `dir`, named `name`.
    pub fn generate(dir: &Path, name: &str) -> Signer {
        let file = |ext: &str| dir.join(format!("{name}.{ext}"));
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("run openssl (Debian's openssl package)");
            assert!(
                out.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let path = |ext: &str| file(ext).to_str().unwrap().to_string();
        openssl(&["genrsa", "-out", &path("key.pem"), "2048"]);
        openssl(&[
            "rsa",
            "-in",
            &path("key.pem"),
            "-traditional",
            "-outform",
            "DER",
            "-out",
            &path("key.der"),
        ]);
        openssl(&[
            "pkey",
            "-in",
            &path("key.pem"),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            &path("pub.der"),
        ]);
        // As `openssl req -x509` makes them by default: a CA, self-signed.
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &path("key.pem"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-out",
            &path("crt.pem"),
        ]);
        let public = std::fs::read(file("pub.der")).unwrap();
        Signer {
            key: EncodingKey::from_rsa_der(&std::fs::read(file("key.der")).unwrap()),
            kid: libtrust_key_id(&public),
            certificate: file("crt.pem"),
        }
    }

    /// `claims`, signed RS256 under this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign a token")
    }
}

/// registry:2's key ID (docker/libtrust), written here from its
/// description so that the registry's own is checked against it: the
/// first 240 bits of the SHA-256 of the DER public key, base32, in groups
/// of four joined by `:`.
pub fn libtrust_key_id(public_der: &[u8]) -> String {
    let digest = Sha256::digest(public_der);
    let text = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    let groups: Vec<&str> = (0..text.len())
        .step_by(4)
        .map(|i| &text[i..i + 4])
        .collect();
    groups.join(":")
}

/// The claims of a token for `service`, issued to `subject`, granting
/// `access`, valid for five minutes from now.
pub fn claims(service: &str, subject: &str, access: Value) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": subject, "aud": service,
        "exp": now + 300, "nbf": now - 1, "iat": now,
        "jti": format!("{now}-{subject}"),
        "access": access,
    })
}

/// `[{type: repository, name, actions}]`.
pub fn repository(name: &str, actions: &[&str]) -> Value {
    json!([{"type": "repository", "name": name, "actions": actions}])
}

/// The same token with its payload changed after signing.
pub fn tampered(token: &str, change: impl Fn(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    change(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Who may log in, and what each may do: (user, password, grants), where
/// a grant is (repository, actions).
pub type Policy = Vec<(
    &'static str,
    &'static str,
    Vec<(&'static str, Vec<&'static str>)>,
)>;

/// The running server.
pub struct TokenServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<(Signer, Policy)>,
}

impl TokenServer {
    pub fn start(signer: Signer, policy: Policy) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((signer, policy));
        let stopped = stop.clone();
        let serving = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = serving.clone();
                std::thread::spawn(move || answer(stream, &shared.0, &shared.1));
            }
        });
        TokenServer { addr, stop, shared }
    }

    /// A token of this server's signer, as [`Signer::sign`].
    pub fn sign(&self, claims: &Value) -> String {
        self.shared.0.sign(claims)
    }

    /// The `realm` to configure.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(mut stream: TcpStream, signer: &Signer, policy: &Policy) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let mut reply = |status: &str, body: String| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if path != "/token" {
        return reply("404 Not Found", "{}".into());
    }
    let user = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (user, password) = pair.split_once(':')?;
            policy.iter().find(|(u, p, _)| *u == user && *p == password)
        });
    let Some((user, _, grants)) = user else {
        return reply(
            "401 Unauthorized",
            r#"{"details":"wrong user name or password"}"#.into(),
        );
    };
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // What was asked and the policy allows: per scope
    // `repository:NAME:ACTIONS` (several scopes in one parameter are
    // separated by spaces).
    let mut access = Vec::new();
    for scope in params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
    {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let allowed: Vec<&str> = grants
            .iter()
            .filter(|(repository, _)| *repository == name)
            .flat_map(|(_, actions)| actions.iter().copied())
            .collect();
        let given: Vec<&str> = actions.split(',').filter(|a| allowed.contains(a)).collect();
        if kind == "repository" && !given.is_empty() {
            access.push(json!({"type": kind, "name": name, "actions": given}));
        }
    }
    let token = signer.sign(&claims(&service, user, Value::Array(access)));
    reply(
        "200 OK",
        json!({"token": token, "access_token": token, "expires_in": 300}).to_string(),
    );
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
