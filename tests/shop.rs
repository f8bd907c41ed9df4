//! The example shop (`examples/shop`, issue 12 item 2) over HTTP, as a
//! person would use it, on the file store it runs on by default and on
//! every other server-side store: CSRF on every form, login (id cycled,
//! remember me), a cart that survives the login, flash messages once,
//! preferences, "your devices" with revocation, logout, `no-store` pages.

mod support;

use carafe::testing::{TestClient, TestResponse};
use carafe::{SessionLayer, SessionStore};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::StatusCode;
use support::SECRET;

fn layer(store: std::sync::Arc<dyn SessionStore>) -> SessionLayer {
    SessionLayer::builder(store).secret(SECRET).build().unwrap()
}

/// The CSRF token in a page's first form.
fn token(page: &TestResponse) -> String {
    let html = page.text();
    let at = html
        .find("name=\"csrf_token\" value=\"")
        .expect("a form with a CSRF token")
        + 25;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Posts `form` (plus the CSRF token of a fresh `GET from`).
async fn post(client: &mut TestClient, from: &str, path: &str, form: &str) -> TestResponse {
    let page = client.get(from).await;
    let body = if form.is_empty() {
        format!("csrf_token={}", token(&page))
    } else {
        format!("{form}&csrf_token={}", token(&page))
    };
    client.post_form(path, &body).await
}

fn location(r: &TestResponse) -> &str {
    r.headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The `Set-Cookie` header of the session cookie, if the response sets it.
fn session_set_cookie(r: &TestResponse) -> Option<String> {
    r.headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(support::COOKIE))
        .map(str::to_owned)
}

/// The `handle` values of the other devices' revoke forms.
fn handles(page: &str) -> Vec<String> {
    page.match_indices("name=\"handle\" value=\"")
        .map(|(at, m)| page[at + m.len()..].split('"').next().unwrap().to_owned())
        .collect()
}

async fn log_in(client: &mut TestClient, user: &str, password: &str, remember: bool) -> TestResponse {
    let remember = if remember { "&remember=on" } else { "" };
    post(
        client,
        "/login",
        "/login",
        &format!("user={user}&password={password}{remember}"),
    )
    .await
}

#[tokio::test]
async fn a_visit_from_browsing_to_logout_on_every_server_store() {
    let dir = tempfile::tempdir().unwrap();
    for store in support::stores::server_stores(dir.path()).await {
        let name = store.name();
        let app = carafe_shop::app(layer(store));
        let mut browser = TestClient::new(app.clone());

        let home = browser.get("/").await;
        assert_eq!(home.status, StatusCode::OK, "{name}");
        assert_eq!(
            home.headers[CACHE_CONTROL], "no-store",
            "{name}: pages are not cached"
        );
        assert!(home.text().contains("Log in"), "{name}");

        // A form without its token is refused; with it, the cart fills and
        // the message shows once, after the redirect.
        let forged = browser.post_form("/cart/add", "product=sencha").await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{name}");
        let r = post(&mut browser, "/", "/cart/add", "product=darjeeling").await;
        assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/"), "{name}");
        let page = browser.get("/").await.text();
        assert!(page.contains("Added Darjeeling to your cart."), "{name}: {page}");
        assert!(page.contains("Cart (1)"), "{name}");
        assert!(
            !browser.get("/").await.text().contains("Added Darjeeling"),
            "{name}: shown once"
        );

        // Wrong password: a message, no login.
        log_in(&mut browser, "ada", "wrong", false).await;
        let page = browser.get("/login").await.text();
        assert!(page.contains("Wrong user or password."), "{name}");
        assert!(!page.contains("Logged in as"), "{name}");

        // Login: a new id, the cart kept, a welcome.
        let anonymous = browser.cookie_header();
        let r = log_in(&mut browser, "ada", "lovelace", false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}");
        assert_ne!(
            browser.cookie_header(),
            anonymous,
            "{name}: the id is cycled at login"
        );
        let page = browser.get("/").await.text();
        assert!(page.contains("Welcome, ada."), "{name}");
        assert!(page.contains("Logged in as <strong>ada</strong>"), "{name}");
        assert!(page.contains("Cart (1)"), "{name}: the cart survives the login");
        let cart = browser.get("/cart").await;
        assert_eq!(cart.headers[CACHE_CONTROL], "no-store", "{name}");
        assert!(cart.text().contains("€8.50"), "{name}");

        // Preferences: saved with no call, shown on every page.
        post(&mut browser, "/preferences", "/preferences", "theme=dark").await;
        let page = browser.get("/preferences").await.text();
        assert!(
            page.contains("Preferences saved.") && page.contains("class=\"dark\""),
            "{name}"
        );

        // Logout: the session ends; a message in the new one; personal pages
        // need a login again.
        let r = post(&mut browser, "/", "/logout", "").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}");
        let page = browser.get("/").await.text();
        assert!(
            page.contains("You are logged out.") && page.contains("Cart (0)"),
            "{name}"
        );
        let r = browser.get("/devices").await;
        assert_eq!(
            (r.status, location(&r)),
            (StatusCode::SEE_OTHER, "/login"),
            "{name}"
        );
        assert!(
            browser
                .get("/login")
                .await
                .text()
                .contains("Please log in first."),
            "{name}"
        );
    }
}

#[tokio::test]
async fn devices_are_listed_and_revoked_on_every_server_store() {
    let dir = tempfile::tempdir().unwrap();
    for store in support::stores::server_stores(dir.path()).await {
        let name = store.name();
        let app = carafe_shop::app(layer(store));
        let (mut laptop, mut phone, mut other) = (
            TestClient::new(app.clone()),
            TestClient::new(app.clone()),
            TestClient::new(app.clone()),
        );
        log_in(&mut laptop, "ada", "lovelace", false).await;
        log_in(&mut phone, "ada", "lovelace", true).await;
        log_in(&mut other, "alan", "turing", false).await;

        let page = laptop.get("/devices").await.text();
        assert_eq!(
            page.matches("<tr").count(),
            3,
            "{name}: a header and ada's two sessions: {page}"
        );
        assert_eq!(page.matches("This device").count(), 1, "{name}");
        let phone_handle = handles(&page);
        assert_eq!(phone_handle.len(), 1, "{name}");

        // Another user's page and handles are their own.
        let alan = other.get("/devices").await.text();
        assert!(handles(&alan).is_empty(), "{name}: alan has one session, his own");

        // A made-up handle, or ada's handle from alan's session: 404, nothing revoked.
        let r = post(&mut laptop, "/devices", "/devices/revoke", "handle=made-up").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}");
        let r = post(
            &mut other,
            "/devices",
            "/devices/revoke",
            &format!("handle={}", phone_handle[0]),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}: another user's handle");
        assert!(
            phone.get("/").await.text().contains("Logged in as"),
            "{name}: the phone is still in"
        );

        // Revoked from the laptop: the phone is logged out on its next request.
        let r = post(
            &mut laptop,
            "/devices",
            "/devices/revoke",
            &format!("handle={}", phone_handle[0]),
        )
        .await;
        assert_eq!(
            (r.status, location(&r)),
            (StatusCode::SEE_OTHER, "/devices"),
            "{name}"
        );
        assert!(
            laptop
                .get("/devices")
                .await
                .text()
                .contains("That device is logged out."),
            "{name}"
        );
        assert!(phone.get("/").await.text().contains("Log in"), "{name}: revoked");

        // Log out all other devices (after a password change, say).
        let mut tablet = TestClient::new(app.clone());
        log_in(&mut tablet, "ada", "lovelace", false).await;
        let r = post(&mut laptop, "/devices", "/devices/revoke-others", "").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}");
        assert!(
            laptop
                .get("/devices")
                .await
                .text()
                .contains("Logged out 1 other device(s)."),
            "{name}"
        );
        assert!(tablet.get("/").await.text().contains("Log in"), "{name}");
        assert!(
            laptop.get("/").await.text().contains("Logged in as"),
            "{name}: this device stays"
        );
        assert!(
            other.get("/").await.text().contains("Logged in as"),
            "{name}: alan is untouched"
        );
    }
}

#[tokio::test]
async fn remember_me_gives_a_persistent_cookie_and_a_plain_login_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn SessionStore> =
        std::sync::Arc::new(carafe::FileStore::new(dir.path()).unwrap());
    let app = carafe_shop::app(layer(store));
    for (remember, max_age) in [(true, Some(carafe_shop::REMEMBER_FOR.as_secs())), (false, None)] {
        let mut browser = TestClient::new(app.clone());
        let r = log_in(&mut browser, "ada", "lovelace", remember).await;
        let cookie = session_set_cookie(&r).expect("the login sets the session cookie");
        let got = cookie
            .split("; ")
            .find_map(|a| a.strip_prefix("Max-Age="))
            .map(|v| v.parse::<u64>().unwrap());
        assert_eq!(got, max_age, "remember={remember}: {cookie}");
    }
}

#[tokio::test]
async fn revoking_this_devices_own_handle_is_a_logout_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn SessionStore> =
        std::sync::Arc::new(carafe::FileStore::new(dir.path()).unwrap());
    let layer = layer(store);
    let app = carafe_shop::app(layer.clone());
    let mut browser = TestClient::new(app);
    log_in(&mut browser, "ada", "lovelace", false).await;
    // The page shows no button for this device; a crafted form can still
    // post its handle (the admin call lists it).
    let own = layer.owner_sessions("ada").await.unwrap();
    assert_eq!(own.len(), 1);
    let r = post(
        &mut browser,
        "/devices",
        "/devices/revoke",
        &format!("handle={}", own[0].handle),
    )
    .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/"));
    let page = browser.get("/").await.text();
    assert!(
        page.contains("You are logged out.") && page.contains("Log in"),
        "{page}"
    );
    assert!(layer.owner_sessions("ada").await.unwrap().is_empty());
}

#[tokio::test]
async fn logging_in_over_another_users_session_keeps_nothing_of_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn SessionStore> =
        std::sync::Arc::new(carafe::FileStore::new(dir.path()).unwrap());
    let mut browser = TestClient::new(carafe_shop::app(layer(store)));
    log_in(&mut browser, "ada", "lovelace", true).await;
    post(&mut browser, "/", "/cart/add", "product=sencha").await;
    assert!(browser.get("/").await.text().contains("Cart (1)"));
    // alan logs in on ada's browser, without "remember me".
    let r = log_in(&mut browser, "alan", "turing", false).await;
    let cookie = session_set_cookie(&r).expect("a new session cookie");
    assert!(!cookie.contains("Max-Age"), "not ada's remember-me: {cookie}");
    let page = browser.get("/").await.text();
    assert!(
        page.contains("Logged in as <strong>alan</strong>") && page.contains("Cart (0)"),
        "{page}"
    );
    // The same user again keeps the cart (a re-login, not a new visitor).
    post(&mut browser, "/", "/cart/add", "product=assam").await;
    log_in(&mut browser, "alan", "turing", false).await;
    assert!(browser.get("/").await.text().contains("Cart (1)"));
}

#[tokio::test]
async fn a_cart_holds_at_most_max_quantity_of_a_tea() {
    let store: std::sync::Arc<dyn SessionStore> = std::sync::Arc::new(carafe::MemoryStore::new());
    let mut browser = TestClient::new(carafe_shop::app(layer(store)));
    let page = browser.get("/").await;
    let form = format!("product=assam&csrf_token={}", token(&page));
    for _ in 0..carafe_shop::MAX_QUANTITY {
        browser.post_form("/cart/add", &form).await;
    }
    let r = browser.post_form("/cart/add", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = browser.get("/").await.text();
    assert!(
        page.contains(&format!("At most {} of each tea.", carafe_shop::MAX_QUANTITY)),
        "{page}"
    );
    assert!(
        page.contains(&format!("Cart ({})", carafe_shop::MAX_QUANTITY)),
        "{page}"
    );
}
