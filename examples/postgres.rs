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

// The routes and the typed session are the quickstart's: one HTTP contract,
// in one place. Only the store differs.
#[allow(dead_code)]
#[path = "quickstart.rs"]
mod quickstart;

use carafe::store::PostgresStore;
use carafe::{Reaper, SessionLayer};
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
