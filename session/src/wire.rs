//! The session cookie on the wire: finding it in a request, and the
//! `Set-Cookie`, `Vary` and `Cache-Control` headers of the response.

use cookie::Cookie;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{to_time, Config, CookieExpiry};

/// The most values of cookies bearing the session cookie's name that are
/// looked at (verified, decrypted) per request. A browser sends one; a few
/// more come from cookies set for a parent domain or path. Bounding this
/// keeps a request with thousands of such pairs cheap.
pub(crate) const MAX_CANDIDATES: usize = 3;

/// The session cookies a request offered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Offered {
    /// The values of the first [`MAX_CANDIDATES`] cookies with the session
    /// cookie's name, in the order the request sent them.
    pub(crate) values: Vec<String>,
}

impl Offered {
    /// Whether the request carried a cookie with the session cookie's name
    /// (valid or not).
    pub(crate) fn any(&self) -> bool {
        !self.values.is_empty()
    }
}

/// Finds the cookies named `name` in the request's `Cookie` headers.
///
/// A header that is not ASCII is read as UTF-8 with invalid bytes replaced,
/// so one odd cookie pair (an accented value set by another application on
/// the domain) does not hide the session cookie beside it.
pub(crate) fn offered(headers: &[HeaderValue], name: &str) -> Offered {
    let mut values = Vec::new();
    for header in headers {
        let text = String::from_utf8_lossy(header.as_bytes());
        let found = Cookie::split_parse(text.as_ref())
            .filter_map(Result::ok)
            .filter(|cookie| cookie.name() == name)
            .map(|cookie| cookie.value().to_owned());
        for value in found {
            if values.len() == MAX_CANDIDATES {
                return Offered { values };
            }
            values.push(value);
        }
    }
    Offered { values }
}

/// A short, non-reversible tag of a cookie value for logs: the first 8 hex
/// digits of its SHA-256. Enough to tell two failures apart, useless for
/// replaying the cookie.
pub(crate) fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    hex::encode(&digest[..4])
}

/// What the response must tell the browser about the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Nothing: the browser's cookie (or its lack of one) is right.
    Keep,
    /// Set the cookie to this value, expiring as `expiry` says (the
    /// layer's `cookie_expires`, or the session's own).
    Set { value: String, expiry: CookieExpiry },
    /// Remove the cookie the browser sent.
    Remove,
}

fn base_cookie(config: &Config, value: String) -> cookie::CookieBuilder<'static> {
    let mut builder = Cookie::build((config.cookie_name.clone(), value))
        .path(config.cookie_path.clone())
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(config.same_site);
    if let Some(domain) = &config.cookie_domain {
        builder = builder.domain(domain.clone());
    }
    builder
}

/// The session cookie carrying `value`, with the configured attributes.
pub(crate) fn session_cookie(
    config: &Config,
    value: String,
    expiry: CookieExpiry,
    now: OffsetDateTime,
) -> Cookie<'static> {
    let builder = base_cookie(config, value);
    match expiry {
        CookieExpiry::BrowserSession => builder.build(),
        CookieExpiry::MaxAge(age) => {
            let age = to_time(age);
            builder.max_age(age).expires(now.saturating_add(age)).build()
        }
        CookieExpiry::At(at) => builder.expires(at).build(),
    }
}

/// The cookie that makes the browser drop the session cookie.
pub(crate) fn removal_cookie(config: &Config) -> Cookie<'static> {
    base_cookie(config, String::new())
        .max_age(time::Duration::ZERO)
        .expires(OffsetDateTime::UNIX_EPOCH)
        .build()
}

/// Adds what a response to a request that loaded the session must carry:
/// `Vary: Cookie` always (the answer depends on the cookie), and for a
/// cookie change the `Set-Cookie` header and a `Cache-Control` that keeps
/// shared caches from storing it.
pub(crate) fn finish_headers(
    headers: &mut HeaderMap,
    config: &Config,
    action: CookieAction,
    now: OffsetDateTime,
) {
    add_vary_cookie(headers);
    let cookie = match action {
        CookieAction::Keep => return,
        CookieAction::Set { value, expiry } => session_cookie(config, value, expiry, now),
        CookieAction::Remove => removal_cookie(config),
    };
    let Ok(value) = HeaderValue::try_from(cookie.to_string()) else {
        tracing::error!("session cookie is not a valid header value; not sent");
        return;
    };
    headers.append(SET_COOKIE, value);
    make_private(headers);
}

fn add_vary_cookie(headers: &mut HeaderMap) {
    let varies = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("cookie") || v.trim() == "*");
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

/// A response that sets a cookie must never be stored by a shared cache:
/// without a `Cache-Control`, `private, no-cache="Set-Cookie"`; with one,
/// `public` (and `s-maxage`, a shared-cache lifetime) dropped and `private`
/// added, unless it already forbids storing.
fn make_private(headers: &mut HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache=\"Set-Cookie\""),
        );
        return;
    }
    let name = |d: &str| d.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
    let mut kept: Vec<String> = directives
        .into_iter()
        .filter(|d| !matches!(name(d).as_str(), "public" | "s-maxage"))
        .collect();
    if !kept
        .iter()
        .any(|d| matches!(name(d).as_str(), "private" | "no-store"))
    {
        kept.insert(0, "private".to_owned());
    }
    match HeaderValue::try_from(kept.join(", ")) {
        Ok(value) => {
            headers.insert(CACHE_CONTROL, value);
        }
        Err(_) => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        }
    }
}

/// The response for a request whose session could not be saved or loaded.
pub(crate) fn store_failure<B: From<&'static str>>() -> Response<B> {
    failure("session store unavailable\n")
}

/// The response for a request whose session could not be saved because of
/// `err`: a 500 in either case, whose body says when the session was too
/// large for the store (the sizes go to the log, not to the client).
pub(crate) fn save_failure<B: From<&'static str>>(err: &crate::error::StoreError) -> Response<B> {
    match err {
        crate::error::StoreError::TooLarge { .. } => failure("session too large for the session store\n"),
        _ => store_failure(),
    }
}

fn failure<B: From<&'static str>>(body: &'static str) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> HeaderValue {
        HeaderValue::from_bytes(bytes).expect("a header value")
    }

    #[test]
    fn an_odd_pair_does_not_hide_the_session_cookie() {
        let cases: [(&[u8], &[&str]); 6] = [
            (b"carafe.sid=abc", &["abc"]),
            (b"theme=caf\xc3\xa9; carafe.sid=abc", &["abc"]),
            (b"x=\xff\xfe; carafe.sid=abc; y=\xe9", &["abc"]),
            (b"carafe.sid=abc; carafe.sid=def", &["abc", "def"]),
            (b"other=1", &[]),
            (b"=; ;;carafe.sid=abc", &["abc"]),
        ];
        for (bytes, expected) in cases {
            let found = offered(&[header(bytes)], "carafe.sid");
            assert_eq!(found.values, expected, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn at_most_a_few_candidates_are_taken() {
        let many = (0..4000)
            .map(|i| format!("carafe.sid=v{i}"))
            .collect::<Vec<_>>()
            .join("; ");
        let found = offered(
            &[header(many.as_bytes()), header(b"carafe.sid=late")],
            "carafe.sid",
        );
        assert_eq!(found.values, ["v0", "v1", "v2"]);
        assert!(found.any());
        assert!(!offered(&[], "carafe.sid").any());
    }

    #[test]
    fn fingerprints_are_short_and_hide_the_value() {
        let value = "0123456789abcdef";
        let tag = fingerprint(value);
        assert_eq!(tag.len(), 8);
        assert!(!tag.contains(value) && !value.contains(&tag));
        assert_ne!(tag, fingerprint("0123456789abcdeg"));
    }

    /// Finishes `headers` with the default config at the epoch.
    fn finish(headers: &mut HeaderMap, action: CookieAction) {
        finish_headers(headers, &Config::default(), action, OffsetDateTime::UNIX_EPOCH);
    }

    fn cache_control(existing: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in existing {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).expect("ascii"));
        }
        finish(
            &mut headers,
            CookieAction::Set {
                value: "v".into(),
                expiry: CookieExpiry::BrowserSession,
            },
        );
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        let values: Vec<_> = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(values.len(), 1, "{values:?}");
        values[0].clone()
    }

    #[test]
    fn a_response_that_sets_the_cookie_is_never_shared_cacheable() {
        assert_eq!(cache_control(&[]), "private, no-cache=\"Set-Cookie\"");
        assert_eq!(cache_control(&["public, max-age=600"]), "private, max-age=600");
        assert_eq!(
            cache_control(&["max-age=600, s-maxage=900"]),
            "private, max-age=600"
        );
        assert_eq!(cache_control(&["Public", "max-age=60"]), "private, max-age=60");
        assert_eq!(cache_control(&["private, max-age=0"]), "private, max-age=0");
        assert_eq!(cache_control(&["no-store"]), "no-store");
        assert_eq!(cache_control(&["no-store, public"]), "no-store");
    }

    #[test]
    fn vary_cookie_is_added_once_even_without_a_cookie_change() {
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding, cookie"));
        finish(&mut headers, CookieAction::Keep);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        assert!(headers.get(CACHE_CONTROL).is_none());
        let mut headers = HeaderMap::new();
        finish(&mut headers, CookieAction::Keep);
        assert_eq!(headers[VARY], "Cookie");
        assert!(headers.get(SET_COOKIE).is_none());
    }

    #[test]
    fn removal_expires_the_cookie_with_the_same_attributes() {
        let mut headers = HeaderMap::new();
        finish(&mut headers, CookieAction::Remove);
        let set = headers[SET_COOKIE].to_str().unwrap();
        assert!(set.starts_with("__Host-carafe.sid=;"), "{set}");
        assert!(
            set.contains("Max-Age=0") && set.contains("Secure") && set.contains("HttpOnly"),
            "{set}"
        );
    }
}
