//! A `redis-server` of the bench's own for the multi-instance figures (14-17): on a free port,
//! with its files in a temporary directory, killed when dropped (also on Ctrl-C and on error).

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;

#[derive(Debug)]
pub struct RedisServer {
    process: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Persisted as docs/operations.md advises for several instances (`appendfsync everysec`):
    /// the figures measure Berth as it would be deployed, not a Redis that keeps nothing.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let process = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server; is it installed? (apt-get install redis-server)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not accept connections on port {port} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self {
            process,
            port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// What the server itself holds in memory (resident set), in MB.
    pub fn rss_mb(&self) -> f64 {
        self.process.id().map_or(0.0, |pid| {
            crate::figures::status_mb(&format!("/proc/{pid}/status"), "VmRSS:")
        })
    }
}

/// A port nothing listens on now. Another process could take it before it is used; on a
/// bench machine that is rare enough to fail the run rather than guard against.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
