//! `http.tls`: HTTPS with rustls. PEM certificate chains and RSA, ECDSA or
//! Ed25519 keys; HTTP/2 and HTTP/1.1 offered by ALPN; optionally, client
//! certificates required and checked against `http.tls.clientcas`.
//!
//! A TLS listener speaks TLS only: a plain-HTTP request to it is answered
//! with a short `400` saying so (as Go's servers, registry:2 included, do)
//! and the connection closed; it is never served.
//!
//! This module knows certificates and sockets, and nothing of registries.

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to plain HTTP on the TLS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\
\r\n\
Client sent an HTTP request to an HTTPS server.\n";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{what} {path} contains no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("client CA file {path}: {source}")]
    BadClientCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client CAs: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    #[error(
        "certificate {certificate} with key {key}: {source} \
         (is the key the certificate's, and RSA, ECDSA or Ed25519?)"
    )]
    CertifiedKey {
        certificate: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Why a connection was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("plain HTTP on the TLS port; answered 400")]
    PlainHttp,
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
}

/// Accepts TLS connections with one server certificate.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads the certificate chain and key (PEM files) and, if any, the
    /// client CAs whose certificates every client must then present.
    pub fn load(certificate: &Path, key: &Path, client_cas: &[PathBuf]) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certificates("certificate file", certificate)?;
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
            what: "private key file",
            path: key.to_path_buf(),
            source,
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::CertifiedKey {
                certificate: certificate.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
        let builder = if client_cas.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for path in client_cas {
                for ca in read_certificates("client CA file", path)? {
                    roots.add(ca).map_err(|source| TlsError::BadClientCa {
                        path: path.clone(),
                        source,
                    })?;
                }
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(chain, private_key)
            .map_err(|source| TlsError::CertifiedKey {
                certificate: certificate.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Completes the TLS handshake on `stream`. A client speaking plain
    /// HTTP gets a 400 explaining the mistake, then the connection closes.
    pub async fn accept(&self, mut stream: TcpStream) -> Result<TlsStream<TcpStream>, AcceptError> {
        let handshake = async {
            let mut first = [0u8; 1];
            let n = stream
                .peek(&mut first)
                .await
                .map_err(AcceptError::Handshake)?;
            if n == 1 && first[0] != TLS_HANDSHAKE_RECORD {
                let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                let _ = stream.shutdown().await;
                return Err(AcceptError::PlainHttp);
            }
            self.acceptor
                .accept(stream)
                .await
                .map_err(AcceptError::Handshake)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .unwrap_or(Err(AcceptError::Timeout))
    }
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, alg: &'static rcgen::SignatureAlgorithm) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn loads_ecdsa_and_ed25519_keys() {
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
            let dir = tempfile::tempdir().unwrap();
            let (c, k) = write_pair(dir.path(), alg);
            Tls::load(&c, &k, &[]).unwrap();
            Tls::load(&c, &k, std::slice::from_ref(&c)).unwrap();
        }
    }

    /// rcgen cannot make RSA keys with ring; openssl (in every Debian) can.
    #[test]
    fn loads_rsa_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&k)
            .arg("-out")
            .arg(&c)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is needed for this test: apt-get install openssl");
        assert!(status.success());
        Tls::load(&c, &k, &[]).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), &rcgen::PKCS_ECDSA_P256_SHA256);
        let missing = dir.path().join("missing.pem");
        let e = Tls::load(&missing, &k, &[]).err().unwrap().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let e = Tls::load(&k, &k, &[]).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = Tls::load(&c, &c, &[]).err().unwrap().to_string();
        assert!(e.contains("private key file"), "{e}");
        // Another pair's key does not match this certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path(), &rcgen::PKCS_ECDSA_P256_SHA256);
        let e = Tls::load(&c, &other_key, &[]).err().unwrap().to_string();
        assert!(e.contains("cert.pem") && e.contains("key.pem"), "{e}");
    }
}
