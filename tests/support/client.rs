//! Tests over a real socket: [`serve`] an app on a free loopback port and
//! talk to it with [`http`] (one request, `Connection: close`) or a
//! [`Client`] that keeps the session cookie like a browser.

use std::net::SocketAddr;

use axum::Router;
use http::{header, StatusCode};

use super::Reply;

/// A minimal HTTP/1.1 client over a real socket (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Reply {
    try_http(addr, method, path, cookie, body)
        .await
        .expect("a complete HTTP response")
}

/// [`http`], for a server that may go away: `Err` when the connection
/// fails or the response is incomplete.
#[allow(dead_code)]
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<Reply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "incomplete response",
        ));
    }
    Ok(parse_http(&raw))
}

fn parse_http(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete HTTP response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let code: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let body = if headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let set_cookies = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    Reply {
        status: StatusCode::from_u16(code).unwrap(),
        body,
        set_cookies,
        headers,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Serves `app` on a free loopback port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// The session cookie of a reply that must set one.
pub fn cookie_of(reply: &Reply) -> String {
    reply.cookie().expect("a session cookie")
}

/// A client with a one-cookie jar: it sends the session cookie it holds and
/// keeps the one each response sets (dropping it when the response expires
/// it).
#[derive(Debug, Default, Clone)]
pub struct Client {
    pub cookie: Option<String>,
}

impl Client {
    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Reply {
        self.send(addr, "GET", path, "").await
    }

    pub async fn post(&mut self, addr: SocketAddr, path: &str, form: &str) -> Reply {
        self.send(addr, "POST", path, form).await
    }

    pub async fn send(&mut self, addr: SocketAddr, method: &str, path: &str, form: &str) -> Reply {
        let reply = http(addr, method, path, self.cookie.as_deref(), Some(form)).await;
        match reply.session_cookie() {
            Some(Some(pair)) => self.cookie = Some(pair),
            Some(None) => self.cookie = None,
            None => {}
        }
        reply
    }
}
