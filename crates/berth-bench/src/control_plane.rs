//! A control plane in a process of its own, for the figures that are about that process: its
//! memory with many sessions (figure 8 on SQLite, 17 on Redis) and its restart (figure 10). The
//! child is this binary run with `--control-plane DIR`; it serves through `berth_server::run`,
//! the code behind `berth serve`.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use berth_client::Client;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{Args, TOKEN};

/// The child's side: serves with the bench's configuration on its own instance, so neither
/// control plane takes the other's containers for orphans, on the store `--store` names.
/// Runs until killed.
pub async fn serve(data_dir: &Path, args: &Args) -> anyhow::Result<()> {
    let config = crate::separate_process_config(data_dir, args)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // The parent reads this line to find the child; it is printed before `run` reconciles, so
    // the parent's clock covers the whole restart.
    println!("http://{}", listener.local_addr()?);
    berth_server::run(config, listener, std::future::pending()).await?;
    Ok(())
}

/// The parent's side: one child control plane. Killed when dropped, also on Ctrl-C.
#[derive(Debug)]
pub struct ChildPlane {
    process: tokio::process::Child,
    pub client: Client,
    /// From spawning the process to its first answer: start, store, startup reconcile.
    pub ready_after: Duration,
}

impl ChildPlane {
    /// With `store`, on that store; else on SQLite in `data_dir`.
    pub async fn spawn(data_dir: &Path, args: &Args, store: Option<&str>) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command
            .arg("--control-plane")
            .arg(data_dir)
            .args(["--sessions", &args.sessions.to_string()])
            .args([
                "--sessions-per-network",
                &args.sessions_per_network.to_string(),
            ])
            .args(["--engine-timeout", &args.engine_timeout.to_string()]);
        if let Some(url) = store {
            command.args(["--store", url]);
        }
        let mut process = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a control plane process")?;
        let stdout = process.stdout.take().context("no stdout")?;
        let url = BufReader::new(stdout)
            .lines()
            .next_line()
            .await?
            .context("the control plane process exited before serving")?;
        let client = Client::new(&url, TOKEN)?;
        let http = reqwest::Client::new();
        while http.get(format!("{url}/healthz")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Self {
            process,
            client,
            ready_after: started.elapsed(),
        })
    }

    pub fn rss_mb(&self) -> f64 {
        self.process.id().map_or(0.0, |pid| {
            crate::figures::status_mb(&format!("/proc/{pid}/status"), "VmRSS:")
        })
    }

    /// Deletes these sessions, all at once.
    pub async fn delete_all(&self, ids: &[String]) {
        let removals = ids.iter().map(|id| self.client.delete_session(id));
        futures_util::future::join_all(removals).await;
    }

    /// Ends the process the way a crash would: no shutdown work.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.process.kill().await?;
        Ok(())
    }
}
