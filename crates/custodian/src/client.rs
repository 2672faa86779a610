//! A lean HTTP/1.1 client for the commands that talk to a server: one keep-alive
//! connection, plain HTTP on the local network. When `CUSTODIAN_TOKEN` is set, every
//! request carries it as a bearer token (`import --server`, `export --server`).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One HTTP/1.1 keep-alive connection.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
    /// `Bearer <CUSTODIAN_TOKEN>`, when it is set.
    authorization: Option<String>,
}

impl Connection {
    pub async fn open(address: &str) -> Result<Connection, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake failed: {error}"))?;
        tokio::spawn(connection);
        let authorization = std::env::var("CUSTODIAN_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty())
            .map(|token| format!("Bearer {}", token.trim()));
        Ok(Connection {
            sender,
            host: address.to_string(),
            authorization,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` on every request (instead of
    /// `CUSTODIAN_TOKEN`), when a token is given.
    pub fn bearer(mut self, token: Option<&str>) -> Connection {
        if let Some(token) = token {
            self.authorization = Some(format!("Bearer {token}"));
        }
        self
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), String> {
        self.request_with(method, path, body, &[]).await
    }

    /// A request with extra headers (such as `Prefer`), its answer read whole.
    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Bytes), String> {
        let mut all = vec![("accept", "application/fhir+json")];
        all.extend_from_slice(headers);
        let response = self.send(method, path, &all, body).await?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("reading the answer failed: {error}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// A request whose answer keeps its headers and can be streamed.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.host.as_str());
        if body.is_some() {
            builder = builder.header("content-type", "application/fhir+json");
        }
        let explicit = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let Some(authorization) = self.authorization.as_deref().filter(|_| !explicit) {
            builder = builder.header("authorization", authorization);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|error| error.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|error| format!("connection closed: {error}"))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|error| format!("{method} {path} failed: {error}"))
    }
}

/// `http://host:port/path` → (`host:port`, `/path`).
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--server {url:?}: only http:// URLs are supported"))?;
    let (address, path) = rest.split_once('/').unwrap_or((rest, ""));
    if address.is_empty() {
        return Err(format!("--server {url:?} has no host"));
    }
    let address = if address.contains(':') {
        address.to_string()
    } else {
        format!("{address}:80")
    };
    Ok((address, format!("/{}", path.trim_end_matches('/'))))
}
