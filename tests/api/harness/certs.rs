//! Certificates for the TLS tests, made for each run with rcgen in a temporary directory and
//! never committed. `Pki` is one certificate authority. It issues pairs (a certificate and its
//! key, PEM files) for a server or a client, and also the bad ones the failure tests need:
//! another name, or an expired certificate. A second `Pki` is "another CA".
//!
//! `ServerTls` is what a TLS redis-server is started with; it also holds the client pair the
//! harness itself uses for direct connections when the server requires client certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// A certificate authority, with its certificate in `ca_file()`.
pub struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    /// Writes `other`'s certificate and key over this pair's files (a renewal on disk).
    pub fn overwrite_with(&self, other: &Pair) {
        std::fs::copy(&other.cert, &self.cert).expect("copying a certificate");
        std::fs::copy(&other.key, &self.key).expect("copying a key");
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago for a year.
    Current,
    /// Ended in 2001.
    Expired,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a directory for certificates");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a self-signed CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("writing the CA certificate");
        Self { dir, ca, ca_file }
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A pair for `names` (DNS names or IP addresses), usable by a server and as a client
    /// certificate (Redis shows its own certificate to the primary and to other Sentinels).
    pub fn issue(&self, file_name: &str, names: &[&str], validity: Validity) -> Pair {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, file_name.to_owned());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (not_before, not_after) = match validity {
            Validity::Current => {
                let now = time::OffsetDateTime::now_utc();
                (
                    now - time::Duration::days(1),
                    now + time::Duration::days(365),
                )
            }
            Validity::Expired => (
                rcgen::date_time_ymd(2000, 1, 1),
                rcgen::date_time_ymd(2001, 1, 1),
            ),
        };
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("a key");
        let certificate = params.signed_by(&key, &self.ca).expect("signing");
        let pair = Pair {
            cert: self.dir.path().join(format!("{file_name}.crt")),
            key: self.dir.path().join(format!("{file_name}.key")),
        };
        std::fs::write(&pair.cert, certificate.pem()).expect("writing a certificate");
        std::fs::write(&pair.key, key.serialize_pem()).expect("writing a key");
        pair
    }

    /// A current pair for the loopback server (`localhost`, `127.0.0.1`).
    pub fn loopback(&self, file_name: &str) -> Pair {
        self.issue(file_name, &["localhost", "127.0.0.1"], Validity::Current)
    }
}

/// How a redis-server speaks TLS: only TLS (`--port 0`), with this certificate, trusting
/// `ca` for client certificates, and requiring one when `require_client_certificate`.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub server: Pair,
    pub ca: PathBuf,
    pub require_client_certificate: bool,
    /// What the harness's own direct connections show and trust.
    pub harness_client: Pair,
    pub harness_ca: PathBuf,
}

impl ServerTls {
    /// A server certificate and a harness client pair from `pki`.
    pub fn from(pki: &Pki, require_client_certificate: bool) -> Self {
        Self {
            server: pki.loopback("server"),
            ca: pki.ca_file().to_owned(),
            require_client_certificate,
            harness_client: pki.loopback("harness"),
            harness_ca: pki.ca_file().to_owned(),
        }
    }

    /// redis-server's arguments for it (`port` is the TLS port).
    pub fn args(&self, port: u16) -> Vec<String> {
        let path = |path: &Path| path.to_str().expect("a UTF-8 path").to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&self.server.cert),
            "--tls-key-file".into(),
            path(&self.server.key),
            "--tls-ca-cert-file".into(),
            path(&self.ca),
            "--tls-auth-clients".into(),
            (if self.require_client_certificate {
                "yes"
            } else {
                "no"
            })
            .into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }

    /// A redis-rs client of `url` (`rediss://`) that trusts the harness CA and shows the
    /// harness pair.
    pub fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        let read = |path: &Path| std::fs::read(path).expect("reading a harness TLS file");
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: Some(redis::ClientTlsConfig {
                    client_cert: read(&self.harness_client.cert),
                    client_key: read(&self.harness_client.key),
                }),
                root_cert: Some(read(&self.harness_ca)),
            },
        )
    }
}
