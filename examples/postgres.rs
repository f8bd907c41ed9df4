//! The quickstart on PostgreSQL: the same application and HTTP contract,
//! with sessions in a PostgreSQL table so that several servers can share
//! them.
//!
//! ```text
//! cargo run --example postgres
//! curl -c jar -b jar http://127.0.0.1:3000/            # count: 1, 2, 3, ...
//! curl -c jar -b jar -d user=ada http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/whoami      # ada
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! ```
//!
//! Run it twice with one `CARAFE_SECRET` and two `CARAFE_ADDR`s and both
//! servers see the same sessions.
//!
//! Environment: `CARAFE_ADDR` (default `127.0.0.1:3000`),
//! `CARAFE_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! `CARAFE_SECRET` (at least 32 bytes; without it a random key is used and
//! sessions do not survive a restart).
//!
//! At startup the example connects, creates the table `carafe_sessions`
//! unless it exists, and starts a reaper that deletes expired rows every ten
//! minutes (run one on each server or on one: the batched deletes do not get
//! in each other's way). If PostgreSQL goes away later, session routes
//! answer 500 until it is back and `/health` keeps answering.

use axum::routing::{get, post};
use axum::{Form, Router};
use carafe::store::PostgresStore;
use carafe::{Key, Reaper, Session, SessionLayer, Typed};
use serde::Deserialize;

/// The visitor's session, typed: one session key per field.
#[derive(carafe::Session, Default, Debug)]
#[session(auto, default)]
pub struct Visit {
    /// How many times `/` was requested.
    count: u32,
    /// Who logged in, if anyone.
    user: Option<String>,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn index(mut visit: Typed<Visit>) -> String {
    visit.count += 1;
    format!("count: {}", visit.count)
}

async fn login(mut visit: Typed<Visit>, Form(form): Form<Login>) -> String {
    visit.user = Some(form.user.clone());
    // a new id at every change of privilege: the defence against fixation
    visit.cycle_id();
    format!("logged in as {}", form.user)
}

async fn whoami(visit: Typed<Visit>) -> String {
    visit.user.clone().unwrap_or_else(|| "anonymous".into())
}

async fn logout(session: Session) -> &'static str {
    session.delete();
    "logged out"
}

/// The application: routes behind the session layer.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(|| async { "ok" }))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .layer(layer)
}

/// The signing key from `CARAFE_SECRET`, or a random one for this run.
pub fn key_from_env() -> Result<Key, carafe::ConfigError> {
    match std::env::var("CARAFE_SECRET") {
        Ok(secret) => Key::from_secret(secret),
        Err(_) => {
            tracing::warn!(
                "CARAFE_SECRET is not set: using a random key, sessions will not survive a restart"
            );
            Ok(Key::generate())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("CARAFE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("CARAFE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());

    // A pool that waits at most 3 s for a connection, with a 5 s
    // statement_timeout; build your own pool for other settings.
    let store = PostgresStore::connect(&url).await?;
    store.migrate().await?;
    let reaper = Reaper::spawn(
        std::sync::Arc::new(store.clone()),
        std::time::Duration::from_secs(600),
    );
    let layer = SessionLayer::builder(store)
        .key(key_from_env()?)
        // plain HTTP on localhost for the demo; keep the default (true) behind TLS
        .secure(false)
        .build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(layer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    reaper.shutdown().await;
    Ok(())
}
