//! Opening one connection to a Redis node or a Sentinel: TCP or a Unix socket, with `rediss://`
//! the TLS handshake (`crate::tls`), then one PING. The PING is there so that a server that will
//! not talk to us fails here, with its reason, rather than at a request: TLS 1.3 reports a
//! refused or missing client certificate only after the handshake, and a TLS port spoken to in
//! plaintext just closes the connection.
//!
//! A failure is named by a `ConnectFailure`: the `cause` label of
//! `timestamp_api_redis_reconnection_failures_total`, the `cause` of the 503 problem document
//! requests get while there is no connection, and a log line saying what to fix. The whole
//! attempt is bounded by `redis.connect_timeout`.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisError};
use rustls::{AlertDescription, CertificateError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::tls::Tls;

/// Why a connection could not be made: a fixed set, each with what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Timeout,
    Closed,
    Auth,
    TlsHandshake,
    TlsUnknownCa,
    TlsNameMismatch,
    TlsExpired,
    TlsClientCertificate,
    TlsOther,
    NotPrimary,
    UnknownMaster,
    Other,
}

impl ConnectFailure {
    pub const ALL: [Self; 13] = [
        Self::Refused,
        Self::Timeout,
        Self::Closed,
        Self::Auth,
        Self::TlsHandshake,
        Self::TlsUnknownCa,
        Self::TlsNameMismatch,
        Self::TlsExpired,
        Self::TlsClientCertificate,
        Self::TlsOther,
        Self::NotPrimary,
        Self::UnknownMaster,
        Self::Other,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Auth => "auth",
            Self::TlsHandshake => "tls_handshake",
            Self::TlsUnknownCa => "tls_unknown_ca",
            Self::TlsNameMismatch => "tls_name_mismatch",
            Self::TlsExpired => "tls_expired",
            Self::TlsClientCertificate => "tls_client_certificate",
            Self::TlsOther => "tls_other",
            Self::NotPrimary => "not_primary",
            Self::UnknownMaster => "unknown_master",
            Self::Other => "other",
        }
    }

    /// What happened, and what to check.
    pub const fn hint(self) -> &'static str {
        match self {
            Self::Refused => "nothing listens there: check the host and port",
            Self::Timeout => {
                "no answer within redis.connect_timeout: check the address, the \
                              network policy and the server's load"
            }
            Self::Closed => {
                "the server closed the connection before answering: if that port \
                             speaks TLS, use a rediss:// URL"
            }
            Self::Auth => {
                "the server refused the credentials: check redis.username and \
                           redis.password_file (or the Sentinel's)"
            }
            Self::TlsHandshake => {
                "no TLS handshake in time, or an answer that is not TLS: if \
                                   that port speaks plaintext, use a redis:// URL"
            }
            Self::TlsUnknownCa => {
                "the server's certificate is not signed by a CA in \
                                   redis.tls.ca_file (or the platform's roots): set the \
                                   provider's CA bundle"
            }
            Self::TlsNameMismatch => {
                "the server's certificate does not name the host: connect \
                                      by a name it carries, or set redis.tls.server_name"
            }
            Self::TlsExpired => {
                "the server's certificate has expired or is not valid yet: \
                                 renew it, or check the clock"
            }
            Self::TlsClientCertificate => {
                "the server refused the client certificate, or \
                                           wanted one: set or renew redis.tls.client_cert_file \
                                           and redis.tls.client_key_file"
            }
            Self::TlsOther => "the TLS handshake failed: see the error",
            Self::NotPrimary => "Sentinel names a node that is not a primary (yet)",
            Self::UnknownMaster => "the Sentinels do not monitor redis.sentinel.master",
            Self::Other => "see the error",
        }
    }
}

/// A connection that could not be made: its class and the underlying error (no certificate
/// bytes, no secrets: rustls and redis-rs errors name neither).
#[derive(Debug, thiserror::Error)]
#[error("{detail} ({})", .cause.label())]
pub struct DialError {
    pub cause: ConnectFailure,
    detail: String,
}

impl DialError {
    pub fn new(cause: ConnectFailure, detail: impl ToString) -> Self {
        Self {
            cause,
            detail: detail.to_string(),
        }
    }

    fn from_redis(error: &RedisError) -> Self {
        let cause = match error.code() {
            Some("NOAUTH" | "WRONGPASS" | "NOPERM") => ConnectFailure::Auth,
            _ if error.is_connection_refusal() => ConnectFailure::Refused,
            _ if error.is_io_error() || error.is_unrecoverable_error() => ConnectFailure::Closed,
            _ => ConnectFailure::Other,
        };
        Self::new(cause, error)
    }

    fn from_io(error: &std::io::Error) -> Self {
        let cause = match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => classify_tls(tls),
            None => match error.kind() {
                std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => ConnectFailure::Closed,
                _ => ConnectFailure::Other,
            },
        };
        Self::new(cause, error)
    }
}

fn classify_tls(error: &rustls::Error) -> ConnectFailure {
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                ConnectFailure::TlsUnknownCa
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                ConnectFailure::TlsNameMismatch
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => ConnectFailure::TlsExpired,
            _ => ConnectFailure::TlsOther,
        },
        // What a server sends when the client's certificate is missing or not accepted, or
        // (decrypt_error) signed for with a key that is not the certificate's.
        rustls::Error::AlertReceived(
            AlertDescription::DecryptError
            | AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied,
        ) => ConnectFailure::TlsClientCertificate,
        // Bytes that are not TLS records: a plaintext server answering the ClientHello.
        rustls::Error::InvalidMessage(_) => ConnectFailure::TlsHandshake,
        _ => ConnectFailure::TlsOther,
    }
}

/// Opens connections, with TLS when the store's URL is `rediss://`.
#[derive(Clone)]
pub struct Dialer {
    tls: Option<Arc<Tls>>,
    timeout: Duration,
}

impl Dialer {
    pub fn new(tls: Option<Arc<Tls>>, timeout: Duration) -> Self {
        Self { tls, timeout }
    }

    /// `redis.connect_timeout`, which bounds each connection attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The address of a node or Sentinel at `host:port`, to be reached with TLS if this dialer
    /// speaks it.
    pub fn address(&self, host: String, port: u16) -> ConnectionAddr {
        match self.tls {
            Some(_) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host, port),
        }
    }

    /// A connection for the data commands of the store, to a primary or a cluster node. It has
    /// no response timeout: every use of it has a deadline of its own, and a timeout inside
    /// redis-rs would look like a lost connection.
    pub async fn open_for_commands(
        &self,
        info: &ConnectionInfo,
    ) -> Result<MultiplexedConnection, DialError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        self.open(info, config).await
    }

    /// A connection to `info`'s address, set up (authenticated, database selected) and
    /// answering; `config` is the connection's own (its response timeout).
    pub async fn open(
        &self,
        info: &ConnectionInfo,
        config: AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, DialError> {
        let deadline = Instant::now() + self.timeout;
        let connection = match (info.addr(), &self.tls) {
            (ConnectionAddr::TcpTls { host, port, .. }, Some(tls)) => {
                let tcp = within(
                    deadline,
                    ConnectFailure::Timeout,
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await?
                .map_err(|error| DialError::from_io(&error))?;
                // Requests are small and answered at once: Nagle would only add delay.
                tcp.set_nodelay(true)
                    .map_err(|error| DialError::from_io(&error))?;
                let mut stream = within(
                    deadline,
                    ConnectFailure::TlsHandshake,
                    tls.handshake(host, tcp),
                )
                .await?
                .map_err(|error| DialError::from_io(&error))?;
                within(deadline, ConnectFailure::Timeout, probe(&mut stream))
                    .await?
                    .map_err(|error| DialError::from_io(&error))?;
                let (connection, driver) = within(
                    deadline,
                    ConnectFailure::Timeout,
                    MultiplexedConnection::new_with_config(info.redis_settings(), stream, config),
                )
                .await?
                .map_err(|error| DialError::from_redis(&error))?;
                // The connection's I/O; it ends when the last handle to the connection is
                // dropped, or the connection fails.
                tokio::spawn(driver);
                connection
            }
            (ConnectionAddr::TcpTls { .. }, None) => {
                return Err(DialError::new(
                    ConnectFailure::Other,
                    "a rediss:// address without TLS settings",
                ));
            }
            _ => {
                let client =
                    Client::open(info.clone()).map_err(|error| DialError::from_redis(&error))?;
                let mut connection = within(
                    deadline,
                    ConnectFailure::Timeout,
                    client.get_multiplexed_async_connection_with_config(&config),
                )
                .await?
                .map_err(|error| DialError::from_redis(&error))?;
                let pong = within(
                    deadline,
                    ConnectFailure::Timeout,
                    redis::cmd("PING").query_async::<()>(&mut connection),
                )
                .await?;
                match pong {
                    // An error reply is an answer too: a user whose ACL has no +ping (the
                    // service's on the Sentinels) gets NOPERM. Only NOAUTH means we cannot go on.
                    Err(error) if error.code().is_some_and(|code| code != "NOAUTH") => {}
                    Err(error) => return Err(DialError::from_redis(&error)),
                    Ok(()) => {}
                }
                connection
            }
        };
        Ok(connection)
    }
}

/// `step`, unless `deadline` passes first: then a failure of class `late`.
async fn within<T>(
    deadline: Instant,
    late: ConnectFailure,
    step: impl Future<Output = T>,
) -> Result<T, DialError> {
    tokio::time::timeout_at(deadline, step)
        .await
        .map_err(|_| DialError::new(late, "no answer within redis.connect_timeout"))
}

/// One PING on the raw TLS stream, before redis-rs takes it: any reply line (PONG, or NOAUTH
/// before authentication) shows that the server accepted the TLS session.
async fn probe<S>(stream: &mut S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    stream.flush().await?;
    let mut reply = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    // A reply line is short; reading it byte by byte leaves nothing behind for redis-rs.
    while !reply.ends_with(b"\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if reply.len() == 512 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "an over-long reply to PING",
            ));
        }
        reply.push(byte[0]);
    }
    Ok(())
}
