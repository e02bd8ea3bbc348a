//! A deliberately dumb HTTP/1.1 client over a TCP socket, for requests no
//! well-behaved client library would send: raw bytes in headers, thousands of
//! cookies, malformed lines.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back: status, headers (lower-cased names) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name`.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The value of the `Set-Cookie` for cookie `name`, if any.
    pub fn set_cookie_value(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.header_values("set-cookie").filter_map(|v| std::str::from_utf8(v).ok()).find_map(|v| {
            let pair = v.split(';').next()?;
            pair.strip_prefix(&prefix).map(str::to_owned)
        })
    }
}

/// Sends `method path` with the given raw header lines (each without CRLF)
/// and body, and reads the whole response (`Connection: close`).
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[Vec<u8>], body: &[u8]) -> RawResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for header in headers {
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);

    let mut stream = TcpStream::connect(addr).await.expect("connect to the test server");
    // The server may answer (and close) before reading everything, e.g. a 431;
    // that is an answer, not a failure of the test.
    let _ = stream.write_all(&request).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse(&raw)
}

/// A `Cookie: <value>` header line with arbitrary bytes.
pub fn cookie_header(value: &[u8]) -> Vec<u8> {
    [b"Cookie: ".as_slice(), value].concat()
}

fn parse(raw: &[u8]) -> RawResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().as_bytes().to_vec()))
        .collect();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    RawResponse { status, headers, body }
}
