//! A control plane served on port 0 in the test process, against the real Docker engine.
#![allow(dead_code)] // each test binary uses a different part

use std::process::Command;

use berth_client::Client;
use berth_proto::{CreateSession, process::ExecRequest};
use berth_server::config::{Config, TemplateConfig};
use serde_json::Value;
use tokio::sync::oneshot;

pub const ADMIN: &str = "docker-test-admin-token-of-32-characters";
pub const TINY: &str = "berth/tiny:latest";
pub const BASE: &str = "berth/base:latest";

pub struct Server {
    pub client: Client,
    pub instance: String,
    /// The configuration it runs with, defaults filled in.
    pub config: Config,
    _data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customise: impl FnOnce(&mut Config)) -> Self {
        assert!(
            docker(&["info"]).is_ok(),
            "no Docker engine answers; run the tests with scripts/test, which starts one"
        );
        let data = tempfile::tempdir().unwrap();
        let instance = format!("test-{}", berth_server::ids::user_id());
        let mut config = Config {
            data_dir: data.path().to_owned(),
            admin_token: Some(ADMIN.into()),
            ..Config::default()
        };
        config.docker.instance = instance.clone();
        config.docker.network = "berth-test".into();
        config.lifecycle.reap_interval_ms = 200;
        // The control plane moves the threads of its whole process, and a test process runs
        // many servers at once: only the test of that steering turns it on.
        config.docker.steer_control_plane = false;
        let tiny = TemplateConfig {
            image: TINY.into(),
            memory_mb: 64,
            cpus: 0.5,
            pids: 64,
            ..TemplateConfig::default()
        };
        config.templates.insert("default".into(), tiny.clone());
        config.templates.insert(
            "short".into(),
            TemplateConfig {
                ttl_seconds: 1,
                ..tiny
            },
        );
        config.templates.insert(
            "base".into(),
            TemplateConfig {
                image: BASE.into(),
                ..TemplateConfig::default()
            },
        );
        customise(&mut config);
        let config = config.finish().unwrap();
        let instance = config.docker.instance.clone();
        let running = config.clone();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            berth_server::run(running, listener, async { drop(stopped.await) })
                .await
                .unwrap();
        });
        let client = Client::new(&format!("http://{addr}"), ADMIN).unwrap();
        Self {
            client,
            instance,
            config,
            _data: data,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    pub fn containers(&self) -> Vec<String> {
        containers_of(&self.instance).unwrap()
    }

    /// Stops the server and removes what it left running (sessions, a warm pool): the engine
    /// is shared with the suites after this one, some of which time what they see.
    pub async fn stop_and_remove_containers(self) {
        let instance = self.instance.clone();
        self.stop().await;
        remove_containers_of(&instance);
    }
}

/// Every container of a Berth instance, running or not.
pub fn containers_of(instance: &str) -> Result<Vec<String>, String> {
    let filter = format!("label=berth.instance={instance}");
    let out = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Removes every container of a Berth instance (as far as the engine answers: it runs in
/// drops, which must not panic).
pub fn remove_containers_of(instance: &str) {
    for container in containers_of(instance).unwrap_or_default() {
        let _ = docker(&["rm", "-f", &container]);
    }
}

/// A port nothing listens on now: for listeners a test's server binds itself.
pub fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn inspect(container: &str) -> Value {
    let out = docker(&["inspect", container]).unwrap();
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

pub fn container_of(server: &Server, session_id: &str) -> String {
    let filter = format!("label=berth.session={session_id}");
    let out = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]).unwrap();
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(
        ids.len(),
        1,
        "exactly one container for {session_id} in {}",
        server.instance
    );
    ids[0].to_owned()
}

/// A running session of `template`; its id.
pub async fn session(server: &Server, template: &str) -> String {
    let request = CreateSession {
        template: template.into(),
        ..Default::default()
    };
    server.client.create_session(&request).await.unwrap().id
}

/// Reads a terminal until `needle` shows up (at most 20 s); everything it showed.
pub async fn read_until(terminal: &mut berth_client::Terminal, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, terminal.next()).await {
            Ok(Some(berth_client::TerminalEvent::Output(bytes))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes))
            }
            other => panic!("no {needle:?} in the terminal ({other:?}); got {seen:?}"),
        }
    }
    seen
}

/// `sh -c script`, as an exec request.
pub fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// A real registry (Debian's `docker-registry`) on a free loopback port, its data in a temp
/// dir, deletes enabled; stopped when dropped.
pub struct Registry {
    pub address: String,
    process: std::process::Child,
    _data: tempfile::TempDir,
}

impl Registry {
    /// Listening once this returns; HTTP to it needs a Berth client made first (it installs
    /// the TLS provider `reqwest` wants).
    pub async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = data.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
                data.path().join("store").display()
            ),
        )
        .unwrap();
        let process = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package; scripts/test installs it)");
        let registry = Self {
            address,
            process,
            _data: data,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry never listened"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        registry
    }

    pub async fn get(&self, path: &str) -> Option<u16> {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.address))
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs `command` (a client's suite, a quickstart) to its end, at most five minutes, and
/// asserts it succeeded: its standard output. `what` names it in the failure.
pub async fn run_to_success(mut command: tokio::process::Command, what: &str) -> String {
    let run = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("{what} ran for five minutes"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}
