//! The carafe example shop: every session feature an application needs, on
//! server-rendered pages.
//!
//! * log in with a CSRF-protected form; the session id is cycled, the CSRF
//!   secret rotated, the session marked as the user's; "remember me" gives
//!   a 30-day persistent session;
//! * log out (the session is invalidated, a message goes into the new one);
//! * a cart in a typed, `auto`-saved session that survives the login;
//! * flash messages after every redirect, shown once;
//! * a preferences page (a typed session, saved with no call);
//! * "your devices": the user's sessions, each revocable, and "log out all
//!   other devices" (on the file store, listing reads every session file:
//!   fine for a demo and a small site; Redis and PostgreSQL keep an index);
//! * every page is sent `Cache-Control: no-store`, so Back after a logout
//!   shows no personal page from the browser's cache.
//!
//! `main.rs` picks the store (the file store unless `CARAFE_STORE` names a
//! Redis or PostgreSQL URL) and serves [`app`]; the browser test serves it
//! in-process.

#![forbid(unsafe_code)]

pub mod model;
pub mod pages;

use std::time::Duration;

use axum::extract::Form;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carafe::csrf::{CsrfLayer, CsrfToken};
use carafe::flash::{Flash, Message};
use carafe::{Session, SessionError, SessionExpiry, SessionLayer, Typed};
use maud::Markup;
use serde::Deserialize;

use crate::model::{check_password, product, Auth, Cart, Prefs, Theme};
use crate::pages::Frame;

/// The most of one tea a cart holds (so no sum can overflow).
pub const MAX_QUANTITY: u32 = 99;

/// How long "remember me" keeps a session: 30 days since its last use.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The application, behind `layer` (the CSRF layer sits inside it).
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(shop))
        .route("/cart", get(cart))
        .route("/cart/add", post(add))
        .route("/cart/remove", post(remove))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/preferences", get(preferences).post(save_preferences))
        .route("/devices", get(devices))
        .route("/devices/revoke", post(revoke))
        .route("/devices/revoke-others", post(revoke_others))
        .layer(axum::middleware::map_response(no_store))
        .layer(CsrfLayer::new())
        .layer(layer)
        .route("/health", get(|| async { "ok" }))
}

/// Every page may show personal data (the user's name, the cart): none is
/// kept in the browser's cache, so Back after a logout shows nothing.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A handler's failure: a session error (answered 500 by carafe), or a
/// page that needs a login.
enum Failure {
    Session(SessionError),
    LoginRequired,
}

impl From<SessionError> for Failure {
    fn from(err: SessionError) -> Self {
        Failure::Session(err)
    }
}

impl From<carafe::TypedError> for Failure {
    fn from(err: carafe::TypedError) -> Self {
        Failure::Session(err.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Session(err) => err.into_response(),
            Failure::LoginRequired => Redirect::to("/login").into_response(),
        }
    }
}

type Page = Result<Markup, Failure>;

/// What every page shows around its content; takes the flash messages, so
/// only pages (GET) build it.
async fn frame(session: &Session) -> Result<Frame, Failure> {
    let auth = Typed::<Auth>::from_session(session.clone())?;
    let cart = Typed::<Cart>::from_session(session.clone())?;
    let prefs = Typed::<Prefs>::from_session(session.clone())?;
    let flashes: Vec<Message> = Flash::new(session).take().await?;
    Ok(Frame {
        user: auth.user.clone(),
        cart_count: cart.count(),
        theme: prefs.theme,
        flashes,
        token: CsrfToken::for_session(session)?,
    })
}

/// The user, or a redirect to the login page with a message.
fn require_login(session: &Session) -> Result<String, Failure> {
    match Typed::<Auth>::from_session(session.clone())?.user.clone() {
        Some(user) => Ok(user),
        None => {
            Flash::new(session).info("Please log in first.")?;
            Err(Failure::LoginRequired)
        }
    }
}

async fn shop(session: Session) -> Page {
    Ok(pages::shop(&frame(&session).await?))
}

async fn cart(session: Session) -> Page {
    let frame = frame(&session).await?;
    let cart = Typed::<Cart>::from_session(session)?;
    Ok(pages::cart(&frame, &cart))
}

#[derive(Deserialize)]
struct ProductForm {
    product: String,
}

async fn add(
    mut cart: Typed<Cart>,
    flash: Flash,
    Form(form): Form<ProductForm>,
) -> Result<Redirect, Failure> {
    match product(&form.product) {
        Some(p) => {
            let quantity = cart.items.entry(p.id.to_owned()).or_default();
            if *quantity < MAX_QUANTITY {
                *quantity += 1;
                flash.success(format!("Added {} to your cart.", p.name))?;
            } else {
                flash.warning(format!("At most {MAX_QUANTITY} of each tea."))?;
            }
        }
        None => flash.error("There is no such product.")?,
    }
    Ok(Redirect::to("/"))
}

async fn remove(mut cart: Typed<Cart>, Form(form): Form<ProductForm>) -> Redirect {
    if let Some(n) = cart.items.get_mut(&form.product) {
        *n -= 1;
        if *n == 0 {
            cart.items.remove(&form.product);
        }
    }
    Redirect::to("/cart")
}

async fn login_form(session: Session) -> Page {
    Ok(pages::login(&frame(&session).await?))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    remember: Option<String>,
}

async fn login(session: Session, Form(form): Form<LoginForm>) -> Result<Redirect, Failure> {
    let flash = Flash::new(&session);
    if !check_password(&form.user, &form.password) {
        flash.error("Wrong user or password.")?;
        return Ok(Redirect::to("/login"));
    }
    // Someone else's session in this browser: start afresh, so nothing of
    // theirs (cart, preferences, remember me) carries over.
    let previous = Typed::<Auth>::from_session(session.clone())?.user.clone();
    if previous.is_some_and(|user| user != form.user) {
        session.invalidate();
    }
    // A new id and a new CSRF secret at every change of privilege.
    session.cycle_id();
    carafe::csrf::rotate(&session)?;
    let mut auth = Typed::<Auth>::from_session(session.clone())?;
    auth.user = Some(form.user.clone());
    auth.save();
    drop(auth);
    session.set_owner(form.user.clone())?;
    // Remember me, or the layer's own expiry (a browser-session cookie).
    let expiry = if form.remember.is_some() {
        SessionExpiry::remember_for(REMEMBER_FOR)
    } else {
        SessionExpiry::default()
    };
    session.set_expiry(expiry)?;
    flash.success(format!("Welcome, {}.", form.user))?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, Failure> {
    // The old record goes; the message lives in the new, empty session.
    session.invalidate();
    Flash::new(&session).info("You are logged out.")?;
    Ok(Redirect::to("/"))
}

async fn preferences(session: Session) -> Page {
    Ok(pages::preferences(&frame(&session).await?))
}

#[derive(Deserialize)]
struct PreferencesForm {
    theme: Theme,
}

async fn save_preferences(
    mut prefs: Typed<Prefs>,
    flash: Flash,
    Form(form): Form<PreferencesForm>,
) -> Result<Redirect, Failure> {
    prefs.theme = form.theme;
    flash.success("Preferences saved.")?;
    Ok(Redirect::to("/preferences"))
}

async fn devices(session: Session) -> Page {
    require_login(&session)?;
    // Listed before the frame takes the messages: a failed listing shows
    // the messages on the next page instead.
    let sessions = session.owner_sessions().await?;
    let frame = frame(&session).await?;
    Ok(pages::devices(&frame, &sessions))
}

#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

async fn revoke(session: Session, Form(form): Form<RevokeForm>) -> Result<Response, Failure> {
    require_login(&session)?;
    let own = session
        .owner_sessions()
        .await?
        .iter()
        .any(|s| s.current && s.handle == form.handle);
    if own {
        // This device's own handle: a logout (revoke would delete the
        // session, leaving nowhere to put the message).
        session.invalidate();
        Flash::new(&session).info("You are logged out.")?;
        return Ok(Redirect::to("/").into_response());
    }
    if session.revoke(&form.handle).await? {
        Flash::new(&session).success("That device is logged out.")?;
        Ok(Redirect::to("/devices").into_response())
    } else {
        // A handle that is not one of this user's sessions (made up, or
        // already gone): a clear answer, nothing revoked.
        Ok((StatusCode::NOT_FOUND, "no such session of yours\n").into_response())
    }
}

async fn revoke_others(session: Session) -> Result<Redirect, Failure> {
    require_login(&session)?;
    let n = session.revoke_other_sessions().await?;
    Flash::new(&session).success(format!("Logged out {n} other device(s)."))?;
    Ok(Redirect::to("/devices"))
}
