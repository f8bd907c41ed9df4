//! The example shop.
//!
//! ```text
//! cargo run -p carafe-shop            # then open http://localhost:3000
//! ```
//!
//! Environment:
//!
//! * `CARAFE_STORE`: where sessions live. Unset: the file store in
//!   `CARAFE_DATA_DIR` (default `./shop-sessions`). A `redis://` (or
//!   `rediss://`) URL: Redis. A `postgres://` URL: PostgreSQL (the table is
//!   created if missing).
//! * `CARAFE_ADDR` (default `127.0.0.1:3000`).
//! * `CARAFE_SECRET` (at least 32 bytes; without it a random key is used and
//!   sessions do not survive a restart).
//!
//! The cookie is `__Host-carafe.sid`, `Secure`: browsers accept it on
//! `http://localhost`, which they count as a secure origin. Behind TLS
//! nothing changes.

use std::error::Error;
use std::time::Duration;

use carafe::store::{PostgresStore, RedisStore};
use carafe::{FileStore, Key, Reaper, SessionLayer, SessionStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let key = match std::env::var("CARAFE_SECRET") {
        Ok(secret) => Key::from_secret(secret)?,
        Err(_) => {
            tracing::warn!(
                "CARAFE_SECRET is not set: using a random key, sessions will not survive a restart"
            );
            Key::generate()
        }
    };
    let store = store_from_env().await?;
    // Redis expires records itself; the others are swept every 10 minutes.
    let _reaper = (store.name() != "redis").then(|| Reaper::spawn(store.clone(), Duration::from_secs(600)));
    let layer = SessionLayer::builder(store).key(key).build()?;

    let addr = std::env::var("CARAFE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let port = listener.local_addr()?.port();
    tracing::info!("the shop is at http://localhost:{port}/");
    axum::serve(listener, carafe_shop::app(layer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The store `CARAFE_STORE` names.
async fn store_from_env() -> Result<std::sync::Arc<dyn SessionStore>, Box<dyn Error>> {
    let url = std::env::var("CARAFE_STORE").unwrap_or_default();
    Ok(if url.starts_with("redis://") || url.starts_with("rediss://") {
        let store = RedisStore::new(&url)?;
        store.ping().await?;
        tracing::info!("sessions in Redis");
        std::sync::Arc::new(store)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(&url).await?;
        store.migrate().await?;
        tracing::info!("sessions in PostgreSQL");
        std::sync::Arc::new(store)
    } else if url.is_empty() {
        let dir = std::env::var("CARAFE_DATA_DIR").unwrap_or_else(|_| "shop-sessions".into());
        tracing::info!(dir, "sessions in files");
        std::sync::Arc::new(FileStore::new(dir)?)
    } else {
        return Err(format!(
            "CARAFE_STORE must be a redis:// or postgres:// URL, or unset (got {:?})",
            url.split(':').next().unwrap_or("")
        )
        .into());
    })
}
