//! The quickstart on Redis: the same application and HTTP contract, with
//! sessions in Redis so that several servers can share them.
//!
//! ```text
//! cargo run --example redis
//! curl -c jar -b jar http://127.0.0.1:3000/            # count: 1, 2, 3, ...
//! curl -c jar -b jar -d user=ada http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/whoami      # ada
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! ```
//!
//! Run it twice with one `CARAFE_SECRET` and two `CARAFE_ADDR`s and both
//! servers see the same sessions.
//!
//! Environment: `CARAFE_ADDR` (default `127.0.0.1:3000`), `CARAFE_REDIS_URL`
//! (default `redis://127.0.0.1:6379`), `CARAFE_REDIS_PREFIX` (default
//! `carafe:session`), `CARAFE_SECRET` (at least 32 bytes; without it a
//! random key is used and sessions do not survive a restart).
//!
//! Redis expires sessions itself, so unlike the quickstart there is no
//! reaper. The server starts even while Redis is down (with a warning):
//! session routes answer 500 until Redis is back, `/health` keeps answering.

// The routes and the typed session are the quickstart's: one HTTP contract,
// in one place. Only the store differs.
#[allow(dead_code)]
#[path = "quickstart.rs"]
mod quickstart;

use carafe::store::RedisStore;
use carafe::SessionLayer;
pub use quickstart::app;
use quickstart::key_from_env;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("CARAFE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("CARAFE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = std::env::var("CARAFE_REDIS_PREFIX").unwrap_or_else(|_| RedisStore::DEFAULT_PREFIX.into());

    // The store connects lazily; a ping tells at startup whether Redis answers.
    let store = RedisStore::builder(url.as_str()).prefix(prefix).build()?;
    if let Err(err) = store.ping().await {
        tracing::warn!(%err, "Redis does not answer yet: session routes will fail until it does");
    }
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
    Ok(())
}
