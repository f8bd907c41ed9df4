//! The shop's HTML, with maud (every value is escaped).

use carafe::csrf::CsrfToken;
use carafe::flash::Message;
use carafe::OwnedSession;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use time::macros::format_description;
use time::OffsetDateTime;

use crate::model::{money, product, Cart, Theme, PRODUCTS};

/// What every page shows around its content.
pub struct Frame {
    /// Who is logged in.
    pub user: Option<String>,
    /// Items in the cart.
    pub cart_count: u32,
    /// The colours.
    pub theme: Theme,
    /// The messages to show once.
    pub flashes: Vec<Message>,
    /// The CSRF token for this page's forms.
    pub token: CsrfToken,
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
body.dark { background: #1e1f22; color: #e8e8e8; }
body.dark a { color: #8ab4f8; }
nav { display: flex; gap: 1rem; align-items: center; border-bottom: 1px solid #8884; padding-bottom: .5rem; }
nav .user { margin-left: auto; }
.flash { padding: .5rem .75rem; border-radius: .3rem; margin: .5rem 0; }
.flash.info { background: #dbeafe; color: #1e3a8a; }
.flash.success { background: #dcfce7; color: #14532d; }
.flash.warning { background: #fef9c3; color: #713f12; }
.flash.error { background: #fee2e2; color: #7f1d1d; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #8883; }
form.inline { display: inline; }
";

/// The page around `content`.
pub fn layout(title: &str, frame: &Frame, content: Markup) -> Markup {
    let dark = frame.theme == Theme::Dark;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · carafe shop" }
                style { (PreEscaped(STYLE)) }
            }
            body class=[dark.then_some("dark")] {
                nav {
                    a href="/" { "Shop" }
                    a href="/cart" id="cart-link" { "Cart (" (frame.cart_count) ")" }
                    a href="/preferences" { "Preferences" }
                    @if let Some(user) = &frame.user {
                        a href="/devices" { "Your devices" }
                        span.user id="user" { "Logged in as " strong { (user) } }
                        form.inline method="post" action="/logout" {
                            (token_input(&frame.token))
                            button id="logout" { "Log out" }
                        }
                    } @else {
                        span.user { a href="/login" id="login-link" { "Log in" } }
                    }
                }
                @for message in &frame.flashes {
                    p class={ "flash " (message.level) } role="status" { (message.body) }
                }
                h1 { (title) }
                (content)
            }
        }
    }
}

fn token_input(token: &CsrfToken) -> Markup {
    html! { input type="hidden" name=(carafe::csrf::FIELD) value=(token.as_str()); }
}

/// The catalogue, with an "add" button per product.
pub fn shop(frame: &Frame) -> Markup {
    layout(
        "Teas",
        frame,
        html! {
            table {
                @for p in PRODUCTS {
                    tr {
                        td { (p.name) }
                        td { (money(p.cents)) }
                        td {
                            form.inline method="post" action="/cart/add" {
                                (token_input(&frame.token))
                                input type="hidden" name="product" value=(p.id);
                                button id={ "add-" (p.id) } { "Add to cart" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The cart.
pub fn cart(frame: &Frame, cart: &Cart) -> Markup {
    layout(
        "Your cart",
        frame,
        html! {
            @if cart.items.is_empty() {
                p id="empty" { "Your cart is empty." }
            } @else {
                table id="cart" {
                    @for (id, quantity) in &cart.items {
                        @if let Some(p) = product(id) {
                            tr {
                                td { (p.name) }
                                td { "× " (quantity) }
                                td { (money(p.cents * quantity)) }
                                td {
                                    form.inline method="post" action="/cart/remove" {
                                        (token_input(&frame.token))
                                        input type="hidden" name="product" value=(p.id);
                                        button { "Remove one" }
                                    }
                                }
                            }
                        }
                    }
                    tr { th { "Total" } th {} th id="total" { (money(cart.total_cents())) } th {} }
                }
            }
        },
    )
}

/// The login form.
pub fn login(frame: &Frame) -> Markup {
    layout(
        "Log in",
        frame,
        html! {
            form method="post" action="/login" id="login" {
                (token_input(&frame.token))
                p { label { "User " input name="user" id="user-field" autocomplete="username" required; } }
                p { label { "Password " input type="password" name="password" id="password-field" autocomplete="current-password" required; } }
                p { label { input type="checkbox" name="remember" value="on" id="remember"; " Remember me for 30 days" } }
                p { button id="login-button" { "Log in" } }
            }
            p { small { "Demo users: ada / lovelace, alan / turing." } }
        },
    )
}

/// The preferences form.
pub fn preferences(frame: &Frame) -> Markup {
    layout(
        "Preferences",
        frame,
        html! {
            form method="post" action="/preferences" {
                (token_input(&frame.token))
                p {
                    label { input type="radio" name="theme" value="light" checked[frame.theme == Theme::Light]; " Light" }
                    " "
                    label { input type="radio" name="theme" value="dark" id="theme-dark" checked[frame.theme == Theme::Dark]; " Dark" }
                }
                p { button id="save-preferences" { "Save" } }
            }
        },
    )
}

fn when(t: OffsetDateTime) -> String {
    t.format(format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
        .unwrap_or_default()
}

/// The user's sessions, each revocable.
pub fn devices(frame: &Frame, sessions: &[OwnedSession]) -> Markup {
    let others = sessions.iter().filter(|s| !s.current).count();
    layout(
        "Your devices",
        frame,
        html! {
            table id="devices" {
                tr { th { "Signed in" } th { "Last seen" } th { "Expires" } th {} }
                @for s in sessions {
                    tr class=[s.current.then_some("current")] {
                        td { (when(s.created)) }
                        td { (when(s.accessed)) }
                        td { (when(s.expires)) }
                        td {
                            @if s.current {
                                strong { "This device" }
                            } @else {
                                form.inline method="post" action="/devices/revoke" {
                                    (token_input(&frame.token))
                                    input type="hidden" name="handle" value=(s.handle);
                                    button class="revoke" { "Log out this device" }
                                }
                            }
                        }
                    }
                }
            }
            @if others > 0 {
                form method="post" action="/devices/revoke-others" {
                    (token_input(&frame.token))
                    p { button id="revoke-others" { "Log out all other devices" } }
                }
            }
        },
    )
}
