//! TLS to Redis (`rediss://`): the files of `[redis.tls]`, the rustls client configuration made
//! from them (ring, no OpenSSL), and the handshake.
//!
//! The files are read again for each new connection, so that a certificate renewed on disk
//! (cert-manager, a Vault agent) is used at the next reconnect without a restart. A digest of
//! their bytes tells whether anything changed; only then are they parsed again, and a set that
//! does not parse (a half-written file, a key that does not match its certificate) is refused
//! with a warning and a count, and the last good one stays in use: a bad renewal must not take
//! the service down. At start-up, by contrast, a bad file stops it, with its key named
//! (`config`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::TlsConfig;
use crate::metrics::{Metrics, TlsReload};

/// `redis.tls.server_name`, or a host, as rustls wants it.
pub fn server_name(name: &str) -> Result<ServerName<'static>, InvalidDnsNameError> {
    ServerName::try_from(name.to_owned())
}

/// A file of `[redis.tls]` that cannot be used, and the key that names it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct MaterialError {
    pub key: &'static str,
    pub message: String,
}

/// The parsed contents of the files: trust anchors and, for mTLS, the client's chain and key.
pub struct Material {
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Material {
    /// Reads and parses the files, and checks that rustls accepts them together.
    pub fn read(config: &TlsConfig) -> Result<Self, MaterialError> {
        Files::read(config)?.parse()
    }

    fn client_config(self) -> Result<ClientConfig, MaterialError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| MaterialError {
                key: "redis.tls",
                message: error.to_string(),
            })?
            .with_root_certificates(self.roots);
        match self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((chain, key)) => {
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| MaterialError {
                        key: "redis.tls.client_key_file",
                        message: format!("does not go with redis.tls.client_cert_file: {error}"),
                    })
            }
        }
    }
}

/// The files' bytes, as read.
struct Files {
    /// `None`: the platform's roots.
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Files {
    fn read(config: &TlsConfig) -> Result<Self, MaterialError> {
        let ca = config
            .ca_file
            .as_deref()
            .map(|path| read_file("redis.tls.ca_file", path))
            .transpose()?;
        let client = match (&config.client_cert_file, &config.client_key_file) {
            (Some(cert), Some(key)) => Some((
                read_file("redis.tls.client_cert_file", cert)?,
                read_file("redis.tls.client_key_file", key)?,
            )),
            // `config` refuses one without the other.
            _ => None,
        };
        Ok(Self { ca, client })
    }

    fn digest(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        for part in [
            self.ca.as_deref(),
            self.client.as_ref().map(|(cert, _)| cert.as_slice()),
            self.client.as_ref().map(|(_, key)| key.as_slice()),
        ] {
            // Each part's length first, so that bytes moved from one file to the next differ.
            let part = part.unwrap_or_default();
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        digest.finalize().into()
    }

    fn parse(&self) -> Result<Material, MaterialError> {
        let roots = match &self.ca {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                let certificates = certificates("redis.tls.ca_file", pem)?;
                let (_, unusable) = roots.add_parsable_certificates(certificates);
                if roots.is_empty() {
                    return Err(MaterialError {
                        key: "redis.tls.ca_file",
                        message: format!("none of its {unusable} certificates is a usable CA"),
                    });
                }
                roots
            }
            None => platform_roots()?,
        };
        let client = match &self.client {
            None => None,
            Some((cert, key)) => {
                let chain = certificates("redis.tls.client_cert_file", cert)?;
                // The parser's message is not shown: it could quote the key.
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| MaterialError {
                    key: "redis.tls.client_key_file",
                    message: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
                })?;
                Some((chain, key))
            }
        };
        Ok(Material { roots, client })
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(path).map_err(|error| MaterialError {
        key,
        message: format!("{}: {error}", path.display()),
    })
}

fn certificates(
    key: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| MaterialError {
            key,
            message: format!("not a PEM certificate file: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(MaterialError {
            key,
            message: "holds no PEM certificate".into(),
        });
    }
    Ok(certificates)
}

fn platform_roots() -> Result<RootCertStore, MaterialError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(MaterialError {
            key: "redis.tls.ca_file",
            message: "is unset, and this platform has no CA certificates (SSL_CERT_FILE, \
                      SSL_CERT_DIR, /etc/ssl/certs); set it to the CA bundle of your Redis"
                .into(),
        });
    }
    Ok(roots)
}

/// TLS for the connections of one `Store`: the files' last good contents, made into a rustls
/// configuration, and the handshake.
pub struct Tls {
    config: TlsConfig,
    server_name: Option<ServerName<'static>>,
    current: Mutex<Loaded>,
    metrics: Metrics,
}

struct Loaded {
    /// Of the files last read, good or not, so that a bad set is reported once, not at
    /// every reconnect.
    digest: [u8; 32],
    client: Arc<ClientConfig>,
}

impl Tls {
    /// Reads the files; they must be good now (`config` has checked them already).
    pub fn new(config: &TlsConfig, metrics: Metrics) -> Result<Self, MaterialError> {
        let files = Files::read(config)?;
        let client = files.parse()?.client_config()?;
        let server_name = match &config.server_name {
            Some(name) => Some(server_name(name).map_err(|error| MaterialError {
                key: "redis.tls.server_name",
                message: error.to_string(),
            })?),
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            server_name,
            current: Mutex::new(Loaded {
                digest: files.digest(),
                client: Arc::new(client),
            }),
            metrics,
        })
    }

    /// The configuration for a new connection: from the files as they are now, when they
    /// changed and parse; else the last good one.
    ///
    /// The files are read with blocking I/O on the connector's task: they are a few KiB,
    /// read only when a connection is made (rarely), never on a request's path.
    fn client_config(&self) -> Arc<ClientConfig> {
        // A poisoned lock only means a panic elsewhere while holding it; the value is whole.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reloaded = Files::read(&self.config).and_then(|files| {
            let digest = files.digest();
            if digest == current.digest {
                return Ok(None);
            }
            current.digest = digest;
            files.parse()?.client_config().map(Some)
        });
        match reloaded {
            Ok(None) => {}
            Ok(Some(client)) => {
                current.client = Arc::new(client);
                self.metrics.count_tls_reload(TlsReload::Loaded);
                tracing::info!("loaded the changed redis.tls files; new connections use them");
            }
            Err(error) => {
                self.metrics.count_tls_reload(TlsReload::Rejected);
                tracing::warn!(
                    %error,
                    "the redis.tls files changed but cannot be used; keeping the last good ones"
                );
            }
        }
        current.client.clone()
    }

    /// The TLS handshake on `tcp` with the server at `host`, verified against
    /// `redis.tls.server_name` if set, else `host`. The error is the handshake's, whose
    /// inner `rustls::Error` (if any) says what failed.
    pub async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => server_name(host)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?,
        };
        TlsConnector::from(self.client_config())
            .connect(name, tcp)
            .await
    }
}
