//! `timestamp-api healthcheck`: asks the admin listener's `/readyz` and succeeds only on a 200.
//! Images without a shell or curl run it as their health check (Docker `HEALTHCHECK`, compose).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use warp::http::{StatusCode, Uri};

/// The whole probe (connect, request, answer) must fit in this.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `/readyz` on the configured admin address; a wildcard address (`0.0.0.0`, as containers
/// listen) is reached through the loopback interface.
pub fn default_url(admin_listen: SocketAddr) -> String {
    let ip = match admin_listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, admin_listen.port()))
}

/// `Ok` when `url` answers 200; otherwise why not, in one line.
pub async fn probe(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|error| format!("{url} is not a URL: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url} has no host"))?
        .clone();
    let path = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    let attempt = async {
        let stream = TcpStream::connect((
            authority.host().trim_matches(['[', ']']),
            authority.port_u16().unwrap_or(80),
        ))
        .await
        .map_err(|error| format!("cannot connect to {authority}: {error}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("HTTP handshake with {authority} failed: {error}"))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|error| format!("cannot build the request: {error}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("{url} did not answer: {error}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))
        }
    };
    tokio::time::timeout(TIMEOUT, attempt)
        .await
        .map_err(|_| format!("{url} did not answer within {TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_over_loopback() {
        let url = |addr: &str| default_url(addr.parse().unwrap());
        assert_eq!(url("0.0.0.0:9090"), "http://127.0.0.1:9090/readyz");
        assert_eq!(url("[::]:9090"), "http://[::1]:9090/readyz");
        assert_eq!(url("10.1.2.3:9191"), "http://10.1.2.3:9191/readyz");
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_probe() {
        assert!(
            probe("not a url")
                .await
                .unwrap_err()
                .contains("is not a URL")
        );
        assert!(
            probe("https://127.0.0.1:1/readyz")
                .await
                .unwrap_err()
                .contains("only http://")
        );
        assert!(
            probe("http://127.0.0.1:1/readyz")
                .await
                .unwrap_err()
                .contains("cannot connect")
        );
    }
}
