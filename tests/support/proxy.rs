//! [`CountingProxy`]: a loopback TCP proxy in front of a server that counts
//! the bytes its clients send, i.e. what a store writes to Redis or
//! PostgreSQL, protocol framing included.
//!
//! Also used by the benchmarks (`#[path]`), so it depends on nothing else in
//! `support`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct CountingProxy {
    /// Where the proxy listens: connect here instead of to the server.
    pub addr: SocketAddr,
    sent: Arc<AtomicU64>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `target` (`host:port`).
    pub async fn start(target: impl Into<String>) -> std::io::Result<CountingProxy> {
        let target = target.into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let counter = counter.clone();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
            }
        });
        Ok(CountingProxy { addr, sent })
    }

    /// The bytes sent to the server so far, over all connections.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}
