//! The quickstart's HTTP contract with client-side sessions: the whole
//! session lives in an encrypted cookie and the server stores nothing
//! (Beaker's `session.type = cookie`).
//!
//! ```text
//! cargo run --example cookie
//! curl -c jar -b jar http://127.0.0.1:3000/            # count: 1, 2, 3, ...
//! curl -c jar -b jar -d user=ada http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/whoami      # ada
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! ```
//!
//! Environment: `CARAFE_ADDR` (default `127.0.0.1:3000`), `CARAFE_SECRET`
//! (at least 32 bytes; without it a random key is used and sessions do not
//! survive a restart). The cookies are encrypted with a key derived from the
//! secret; rotating the secret (without keeping the old one as an
//! `old_secret`) logs everyone out, which is the only way a client-side store
//! can end sessions before they expire.

use carafe::{CookieStore, Key, SessionLayer};

// The quickstart's router and key handling: the HTTP contract lives in one place.
#[allow(dead_code)]
#[path = "quickstart.rs"]
mod quickstart;

pub use quickstart::{app, key_from_env};

/// The layer: sessions in an encrypted cookie of at most 4096 bytes.
pub fn layer(key: Key) -> Result<SessionLayer, carafe::ConfigError> {
    SessionLayer::builder(CookieStore::new())
        .key(key)
        // a client-side session cannot be revoked: keep its life short
        .idle_timeout(std::time::Duration::from_secs(2 * 60 * 60))
        .absolute_lifetime(std::time::Duration::from_secs(24 * 60 * 60))
        // plain HTTP on localhost for the demo; keep the default (true) behind TLS
        .secure(false)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("CARAFE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let layer = layer(key_from_env()?)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(layer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
