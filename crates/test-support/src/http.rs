//! A minimal async HTTP/1.1 client over `tokio::net::TcpStream`, enough to probe `/health`
//! and `/metrics` of a service under test without an HTTP client dependency.
//!
//! Every request is sent with `Connection: close` and the response is read to EOF;
//! `Content-Length` and `Transfer-Encoding: chunked` bodies are decoded.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The timeout [`get`] uses, generous so a slow CI machine passes but a hang still fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A response: status, headers in order (names lowercased), body as UTF-8 (lossy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {:?}", self.body))
    }
}

/// `GET path` on `addr`, failing after [`DEFAULT_TIMEOUT`].
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    get_with_timeout(addr, path, DEFAULT_TIMEOUT).await
}

/// `GET path` on `addr`, failing if the whole exchange takes longer than `timeout`.
pub async fn get_with_timeout(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<HttpResponse> {
    request(addr, "GET", path, &[], None, timeout).await
}

/// Any request: `method path` with extra `headers` and an optional body (sent with its
/// `Content-Length`), failing after `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(timeout, exchange(addr, method, path, headers, body))
        .await
        .with_context(|| format!("{method} http://{addr}{path} timed out after {timeout:?}"))?
        .with_context(|| format!("{method} http://{addr}{path}"))
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.context("write request")?;
    if let Some(body) = body {
        stream.write_all(body).await.context("write body")?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.context("read response")?;
    parse_response(&raw)
}

/// Parses a complete HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers in response")?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x status line: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').with_context(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let response = HttpResponse { status, headers, body: String::new() };
    let body = if response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().with_context(|| format!("bad content-length {length:?}"))?;
        if rest.len() < length {
            bail!("body truncated: {} of {length} bytes", rest.len());
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { body: String::from_utf8_lossy(&body).into_owned(), ..response })
}

fn decode_chunked(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end =
            data.windows(2).position(|w| w == b"\r\n").context("chunk size line not terminated")?;
        let size_line = std::str::from_utf8(&data[..line_end]).context("chunk size not UTF-8")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_hex, 16).with_context(|| format!("bad chunk size {size_line:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            bail!("chunk truncated");
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// Serves one canned response per connection and returns the request it got.
    async fn server(response: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn get_reads_status_headers_and_body() {
        let (addr, task) = server(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"x\"}\n",
        )
        .await;
        let response = get(addr, "/health").await.unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.json().unwrap()["status"], "x");
        let request = task.await.unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Connection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded() {
        let (addr, _task) = server(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(get(addr, "/").await.unwrap().body, "abcdefg");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let err = get_with_timeout(addr, "/health", Duration::from_millis(200)).await.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err:#}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_response(b"hello").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_err());
    }
}
