//! Two typed namespaces in one session, plus the untyped fallback.
//!
//! ```text
//! cargo run --example cart
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/cart/tea
//! curl -c jar -b jar -d user=ada http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/summary
//! ```

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Form, Router};
use carafe::{MemoryStore, Session, SessionLayer, Typed};
use serde::Deserialize;

/// The shopping cart: keys `cart.items` and `cart.updates`.
#[derive(carafe::Session, Default, Debug)]
#[session(auto, default, namespace = "cart")]
pub struct Cart {
    items: Vec<String>,
    updates: u32,
}

/// Who is logged in: key `auth.user`. Not `auto`: login saves explicitly.
#[derive(carafe::Session, Debug)]
#[session(namespace = "auth")]
pub struct Auth {
    user: Option<String>,
    #[session(default)]
    logins: u32,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn add(Path(item): Path<String>, mut cart: Typed<Cart>) -> String {
    cart.items.push(item);
    cart.updates += 1;
    format!("{} items", cart.items.len())
}

async fn login(mut auth: Typed<Auth>, Form(form): Form<Login>) -> String {
    auth.user = Some(form.user.clone());
    auth.logins += 1;
    auth.cycle_id();
    auth.save();
    format!("logged in as {}", form.user)
}

/// Both typed views and the untyped session in one handler: the session is
/// loaded once.
async fn summary(cart: Typed<Cart>, auth: Typed<Auth>, session: Session) -> String {
    // the untyped view sees the typed fields under their keys
    let raw: Option<Vec<String>> = session.get("cart.items").unwrap_or_default();
    let theme: String = session
        .get("theme")
        .ok()
        .flatten()
        .unwrap_or_else(|| "light".into());
    format!(
        "user: {}, items: {:?}, raw: {:?}, theme: {theme}",
        auth.user.as_deref().unwrap_or("anonymous"),
        cart.items,
        raw.unwrap_or_default()
    )
}

/// The untyped fallback for keys no struct declares.
async fn theme(Path(theme): Path<String>, session: Session) -> String {
    match session.insert("theme", &theme) {
        Ok(()) => {
            session.save();
            format!("theme: {theme}")
        }
        Err(err) => err.to_string(),
    }
}

/// The application.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/cart/{item}", post(add))
        .route("/login", post(login))
        .route("/summary", get(summary))
        .route("/theme/{theme}", post(theme))
        .layer(layer)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("CARAFE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let layer = SessionLayer::builder(MemoryStore::new())
        .key(carafe::Key::generate())
        .secure(false)
        .build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(layer)).await?;
    Ok(())
}
