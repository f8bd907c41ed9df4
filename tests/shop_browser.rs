//! The example shop (`examples/shop`) walked in a real browser, as a person
//! would (issue 12, item 3): add to the cart and see the message once, log
//! in, log in from a second browser and revoke it from the first, log out
//! and press Back, and a cross-site page's forms that try to log the
//! visitor in (login CSRF) and out. Headless Chromium through chromedriver
//! (`support::browser`); the shop on the file store at
//! `http://localhost:PORT` (its `__Host-` cookie is `Secure`, which
//! browsers allow on localhost), the other site at `attacker.test`.
//!
//! The walk saves `target/browser/shop.png`, the README's screenshot.

mod support;

use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use carafe::{FileStore, SessionLayer};
use fantoccini::{Client, Locator};
use support::browser::{
    launch_or_skip, save_screenshot, wait_until_some, Browser, ATTACKER_HOST, ONE_BROWSER,
};
use support::{serve, SECRET};

/// The whole walk, both browsers' starts included.
const WALK_TIME: Duration = Duration::from_secs(90);

/// The text of the current page's body, once it has one.
async fn body_text(c: &Client) -> Option<String> {
    c.find(Locator::Css("body")).await.ok()?.text().await.ok()
}

/// Waits until the page's text contains every one of `want` and none of
/// `not`; answers the text.
async fn wait_for_page(c: &Client, want: &[&str], not: &[&str]) -> String {
    let what = format!("a page with {want:?} and without {not:?}");
    wait_until_some(&what, || async {
        let text = body_text(c).await?;
        (want.iter().all(|w| text.contains(w)) && !not.iter().any(|n| text.contains(n))).then_some(text)
    })
    .await
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Opens the other site's `page`, whose form posts itself to the shop, and
/// waits until the shop has answered the post.
async fn cross_site(c: &Client, page: &str, shop: &str) {
    c.goto(page).await.unwrap();
    wait_until_some(&format!("the shop to answer the form of {page}"), || async {
        let url = c.current_url().await.ok()?;
        url.as_str().starts_with(shop).then_some(())
    })
    .await;
}

async fn log_in(c: &Client, shop: &str, user: &str, password: &str) {
    c.goto(&format!("{shop}/login")).await.unwrap();
    wait_for_page(c, &["Remember me"], &[]).await;
    c.find(Locator::Id("user-field"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Id("password-field"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click(c, "#login-button").await;
    wait_for_page(
        c,
        &[&format!("Welcome, {user}."), &format!("Logged in as {user}")],
        &[],
    )
    .await;
}

/// The other site: two pages whose forms post to the shop as soon as they
/// load, one logging the visitor in as the attacker, one logging them out.
fn attacker(shop: &str) -> Router {
    let page = |action: String, fields: &'static str| {
        Html(format!(
            r#"<!doctype html><form id="f" method="post" action="{action}">{fields}</form>
               <script>document.getElementById('f').submit()</script>"#
        ))
    };
    let (login, logout) = (format!("{shop}/login"), format!("{shop}/logout"));
    Router::new()
        .route(
            "/login-csrf",
            get(move || async move {
                page(
                    login,
                    r#"<input name="user" value="alan"><input name="password" value="turing">"#,
                )
            }),
        )
        .route("/logout-csrf", get(move || async move { page(logout, "") }))
}

#[tokio::test]
async fn a_person_walks_the_shop() {
    let _one = ONE_BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let layer = SessionLayer::builder(FileStore::new(dir.path()).unwrap())
        .secret(SECRET)
        .build()
        .unwrap();
    let shop = format!("http://localhost:{}", serve(carafe_shop::app(layer)).await.port());
    let evil = format!("http://{ATTACKER_HOST}:{}", serve(attacker(&shop)).await.port());

    tokio::time::timeout(WALK_TIME, async {
        let Some(first) = launch_or_skip().await else {
            return;
        };
        let Some(second) = launch_or_skip().await else {
            return;
        };
        walk(&first, &second, &shop, &evil).await;
        first.quit().await;
        second.quit().await;
    })
    .await
    .unwrap_or_else(|_| panic!("the walk did not finish within {WALK_TIME:?}"));
}

async fn walk(first: &Browser, second: &Browser, shop: &str, evil: &str) {
    let a = first.client();

    // Add to the cart; the message shows once.
    a.goto(&format!("{shop}/")).await.unwrap();
    wait_for_page(a, &["Teas", "Log in", "Cart (0)"], &[]).await;
    click(a, "#add-darjeeling").await;
    wait_for_page(a, &["Added Darjeeling to your cart.", "Cart (1)"], &[]).await;
    a.refresh().await.unwrap();
    wait_for_page(a, &["Cart (1)"], &["Added Darjeeling"]).await;

    // A cross-site form that would log the visitor in as the attacker.
    cross_site(a, &format!("{evil}/login-csrf"), shop).await;
    a.goto(&format!("{shop}/")).await.unwrap();
    wait_for_page(a, &["Log in", "Cart (1)"], &["Logged in as", "alan"]).await;

    // Log in: the cart stays; the welcome shows once.
    log_in(a, shop, "ada", "lovelace").await;
    wait_for_page(a, &["Cart (1)"], &[]).await;
    save_screenshot(a, "shop.png").await;
    a.refresh().await.unwrap();
    wait_for_page(a, &["Logged in as ada"], &["Welcome, ada."]).await;

    // A cross-site form that would log the visitor out.
    cross_site(a, &format!("{evil}/logout-csrf"), shop).await;
    a.goto(&format!("{shop}/")).await.unwrap();
    wait_for_page(a, &["Logged in as ada"], &["You are logged out."]).await;

    // A second browser logs in as ada; the first revokes it.
    let b = second.client();
    log_in(b, shop, "ada", "lovelace").await;
    a.goto(&format!("{shop}/devices")).await.unwrap();
    wait_for_page(a, &["This device", "Log out this device"], &[]).await;
    click(a, "button.revoke").await;
    wait_for_page(a, &["That device is logged out."], &["Log out this device"]).await;
    b.refresh().await.unwrap();
    wait_for_page(b, &["Log in"], &["Logged in as"]).await;

    // Log out, then Back: no personal page comes back from the cache.
    click(a, "#logout").await;
    wait_for_page(a, &["You are logged out.", "Cart (0)"], &[]).await;
    a.back().await.unwrap();
    wait_for_page(a, &["Log in"], &["Logged in as", "This device", "Cart (1)"]).await;
}
