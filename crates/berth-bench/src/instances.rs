//! Several `berth serve` processes on one Redis, as docs/operations.md runs them: the same admin
//! token and engine instance, a data dir each (figures 15 and 16). They are the `berth` binary
//! of this workspace, found next to the bench's own executable, so that what is measured is the
//! command users run, flags and all.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use berth_client::Client;

use crate::{Args, CLUSTER_INSTANCE, TOKEN, redis::RedisServer};

/// One `berth serve` of the cluster, killed when dropped.
#[derive(Debug)]
pub struct Instance {
    process: tokio::process::Child,
    pub url: String,
    pub client: Client,
    log: PathBuf,
}

impl Instance {
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// The process's resident set, in MB.
    pub fn rss_mb(&self) -> f64 {
        self.process.id().map_or(0.0, |pid| {
            crate::figures::status_mb(&format!("/proc/{pid}/status"), "VmRSS:")
        })
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub instances: Vec<Instance>,
    berth: PathBuf,
    config: PathBuf,
    redis: RedisServer,
    dir: tempfile::TempDir,
    token: String,
    http: reqwest::Client,
}

impl Cluster {
    /// `count` instances on a Redis of their own, each answering before this returns. The
    /// templates are the separate process's (figure 8's): one, `default`, without a pool.
    pub async fn start(args: &Args, count: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = config_file(dir.path(), args)?;
        Self::start_with(dir, &config, TOKEN, count).await
    }

    /// `count` instances reading `config` (written into `dir`, their data dirs' parent) and
    /// sharing the admin token `token`.
    pub async fn start_with(
        dir: tempfile::TempDir,
        config: &str,
        token: &str,
        count: usize,
    ) -> anyhow::Result<Self> {
        let berth = berth_binary()?;
        let redis = RedisServer::start().await?;
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, config)?;
        let mut cluster = Self {
            instances: Vec::new(),
            berth,
            config: path,
            redis,
            dir,
            token: token.to_owned(),
            http: reqwest::Client::new(),
        };
        for index in 0..count {
            let instance = cluster.spawn(index).await?;
            cluster.instances.push(instance);
        }
        Ok(cluster)
    }

    /// Starts instance `index` (again, after a kill: on a new port, with the same data dir).
    async fn spawn(&self, index: usize) -> anyhow::Result<Instance> {
        let port = crate::redis::free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = self.dir.path().join(format!("instance{index}-{port}.log"));
        let mut process = tokio::process::Command::new(&self.berth)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data{index}")))
            .arg("--config")
            .arg(&self.config)
            .args(["--store", &self.redis.url()])
            .env("BERTH_ADMIN_TOKEN", &self.token)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.berth.display()))?;
        // An instance serves once it has claimed the lead or found a leader to follow.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.lifecycle_at(&url).await.is_none() {
            if let Some(status) = process.try_wait()? {
                anyhow::bail!("berth serve exited with {status}; log:\n{}", read_log(&log));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "berth serve did not answer within 30 s; log:\n{}",
                read_log(&log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Instance {
            process,
            client: Client::new(&url, &self.token)?,
            url,
            log,
        })
    }

    /// `"leading"` or `"following"`, as the instance's `GET /readyz` says.
    async fn lifecycle_at(&self, url: &str) -> Option<String> {
        let readiness: serde_json::Value = self
            .http
            .get(format!("{url}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(readiness["lifecycle"].as_str()?.to_owned())
    }

    /// The instance that leads lifecycle, once exactly one does.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut leading = Vec::new();
            for (index, instance) in self.instances.iter().enumerate() {
                if self.lifecycle_at(&instance.url).await.as_deref() == Some("leading") {
                    leading.push(index);
                }
            }
            if let [one] = leading[..] {
                return Ok(one);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "not exactly one leader after 15 s: {leading:?}; {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: the instance gets no chance to hand its lease over.
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        self.instances[index].process.kill().await?;
        Ok(())
    }

    /// Starts a killed instance again, so the cluster has as many as before.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.instances[index] = self.spawn(index).await?;
        Ok(())
    }

    /// Kills every instance and waits until each has exited, so none acts after this returns.
    pub async fn stop(mut self) {
        for instance in &mut self.instances {
            let _ = instance.process.kill().await;
        }
    }

    /// Every instance's log, for an error message.
    pub fn logs(&self) -> String {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, instance)| format!("\n--- instance {i}\n{}", read_log(&instance.log)))
            .collect()
    }
}

/// The file every instance reads with `--config`: the bench's configuration (figure 8's
/// template) on the cluster's engine instance. The admin token is given in the environment,
/// as docs/operations.md does.
fn config_file(dir: &Path, args: &Args) -> anyhow::Result<String> {
    let mut config = crate::other_config(dir, args, CLUSTER_INSTANCE, &["default"])?;
    config.admin_token = None;
    Ok(toml::to_string(&config)?)
}

/// The last lines of a log: enough to see why an instance failed.
fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `target/<profile>/berth`, built from this workspace with the bench: `cargo run -p
/// berth-bench` does not build it, and an older one would measure older code.
fn berth_binary() -> anyhow::Result<PathBuf> {
    let bench = std::env::current_exe()?;
    let dir = bench
        .parent()
        .context("the bench's executable has no directory")?;
    let berth = dir.join("berth");
    if !berth.is_file() {
        let profile = if dir.ends_with("release") {
            " --release"
        } else {
            ""
        };
        anyhow::bail!(
            "figures 15, 16 and 26-30 run `berth serve`, and {} is missing: build it with \
             `cargo build{profile} -p berth-cli` first",
            berth.display()
        );
    }
    Ok(berth)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_instances_read_the_benchs_configuration_back() {
        let args = Args::parse_from(["berth-bench"]);
        let text = config_file(Path::new("/tmp/bench"), &args).unwrap();
        let config = berth_server::config::Config::from_toml(&text)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(config.docker.instance, CLUSTER_INSTANCE);
        assert_eq!(config.docker.network, crate::NETWORK);
        assert_eq!(config.admin_token, None);
        assert_eq!(config.templates.keys().collect::<Vec<_>>(), ["default"]);
        assert_eq!(config.templates["default"].image, crate::IMAGE);
        assert_eq!(config.templates["default"].pool.min_ready, 0);
    }
}
