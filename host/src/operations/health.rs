//! `wharf health`: asks the running registry, configured as `wharf serve`
//! is, whether it is well, and exits 0 if it is and 1 if not. A container
//! image's `HEALTHCHECK` (the image has no shell, curl or wget) and
//! scripts use it.
//!
//! With `http.debug.addr` set it asks `/debug/health` there, which checks
//! storage too; otherwise `GET /` on `http.addr` (over TLS when `http.tls`
//! is set: the certificate is not checked, since the probe reaches its own
//! process on loopback and only wants to know that it answers).

use crate::config::Config;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long the whole probe may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Probe the registry `config` describes; `Err` says why it is unwell.
pub fn check(config: &Config) -> anyhow::Result<String> {
    let (addr, path, tls) = match &config.http.debug {
        Some(debug) => (debug.addr, "/debug/health", false),
        None => (config.http.addr, "/", config.http.tls.is_some()),
    };
    let addr = loopback(addr);
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: wharf-health\r\n\r\n"
    );
    let answer = if tls {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost")?.to_owned();
        let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
        let mut stream = rustls::StreamOwned::new(connection, stream);
        match exchange(&mut stream, &request) {
            Ok(answer) => answer,
            // With http.tls.clientcas the registry refuses a probe without a
            // client certificate, after a handshake only a live server does.
            Err(e) if demands_client_certificate(&e) => {
                return Ok(format!(
                    "https://{}{path}: the registry asks for a client certificate (it answers; \
                     set http.debug.addr for a check that reaches storage)",
                    loopback(addr)
                ));
            }
            Err(e) => return Err(e),
        }
    } else {
        let mut stream = stream;
        exchange(&mut stream, &request)?
    };
    let status_line = answer.lines().next().unwrap_or_default().to_string();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    let scheme = if tls { "https" } else { "http" };
    if status == "200" {
        Ok(format!("{scheme}://{addr}{path}: {status_line}"))
    } else {
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        anyhow::bail!("{scheme}://{addr}{path} answered {status_line:?} {body}")
    }
}

/// Whether `e` is the alert a server that requires client certificates
/// sends to a client without one.
fn demands_client_certificate(e: &anyhow::Error) -> bool {
    use rustls::AlertDescription::{BadCertificate, CertificateRequired};
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .filter_map(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
        .any(|tls| {
            matches!(
                tls,
                rustls::Error::AlertReceived(CertificateRequired | BadCertificate)
            )
        })
}

fn exchange(
    stream: &mut (impl std::io::Read + std::io::Write),
    request: &str,
) -> anyhow::Result<String> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut answer = Vec::new();
    let read = stream.take(64 * 1024).read_to_end(&mut answer);
    // A TLS peer may close without close_notify: what arrived is enough.
    match read {
        Err(e) if answer.is_empty() => Err(anyhow::Error::new(e).context("no answer")),
        _ if answer.is_empty() => anyhow::bail!("no answer"),
        _ => Ok(String::from_utf8_lossy(&answer).into_owned()),
    }
}

/// The address to reach a listener on `addr` from the same host.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Accepts the registry's own certificate whatever it is: see the module
/// documentation.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
