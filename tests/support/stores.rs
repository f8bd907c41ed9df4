//! Every server-side store, ready for a test: the embedded ones always,
//! Redis and PostgreSQL when their servers answer (a failure under
//! `CI=true` otherwise), each on its own prefix or table.

use std::path::Path;
use std::sync::Arc;

use carafe::store::sqlx::postgres::PgPoolOptions;
use carafe::store::PostgresStore;
use carafe::{FileStore, MemoryStore, RedisStore, SessionStore, SqliteStore};

use crate::support::records::{key, random};
use crate::support::servers::{available, postgres_url, redis_url};

/// The stores under test; files and the SQLite database go under `dir`.
pub async fn server_stores(dir: &Path) -> Vec<Arc<dyn SessionStore>> {
    let mut stores: Vec<Arc<dyn SessionStore>> = vec![
        Arc::new(MemoryStore::new()),
        Arc::new(FileStore::new(dir.join("files")).unwrap()),
    ];
    let sqlite = SqliteStore::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("sessions.db").display()
    ))
    .await
    .unwrap();
    sqlite.migrate().await.unwrap();
    stores.push(Arc::new(sqlite));
    let url = redis_url();
    let redis = RedisStore::builder(url.as_str())
        .prefix(random("carafe-test:"))
        .build()
        .unwrap();
    if available("Redis", &url, redis.load(&key()).await).is_some() {
        stores.push(Arc::new(redis));
    }
    let url = postgres_url();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&url)
        .await;
    if let Some(pool) = available("PostgreSQL", &url, pool) {
        let store = PostgresStore::builder(pool)
            .table(random("test_"))
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        stores.push(Arc::new(store));
    }
    stores
}
