//! Which unsafe requests may go on to the token check: the method, the
//! browser's `Sec-Fetch-Site` and the `Origin` against the request's host.
//! Pure: no I/O.

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Method, Uri};

use crate::csrf::CsrfError;

/// What the layer does with a request before looking at any token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A safe method (`GET`, `HEAD`, `OPTIONS`, `TRACE`): no check.
    Safe,
    /// An unsafe method from an acceptable origin: the token decides.
    NeedsToken,
    /// Refused before any token is read.
    Refuse(CsrfError),
}

/// Whether `method` changes state (RFC 9110 §9.2.1: all but the safe ones).
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The request's own origin host (`host[:port]`): the `Host` header, or the
/// URI's authority (HTTP/2).
fn own_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|authority| authority.as_str()))
}

/// The `host[:port]` of an origin (`scheme://host[:port]`).
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    let valid = matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/');
    valid.then_some(rest)
}

/// Decides what happens to a request before its token is looked at.
/// `trusted`: origins (`https://shop.example`) allowed besides the
/// request's own host.
pub(crate) fn judge(method: &Method, uri: &Uri, headers: &HeaderMap, trusted: &[String]) -> Verdict {
    if is_safe(method) {
        return Verdict::Safe;
    }
    let origin = headers.get(ORIGIN).map(|value| value.to_str().unwrap_or(""));
    let is_trusted = |origin: &str| trusted.iter().any(|t| t.eq_ignore_ascii_case(origin));
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    match fetch_site {
        Some("cross-site") if !origin.is_some_and(is_trusted) => {
            return Verdict::Refuse(CsrfError::CrossSite)
        }
        // Another origin on the same site (a subdomain) only if trusted.
        Some("same-site") if !origin.is_some_and(is_trusted) => return Verdict::Refuse(CsrfError::CrossSite),
        _ => {}
    }
    if let Some(origin) = origin {
        let same = match (origin_host(origin), own_host(headers, uri)) {
            (Some(theirs), Some(ours)) => theirs.eq_ignore_ascii_case(ours),
            _ => false,
        };
        if !same && !is_trusted(origin) {
            return Verdict::Refuse(CsrfError::OriginMismatch);
        }
    }
    Verdict::NeedsToken
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn verdict(method: Method, headers: &[(&str, &str)]) -> Verdict {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_static("shop.example"));
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let trusted = ["https://pay.example".to_owned()];
        judge(&method, &Uri::from_static("/login"), &map, &trusted)
    }

    #[test]
    fn the_table() {
        use Verdict::{NeedsToken, Refuse, Safe};
        let cross = Refuse(CsrfError::CrossSite);
        let mismatch = Refuse(CsrfError::OriginMismatch);
        type Headers = Vec<(&'static str, &'static str)>;
        let cases: Vec<(Method, Headers, Verdict)> = vec![
            (Method::GET, vec![("sec-fetch-site", "cross-site")], Safe),
            (Method::HEAD, vec![("origin", "https://evil.example")], Safe),
            (Method::OPTIONS, vec![], Safe),
            (Method::POST, vec![], NeedsToken),
            (Method::PUT, vec![("sec-fetch-site", "same-origin")], NeedsToken),
            (Method::POST, vec![("sec-fetch-site", "none")], NeedsToken),
            (Method::POST, vec![("sec-fetch-site", "cross-site")], cross),
            (
                Method::DELETE,
                vec![
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://blog.shop.example"),
                ],
                Refuse(CsrfError::CrossSite),
            ),
            (
                Method::POST,
                vec![
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://pay.example"),
                ],
                NeedsToken,
            ),
            (Method::POST, vec![("origin", "https://shop.example")], NeedsToken),
            (Method::POST, vec![("origin", "http://SHOP.example")], NeedsToken),
            (Method::POST, vec![("origin", "https://evil.example")], mismatch),
            (
                Method::POST,
                vec![("origin", "null")],
                Refuse(CsrfError::OriginMismatch),
            ),
            (
                Method::POST,
                vec![("origin", "https://shop.example.evil.example")],
                Refuse(CsrfError::OriginMismatch),
            ),
            (
                Method::PATCH,
                vec![("origin", "https://shop.example/path")],
                Refuse(CsrfError::OriginMismatch),
            ),
            (Method::POST, vec![("origin", "https://pay.example")], NeedsToken),
        ];
        for (method, headers, want) in cases {
            assert_eq!(verdict(method.clone(), &headers), want, "{method} {headers:?}");
        }
    }

    #[test]
    fn without_a_host_an_origin_is_refused() {
        let mut map = HeaderMap::new();
        map.insert(ORIGIN, HeaderValue::from_static("https://shop.example"));
        assert_eq!(
            judge(&Method::POST, &Uri::from_static("/"), &map, &[]),
            Verdict::Refuse(CsrfError::OriginMismatch)
        );
    }
}
