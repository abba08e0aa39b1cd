//! `berth serve` with `runtime.kind = "swarm"` on the real three-node swarm of
//! `scripts/swarm-rig up` (one dockerd per network namespace, a real registry, `berth-node` on
//! every node): placement across nodes, work through the nodes' relays, isolation across
//! nodes, a drained node, a lost node, the registry down.
//!
//! The tests share the rig's nodes, so they take turns ([`RIG`]). Without a rig they fail and
//! say how to make one, unless `BERTH_SWARM_SKIP` says why there can be none here.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use berth_client::Client;
use berth_client::TerminalEvent;
use berth_proto::{
    CreateSession, SessionState,
    process::{ExecRequest, TerminalQuery},
};
use berth_server::{config::Config, store::redis::test_server::RedisServer};

static RIG: Mutex<()> = Mutex::new(());

const NODES: [u8; 3] = [1, 2, 3];

fn rig_dir() -> PathBuf {
    std::env::var_os("BERTH_RIG_DIR").map_or_else(|| PathBuf::from("/run/berth-rig"), PathBuf::from)
}

fn node_name(node: u8) -> String {
    format!("berth-rig-{node}")
}

/// `docker` on one node's engine: its output, or what went wrong (a stopped node's engine
/// does not answer).
fn try_node_docker(node: u8, args: &[&str]) -> Result<String, String> {
    let socket = format!("unix://{}/{node}/docker.sock", rig_dir().display());
    let out = Command::new("docker")
        .args(["-H", &socket])
        .args(args)
        .output()
        .map_err(|err| err.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "docker {args:?} on node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn node_docker(node: u8, args: &[&str]) -> String {
    try_node_docker(node, args).unwrap()
}

fn set_availability(node: u8, availability: &str) {
    node_docker(
        1,
        &[
            "node",
            "update",
            "--availability",
            availability,
            &node_name(node),
        ],
    );
}

fn exec(command: &str) -> ExecRequest {
    ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), command.into()],
        ..ExecRequest::default()
    }
}

/// One control plane on the rig, on a Redis of its own, with an instance label of its own (its
/// containers are told apart from any other's on the nodes).
struct Swarm {
    dir: tempfile::TempDir,
    _redis: RedisServer,
    label: String,
    child: Child,
    port: u16,
    client: Client,
    admin: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Swarm {
    /// `None` (after saying so loudly) only where the rig cannot exist: `BERTH_SWARM_SKIP`.
    fn start(adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        let turn = RIG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let rig_config = rig_dir().join("berth.toml");
        if !rig_config.exists() {
            if let Ok(why) = std::env::var("BERTH_SWARM_SKIP") {
                eprintln!(
                    "SKIPPED: the swarm tests need the swarm rig, which cannot run here: {why}"
                );
                return None;
            }
            panic!(
                "the swarm rig is not up ({} is missing): run `scripts/swarm-rig up` (scripts/test does)",
                rig_config.display()
            );
        }
        let mut config = Config::from_file(&rig_config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start_persistent();
        let label = format!("test-swarm-{}-{}", std::process::id(), common::free_port());
        config.docker.instance = label.clone();
        config.data_dir = dir.path().join("data");
        config.store.url = Some(redis.url());
        config.lifecycle.reconcile_interval_seconds = 2;
        config.lifecycle.reap_interval_ms = 250;
        config.quota.sessions_per_user = 40;
        config.capacity.create_concurrency = 8;
        // No pools: every container on the nodes is a session the test made.
        for template in config.templates.values_mut() {
            template.pool.min_ready = 0;
        }
        config.templates.get_mut("tiny").unwrap().memory_mb = 64;
        adjust(&mut config);
        let admin = config
            .admin_token
            .clone()
            .expect("the rig's config has an admin token");
        std::fs::write(
            dir.path().join("berth.toml"),
            toml::to_string(&config).unwrap(),
        )
        .unwrap();
        let port = common::free_port();
        let client = Client::new(&format!("http://127.0.0.1:{port}"), &admin).unwrap();
        let child = Self::serve(dir.path(), port);
        let mut swarm = Self {
            dir,
            _redis: redis,
            label,
            child,
            port,
            client,
            admin,
            _turn: turn,
        };
        swarm.wait_ready();
        Some(swarm)
    }

    fn serve(dir: &Path, port: u16) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("serve.log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(dir.join("berth.toml"))
            .env("RUST_LOG", "info,berth_server=debug,tower_http=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Ready once it follows every node's events (it creates nothing before).
    fn wait_ready(&mut self) {
        let (port, admin, log) = (
            self.port,
            self.admin.clone(),
            self.dir.path().join("serve.log"),
        );
        common::wait_until_serving(
            &mut self.child,
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && get(port, &admin, "/readyz").0 == 200
            },
        );
    }

    /// kill -9 of the control plane, and a new one on the same store and port; returns once
    /// the new one leads (the dead one's lease has run out) and has reconciled.
    fn kill_and_restart(&mut self) {
        self.kill_and_restart_after(|| {});
    }

    /// [`Self::kill_and_restart`], doing `meanwhile` while no control plane runs.
    fn kill_and_restart_after(&mut self, meanwhile: impl FnOnce()) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        meanwhile();
        self.child = Self::serve(self.dir.path(), self.port);
        self.wait_ready();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("reconciled on taking the lead").count() < 2 {
            assert!(Instant::now() < deadline, "it never led: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// The node whose engine holds the session's container, if one does.
    fn node_of(&self, session: &str) -> Option<u8> {
        NODES.into_iter().find(|&node| {
            let filter = format!("label=berth.session={session}");
            let instance = format!("label=berth.instance={}", self.label);
            try_node_docker(
                node,
                &["ps", "-q", "--filter", &filter, "--filter", &instance],
            )
            .is_ok_and(|ids| !ids.trim().is_empty())
        })
    }

    /// This control plane's containers, a line each: node, session, state.
    fn containers(&self) -> String {
        let instance = format!("label=berth.instance={}", self.label);
        let format = "{{.Label \"berth.session\"}} {{.State}}";
        NODES
            .into_iter()
            .flat_map(|node| {
                let listed = try_node_docker(
                    node,
                    &["ps", "-a", "--filter", &instance, "--format", format],
                )
                .unwrap_or_else(|err| err);
                listed
                    .lines()
                    .map(|line| format!("{node} {line}"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every node's count of this control plane's containers.
    fn per_node(&self) -> BTreeMap<u8, usize> {
        let instance = format!("label=berth.instance={}", self.label);
        NODES
            .into_iter()
            .map(|node| {
                let ids = node_docker(node, &["ps", "-aq", "--filter", &instance]);
                (node, ids.lines().count())
            })
            .collect()
    }

    /// GET `path` on the control plane as the admin: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        get(self.port, &self.admin, path)
    }

    async fn create(&self) -> String {
        let request = CreateSession {
            template: "tiny".into(),
            ..CreateSession::default()
        };
        self.client.create_session(&request).await.unwrap().id
    }

    /// A session whose container is on `node`. Placement alone would not get it there for
    /// sure: it picks the node with the most memory unpromised, which sessions other tests
    /// left running can keep from being `node` however often this asks. So the other nodes are
    /// paused (they take no new sessions) until it is made; `Drop` sets them active again
    /// should this fail.
    async fn session_on(&self, node: u8) -> String {
        let others: Vec<u8> = NODES.into_iter().filter(|other| *other != node).collect();
        for other in &others {
            set_availability(*other, "pause");
        }
        let mut made = None;
        for _ in 0..10 {
            let id = self.create().await;
            if self.node_of(&id) == Some(node) {
                made = Some(id);
                break;
            }
            self.client.delete_session(&id).await.unwrap();
            // Placement sees the pause at its next listing of the nodes, within 2 s.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for other in &others {
            set_availability(*other, "active");
        }
        made.unwrap_or_else(|| {
            panic!(
                "no session landed on node {node}: {:?}; log: {}",
                self.per_node(),
                self.log()
            )
        })
    }

    async fn sh(&self, session: &str, command: &str) -> String {
        let result = self.client.exec(session, &exec(command)).await.unwrap();
        assert_eq!(result.exit_code, Some(0), "{command}: {result:?}");
        result.stdout
    }

    async fn wait_for(
        &self,
        session: &str,
        within: Duration,
        done: impl Fn(&berth_proto::Session) -> bool,
    ) -> berth_proto::Session {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.client.get_session(session).await.unwrap();
            if done(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{session} never got there: {seen:?}; log: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for node in NODES {
            let _ = try_node_docker(
                1,
                &[
                    "node",
                    "update",
                    "--availability",
                    "active",
                    &node_name(node),
                ],
            );
            let instance = format!("label=berth.instance={}", self.label);
            let Ok(ids) = try_node_docker(node, &["ps", "-aq", "--filter", &instance]) else {
                continue;
            };
            let ids: Vec<&str> = ids.lines().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = try_node_docker(node, &args);
            }
        }
    }
}

/// GET `path` on the control plane at `port` as `admin`: status and body.
fn get(port: u16, admin: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        admin
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether a TCP connection from inside `session` to `target` (ip:port) is blocked: busybox's
/// `nc` says "timed out" when nothing answers, as Berth's firewall drops the packets.
async fn blocked(swarm: &Swarm, session: &str, target: &str) -> bool {
    let (ip, port) = target.rsplit_once(':').unwrap();
    let probe =
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port} 2>&1; echo rc=$?");
    let out = swarm
        .client
        .exec(session, &exec(&probe))
        .await
        .unwrap()
        .stdout;
    out.contains("timed out")
}

fn container_ip(node: u8, session: &str) -> String {
    inspect_container(
        node,
        session,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    )
}

/// `docker inspect -f format` of the session's container on `node`.
fn inspect_container(node: u8, session: &str, format: &str) -> String {
    let filter = format!("label=berth.session={session}");
    let id = node_docker(node, &["ps", "-q", "--filter", &filter]);
    node_docker(node, &["inspect", "-f", format, id.trim()])
        .trim()
        .to_owned()
}

#[test]
fn sessions_spread_over_the_nodes_and_work_through_their_relays() {
    let Some(swarm) = Swarm::start(|_| {}) else {
        return;
    };
    runtime().block_on(async {
        let creates = (0..30).map(|_| swarm.create());
        let ids = futures_util::future::join_all(creates).await;
        let per_node = swarm.per_node();
        assert_eq!(
            per_node.values().sum::<usize>(),
            30,
            "{per_node:?}:\n{}",
            swarm.containers()
        );
        for (node, count) in &per_node {
            assert!(*count >= 7, "node {node} got {count} of 30: {per_node:?}");
        }

        // A session on node 3, used through this control plane: exec, files, a preview.
        let on_3 = ids
            .iter()
            .find(|id| swarm.node_of(id) == Some(3))
            .unwrap()
            .clone();
        assert_eq!(swarm.sh(&on_3, "hostname").await.trim(), on_3);
        let mut terminal = swarm
            .client
            .terminal(&on_3, &TerminalQuery::default())
            .await
            .unwrap();
        terminal.send(b"echo node-$((1+2))\n").await.unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("node-3") {
            match tokio::time::timeout(Duration::from_secs(10), terminal.next()).await {
                Ok(Some(TerminalEvent::Output(bytes))) => seen.extend(bytes),
                other => panic!(
                    "terminal: {other:?}; so far {}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        swarm
            .client
            .upload(&on_3, "/home/user/site/index.html", "served from node 3")
            .await
            .unwrap();
        let read = swarm
            .client
            .download(&on_3, "/home/user/site/index.html")
            .await
            .unwrap();
        assert_eq!(read.text().await.unwrap(), "served from node 3");
        swarm.sh(&on_3, "httpd -p 8000 -h /home/user/site").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) =
                swarm.get(&format!("/api/v1/sessions/{on_3}/ports/8000/index.html"));
            if status == 200 {
                assert_eq!(body, "served from node 3");
                break;
            }
            assert!(Instant::now() < deadline, "preview: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn no_session_reaches_another_session_or_a_node_on_any_node() {
    let Some(swarm) = Swarm::start(|_| {}) else {
        return;
    };
    runtime().block_on(async {
        let on_1 = swarm.session_on(1).await;
        let also_on_1 = swarm.session_on(1).await;
        let on_2 = swarm.session_on(2).await;
        // The probe works: the session reaches its own agent.
        assert!(!blocked(&swarm, &on_1, "127.0.0.1:7681").await);
        let targets = [
            (
                format!("{}:7681", container_ip(1, &also_on_1)),
                "a session on the same node",
            ),
            (
                format!("{}:7681", container_ip(2, &on_2)),
                "a session on another node",
            ),
            ("10.99.0.11:7700".to_owned(), "its own node's relay"),
            ("10.99.0.12:7700".to_owned(), "another node's relay"),
            ("10.99.0.11:2377".to_owned(), "its own node's swarm port"),
            ("10.99.0.13:2377".to_owned(), "another node's swarm port"),
            ("10.99.0.1:5000".to_owned(), "the snapshot registry"),
        ];
        for (target, what) in &targets {
            assert!(
                blocked(&swarm, &on_1, target).await,
                "{what} ({target}) is reachable from a session"
            );
        }
    });
}

#[test]
fn with_a_nodes_relay_down_the_other_nodes_are_still_reconciled() {
    let Some(mut swarm) = Swarm::start(|_| {}) else {
        return;
    };
    let rt = runtime();
    let (on_1, on_2) =
        rt.block_on(async { (swarm.session_on(1).await, swarm.session_on(2).await) });
    let relay_down = RelayDown::stop(2);
    // While no control plane runs, node 1 loses a session's container: only a reconcile
    // notices, and it lists every node.
    swarm.kill_and_restart_after(|| {
        let filter = format!("label=berth.session={on_1}");
        let id = node_docker(1, &["ps", "-q", "--filter", &filter]);
        node_docker(1, &["rm", "-f", id.trim()]);
    });
    rt.block_on(async {
        let gone = swarm
            .wait_for(&on_1, Duration::from_secs(20), |s| {
                s.state == SessionState::Failed
            })
            .await;
        assert_eq!(gone.stop_reason.as_deref(), Some("container_vanished"));
        let (status, metrics) = swarm.get("/metrics");
        assert_eq!(status, 200);
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("berth_node_up{node=\"berth-rig-2\"} 0")),
            "{metrics}"
        );
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("berth_node_up{node=\"berth-rig-1\"} 1")),
            "{metrics}"
        );
        // Nothing is known of node 2's session: it is left running.
        let kept = swarm.client.get_session(&on_2).await.unwrap();
        assert_eq!(kept.state, SessionState::Running, "{kept:?}");
        // Back within a reading of the node list (2 s) of its relay's return.
        drop(relay_down);
        let back = Instant::now();
        loop {
            let result = swarm.client.exec(&on_2, &exec("hostname")).await;
            if result.as_ref().is_ok_and(|r| r.stdout.trim() == on_2) {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "{result:?}; log: {}",
                swarm.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

/// The session network (a shard of its policy's) the session's container is on.
fn container_network(node: u8, session: &str) -> String {
    inspect_container(
        node,
        session,
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
    )
}

#[test]
fn sessions_past_a_nodes_first_network_work_on_its_next_shard_and_stay_apart() {
    let Some(swarm) = Swarm::start(|config| config.docker.sessions_per_network = 1) else {
        return;
    };
    runtime().block_on(async {
        let first = swarm.session_on(1).await;
        let second = swarm.session_on(1).await;
        let (first_net, second_net) = (container_network(1, &first), container_network(1, &second));
        assert_ne!(first_net, second_net, "one session per network");
        assert!(
            second_net.starts_with(&first_net),
            "{first_net} then {second_net}"
        );
        // Reached through the node's relay on a subnet made after the node was first routed.
        assert_eq!(swarm.sh(&second, "hostname").await.trim(), second);
        for (from, to) in [(&second, &first), (&first, &second)] {
            let target = format!("{}:7681", container_ip(1, to));
            assert!(
                blocked(&swarm, from, &target).await,
                "{to}'s agent on the node's {} is reachable from {from}",
                container_network(1, to)
            );
        }
    });
}

#[test]
fn a_drained_node_hibernates_its_sessions_and_they_wake_on_another() {
    let Some(swarm) = Swarm::start(|_| {}) else {
        return;
    };
    runtime().block_on(async {
        let id = swarm.session_on(2).await;
        let manifest = "cd /home/user && head -c 2000000 /dev/urandom > blob && mkdir -p d && echo one > d/a && find . -type f | sort | xargs md5sum";
        let before = swarm.sh(&id, manifest).await;
        set_availability(2, "drain");
        let asleep = swarm
            .wait_for(&id, Duration::from_secs(30), |s| s.state == SessionState::Hibernated)
            .await;
        assert_eq!(asleep.stop_reason.as_deref(), Some("drain"));
        assert_eq!(swarm.node_of(&id), None);
        let after = swarm.sh(&id, "cd /home/user && find . -type f | sort | xargs md5sum").await;
        assert_eq!(before, after);
        let node = swarm.node_of(&id);
        assert!(matches!(node, Some(1 | 3)), "woke on {node:?}");
    });
}

#[test]
fn a_lost_nodes_sessions_come_back_elsewhere_from_their_snapshot_or_fail_with_node_lost() {
    let Some(swarm) = Swarm::start(|_| {}) else {
        return;
    };
    runtime().block_on(async {
        let kept = swarm.session_on(3).await;
        swarm.sh(&kept, "echo checkpointed > /home/user/kept").await;
        swarm.client.hibernate_session(&kept).await.unwrap();
        swarm
            .wait_for(&kept, Duration::from_secs(30), |s| {
                s.state == SessionState::Hibernated
            })
            .await;
        // Woken on node 3 again: nodes 1 and 2 are drained for the moment (placement reads
        // the swarm's nodes again every 2 s).
        set_availability(1, "drain");
        set_availability(2, "drain");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        swarm.client.resume_session(&kept).await.unwrap();
        let bare = swarm.create().await;
        set_availability(1, "active");
        set_availability(2, "active");
        assert_eq!(
            (swarm.node_of(&kept), swarm.node_of(&bare)),
            (Some(3), Some(3))
        );

        let pid = std::fs::read_to_string(rig_dir().join("3/docker.pid")).unwrap();
        let stopped_at = Instant::now();
        Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        let back = async {
            let revived = swarm
                .wait_for(&kept, Duration::from_secs(90), |s| {
                    s.state == SessionState::Running && swarm.node_of(&s.id).is_some_and(|n| n != 3)
                })
                .await;
            let failed = swarm
                .wait_for(&bare, Duration::from_secs(30), |s| {
                    s.state == SessionState::Failed
                })
                .await;
            (revived, failed)
        };
        let (_, failed) = back.await;
        let took = stopped_at.elapsed();
        restart_node(3);
        assert_eq!(failed.stop_reason.as_deref(), Some("node_lost"));
        assert_eq!(
            swarm.sh(&kept, "cat /home/user/kept").await.trim(),
            "checkpointed"
        );
        let timeline = swarm.client.timeline(&kept).await.unwrap();
        assert!(
            timeline
                .iter()
                .any(|event| event.message.contains("node_lost")),
            "{timeline:?}"
        );
        eprintln!("node lost to sessions running elsewhere: {took:?}");
    });
}

#[test]
fn with_the_registry_down_a_hibernation_fails_and_the_session_keeps_running() {
    let Some(swarm) = Swarm::start(|_| {}) else {
        return;
    };
    runtime().block_on(async {
        let id = swarm.create().await;
        swarm.sh(&id, "echo still > /home/user/here").await;
        let registry = RegistryDown::stop();
        let refused = swarm.client.hibernate_session(&id).await;
        let settled = swarm
            .wait_for(&id, Duration::from_secs(60), |s| {
                !matches!(s.state, SessionState::Hibernating | SessionState::Restoring)
            })
            .await;
        drop(registry);
        assert!(
            refused.is_err() || settled.state == SessionState::Running,
            "{refused:?} {settled:?}"
        );
        assert_eq!(
            settled.state,
            SessionState::Running,
            "{settled:?}; log: {}",
            swarm.log()
        );
        assert_eq!(swarm.sh(&id, "cat /home/user/here").await.trim(), "still");
        // Once it is back, the same hibernation goes through.
        swarm.client.hibernate_session(&id).await.unwrap();
        swarm
            .wait_for(&id, Duration::from_secs(30), |s| {
                s.state == SessionState::Hibernated
            })
            .await;
    });
}

#[test]
fn a_template_with_node_labels_runs_only_on_nodes_that_have_them() {
    let Some(swarm) = Swarm::start(|config| {
        let tiny = config.templates["tiny"].clone();
        let mut gpu = tiny;
        gpu.node_labels = BTreeMap::from([("gpu".to_owned(), "yes".to_owned())]);
        config.templates.insert("gpu".into(), gpu);
    }) else {
        return;
    };
    let labelled = NodeLabel::add(2, "gpu=yes");
    runtime().block_on(async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let request = CreateSession {
            template: "gpu".into(),
            ..CreateSession::default()
        };
        for _ in 0..4 {
            let id = swarm.client.create_session(&request).await.unwrap().id;
            assert_eq!(swarm.node_of(&id), Some(2));
        }
        drop(labelled);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let err = swarm
            .client
            .create_session(&request)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks the label gpu=yes"), "{err}");
    });
}

#[test]
fn a_restarted_control_plane_finds_every_nodes_sessions_running() {
    let Some(mut swarm) = Swarm::start(|_| {}) else {
        return;
    };
    let rt = runtime();
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for node in NODES {
            let id = swarm.session_on(node).await;
            swarm
                .sh(&id, &format!("echo {node} > /home/user/node"))
                .await;
            ids.push(id);
        }
        ids
    });
    swarm.kill_and_restart();
    rt.block_on(async {
        for (id, node) in ids.iter().zip(NODES) {
            assert_eq!(swarm.node_of(id), Some(node));
            let seen = swarm.sh(id, "cat /home/user/node").await;
            assert_eq!(seen.trim(), node.to_string());
        }
    });
    // Both starts reconciled with all three nodes, and neither found anything amiss.
    let log = swarm.log();
    let reports: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("ReconcileReport"))
        .collect();
    assert!(reports.len() >= 2, "{log}");
    assert!(
        reports
            .iter()
            .all(|report| report.contains("orphans_removed: 0, sessions_failed: 0")),
        "{reports:#?}"
    );
}

#[test]
fn a_node_whose_relay_is_down_takes_no_new_sessions() {
    let Some(swarm) = Swarm::start(|_| {}) else {
        return;
    };
    let relay_down = RelayDown::stop(2);
    runtime().block_on(async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let creates = (0..6).map(|_| swarm.create());
        let ids = futures_util::future::join_all(creates).await;
        let nodes: Vec<Option<u8>> = ids.iter().map(|id| swarm.node_of(id)).collect();
        drop(relay_down);
        assert!(
            nodes.iter().all(|node| matches!(node, Some(1 | 3))),
            "{nodes:?}"
        );
    });
}

/// A label on a swarm node, removed when dropped.
struct NodeLabel(u8, String);

impl NodeLabel {
    fn add(node: u8, label: &str) -> Self {
        node_docker(
            1,
            &["node", "update", "--label-add", label, &node_name(node)],
        );
        Self(node, label.split('=').next().unwrap().to_owned())
    }
}

impl Drop for NodeLabel {
    fn drop(&mut self) {
        let _ = try_node_docker(
            1,
            &["node", "update", "--label-rm", &self.1, &node_name(self.0)],
        );
    }
}

/// A node's berth-node, stopped until dropped.
struct RelayDown;

impl RelayDown {
    fn stop(node: u8) -> Self {
        let pid =
            std::fs::read_to_string(rig_dir().join(format!("{node}/berth-node.pid"))).unwrap();
        assert!(
            Command::new("kill")
                .arg(pid.trim())
                .status()
                .unwrap()
                .success()
        );
        Self
    }
}

impl Drop for RelayDown {
    fn drop(&mut self) {
        rig_up();
    }
}

/// The rig's registry, stopped (connections to it refused) until dropped.
struct RegistryDown;

impl RegistryDown {
    fn stop() -> Self {
        let pid = std::fs::read_to_string(rig_dir().join("registry.pid")).unwrap();
        assert!(
            Command::new("kill")
                .arg(pid.trim())
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect("10.99.0.1:5000").is_ok() {
            assert!(Instant::now() < deadline, "the registry did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self
    }
}

impl Drop for RegistryDown {
    fn drop(&mut self) {
        rig_up();
    }
}

/// `scripts/swarm-rig up` again: it starts whatever of the rig is down, and only that.
fn rig_up() {
    let rig = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swarm-rig");
    let out = Command::new(rig)
        .arg("up")
        .env("BERTH_RIG_BUILD", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swarm-rig up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a node's engine again (the rig's `up` is idempotent) and waits for the swarm to list
/// it ready.
fn restart_node(node: u8) {
    rig_up();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node_docker(1, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
        .contains(&format!("{} Ready", node_name(node)))
    {
        assert!(Instant::now() < deadline, "node {node} never came back");
        std::thread::sleep(Duration::from_millis(500));
    }
}
