//! `wharf cert`: a local certificate authority and server certificates
//! signed by it, for TLS without mkcert or openssl (`rcgen`, ECDSA P-256).
//!
//! The CA (`ca.crt`, `ca-key.pem`) is made once per directory and reused by
//! later calls, so that clients trusting it keep trusting new server
//! certificates. Server certificates are named like mkcert's
//! (`<host>.pem`, `<host>-key.pem`) and are valid for the given names plus
//! `localhost`, `127.0.0.1` and `::1`. Private keys are written mode 0600.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA key {path}: {source} (remove ca.crt and ca-key.pem to make a new CA)")]
    CaKey { path: PathBuf, source: rcgen::Error },
    #[error("making the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What [`issue`] wrote.
#[derive(Debug)]
pub struct Issued {
    /// The CA certificate: what clients must trust.
    pub ca_certificate: PathBuf,
    /// Whether the CA was made now (else an existing one was reused).
    pub ca_created: bool,
    /// The server certificate chain (PEM).
    pub certificate: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The names and addresses the certificate is valid for.
    pub names: Vec<String>,
}

/// Makes (or reuses) the CA in `dir` and issues a server certificate for
/// `hosts` (the first one names the files).
pub fn issue(dir: &Path, hosts: &[String]) -> Result<Issued, CertError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_certificate = dir.join("ca.crt");
    let ca_key_path = dir.join("ca-key.pem");
    let (ca_key, ca_created) = if ca_certificate.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        let key = KeyPair::from_pem(&pem).map_err(|source| CertError::CaKey {
            path: ca_key_path.clone(),
            source,
        })?;
        (key, false)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca_certificate, cert.pem()).map_err(io(&ca_certificate))?;
        (key, true)
    };
    // The same parameters as at creation: the same issuer name and key id.
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut names: Vec<String> = Vec::new();
    for name in hosts
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1", "::1"])
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let mut params = CertificateParams::new(names.clone())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    dn.push(DnType::OrganizationName, "Wharf");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, 2);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let stem = names[0].replace([':', '/', '*'], "_");
    let certificate = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&certificate, cert.pem()).map_err(io(&certificate))?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(Issued {
        ca_certificate,
        ca_created,
        certificate,
        key: key_path,
        names,
    })
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Wharf local CA");
    dn.push(DnType::OrganizationName, "Wharf");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, 10);
    Ok(params)
}

/// From the start of last year to `years` years after the start of this
/// one: whole years, so the CA's parameters are the same on every call.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Within a day of the truth is enough here.
    let year = 1970 + (now / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn write_private(path: &Path, pem: &str) -> Result<(), CertError> {
    let err = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(pem.as_bytes()).map_err(err)
}

/// `wharf cert`: issues a certificate for `hosts` under `out` and prints
/// where the files are and how to serve with them and trust them.
pub fn make(hosts: &[String], port: u16, out: &Path) -> anyhow::Result<()> {
    let issued = issue(out, hosts)?;
    let host = &issued.names[0];
    let ca = issued.ca_certificate.display();
    println!(
        "CA certificate:     {ca} ({})",
        if issued.ca_created {
            "new"
        } else {
            "existing, reused"
        }
    );
    println!("server certificate: {}", issued.certificate.display());
    println!("server key:         {}", issued.key.display());
    println!("valid for:          {}", issued.names.join(", "));
    println!();
    println!("Serve with:");
    println!(
        "  REGISTRY_HTTP_TLS_CERTIFICATE={} REGISTRY_HTTP_TLS_KEY={} wharf serve",
        issued.certificate.display(),
        issued.key.display()
    );
    println!("Make Docker trust it (on each Docker host, as root):");
    println!("  mkdir -p /etc/docker/certs.d/{host}:{port}");
    println!("  cp {ca} /etc/docker/certs.d/{host}:{port}/ca.crt");
    println!("Docker treats names resolving to 127.0.0.0/8 as insecure and skips the check there.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_and_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = issue(dir.path(), &["registry.test".into()]).unwrap();
        assert!(first.ca_created);
        assert_eq!(first.certificate, dir.path().join("registry.test.pem"));
        assert_eq!(first.key, dir.path().join("registry.test-key.pem"));
        assert_eq!(
            first.names,
            ["registry.test", "localhost", "127.0.0.1", "::1"]
        );
        crate::serving::tls::Tls::load(&first.certificate, &first.key, &[]).unwrap();
        let ca = std::fs::read(&first.ca_certificate).unwrap();
        let second = issue(dir.path(), &["localhost".into()]).unwrap();
        assert!(!second.ca_created);
        assert_eq!(std::fs::read(&second.ca_certificate).unwrap(), ca);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&second.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// openssl, as an independent verifier, accepts the chain for the name.
    #[test]
    fn openssl_verifies_the_server_certificate_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        issue(dir.path(), &["first.test".into()]).unwrap();
        // Issued by a reused CA: must still chain to ca.crt.
        let issued = issue(dir.path(), &["registry.test".into()]).unwrap();
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&issued.ca_certificate)
            .args(["-verify_hostname", "registry.test", "-purpose", "sslserver"])
            .arg(&issued.certificate)
            .output()
            .expect("openssl is needed for this test: apt-get install openssl");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
