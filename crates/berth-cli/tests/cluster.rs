//! Several `berth serve` processes on one real `redis-server` and the real engine: any instance
//! answers any request, one leads lifecycle, and killing it costs nothing.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use berth_client::{Client, ClientError};
use berth_proto::{CreateSession, ErrorCode, SessionState, process::ExecRequest};
use berth_server::store::redis::test_server::RedisServer;
use serde_json::Value;

const ADMIN: &str = "cluster-test-admin-token-0123456789abcdefghij";

/// One `berth serve` of the cluster.
struct Instance {
    child: Child,
    port: u16,
    log: PathBuf,
    client: Client,
}

impl Instance {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "SIGTERM did not stop it");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lifecycle(&self) -> Option<String> {
        lifecycle_at(self.port)
    }
}

/// `"leading"` or `"following"`, as `GET /readyz` on `port` says; `None` while it does not
/// answer.
fn lifecycle_at(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let body = answer.split("\r\n\r\n").nth(1)?;
    let readiness: Value = serde_json::from_str(body).ok()?;
    Some(readiness["lifecycle"].as_str()?.to_owned())
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Instances on one Redis, one engine instance label, one data dir each.
struct Cluster {
    dir: tempfile::TempDir,
    redis: RedisServer,
    config: PathBuf,
    label: String,
    instances: Vec<Instance>,
}

impl Cluster {
    /// `count` instances with a short lease: failovers within a test's patience.
    fn start(count: usize, extra_config: &str) -> Self {
        Self::start_with_lease(count, 2000, extra_config)
    }

    fn start_with_lease(count: usize, lease_ttl_ms: u64, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start_persistent();
        let label = format!(
            "test-cluster-{}",
            u64::from(std::process::id()) * 100_000 + u64::from(common::free_port())
        );
        let config = dir.path().join("berth.toml");
        // One host dir for all, as instances on one engine share it.
        let cluster = format!(
            "[cluster]\nlease_ttl_ms = {lease_ttl_ms}\nhost_dir = \"{}\"\n\n",
            dir.path().join("host").display()
        );
        // These tests' instances share two cores and one engine with each other: an engine
        // call can wait behind dozens of creates for longer than the default 5 s.
        std::fs::write(
            &config,
            format!(
                "[docker]\ninstance = \"{label}\"\nnetwork = \"berth-test\"\ntimeout_seconds = 30\n\n\
                 [lifecycle]\nreconcile_interval_seconds = 2\nreap_interval_ms = 250\n\n{cluster}\
                 [templates.default]\nimage = \"berth/tiny:latest\"\nmemory_mb = 64\n\n{extra_config}"
            ),
        )
        .unwrap();
        let mut cluster = Self {
            dir,
            redis,
            config,
            label,
            instances: Vec::new(),
        };
        for _ in 0..count {
            cluster.add_instance("");
        }
        cluster
    }

    /// Starts one more instance, with `own_config` (listeners of its own) after the shared.
    fn add_instance(&mut self, own_config: &str) -> usize {
        let index = self.instances.len();
        let port = common::free_port();
        let data = self.dir.path().join(format!("data{index}"));
        let log = self.dir.path().join(format!("instance{index}-{port}.log"));
        let config = self.dir.path().join(format!("berth{index}.toml"));
        let shared = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(
            &config,
            format!(
                "{shared}
{own_config}"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--store", &self.redis.url()])
            .env("BERTH_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "info,berth_server=debug,tower_http=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let client = Client::new(&format!("http://127.0.0.1:{port}"), ADMIN).unwrap();
        let mut instance = Instance {
            child,
            port,
            log,
            client,
        };
        let log = instance.log.clone();
        common::wait_until_serving(
            &mut instance.child,
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || lifecycle_at(port).is_some(),
        );
        self.instances.push(instance);
        index
    }

    /// Waits until exactly one live instance leads, and says which.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leading: Vec<usize> = (0..self.instances.len())
                .filter(|&i| self.instances[i].lifecycle().as_deref() == Some("leading"))
                .collect();
            if let [one] = leading[..] {
                return one;
            }
            assert!(
                Instant::now() < deadline,
                "not exactly one leader: {leading:?}; {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client(&self, index: usize) -> &Client {
        &self.instances[index].client
    }

    fn logs(&self) -> String {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, instance)| format!("\n--- instance {i}\n{}", instance.log()))
            .collect()
    }

    /// The cluster's containers: id to (session, running).
    fn containers(&self) -> BTreeMap<String, (String, bool)> {
        let out = Command::new("docker")
            .args(["ps", "-a", "--no-trunc", "--filter"])
            .arg(format!("label=berth.instance={}", self.label))
            .args([
                "--format",
                "{{.ID}} {{.Label \"berth.session\"}} {{.State}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let id = parts.next()?.to_owned();
                let session = parts.next()?.to_owned();
                let running = parts.next()? == "running";
                Some((id, (session, running)))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            instance.kill9();
        }
        let ids: Vec<String> = self.containers().into_keys().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(ids).output();
        }
    }
}

fn request() -> CreateSession {
    CreateSession::default()
}

fn exec(command: &str) -> ExecRequest {
    ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), command.into()],
        ..ExecRequest::default()
    }
}

/// The status line a WebSocket upgrade with `?ticket=` gets.
fn upgrade_status(port: u16, session: &str, ticket: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/sessions/{session}/terminal?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    String::from_utf8_lossy(&first).into_owned()
}

/// Reads a session's events WebSocket on `port` until a text frame carries `wanted`, or
/// `within` passes; returns what was read.
fn events_until(port: u16, session: &str, wanted: &str, within: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /api/v1/sessions/{session}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {ADMIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + within;
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&read).contains(wanted) {
        stream
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
            ))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => read.extend_from_slice(&buffer[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&read).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn any_instance_answers_any_request_and_a_ticket_is_spent_once() {
    let cluster = Cluster::start(2, "");
    let leader = cluster.leader();
    let follower = 1 - leader;
    runtime().block_on(async {
        // Created through the follower (which sends it to the leader), used through both.
        let session = cluster
            .client(follower)
            .create_session(&request())
            .await
            .unwrap();
        assert_eq!(session.state, SessionState::Running);
        for (round, index) in [leader, follower, leader, follower].into_iter().enumerate() {
            let client = cluster.client(index);
            let seen = client.get_session(&session.id).await.unwrap();
            assert_eq!(seen.state, SessionState::Running);
            let wrote = client
                .exec(
                    &session.id,
                    &exec(&format!("echo {round} >> rounds; cat rounds | wc -l")),
                )
                .await
                .unwrap();
            assert_eq!(wrote.stdout.trim(), (round + 1).to_string());
        }
        // Hibernated through one, woken by an exec through the other.
        let asleep = cluster
            .client(follower)
            .hibernate_session(&session.id)
            .await
            .unwrap();
        assert_eq!(asleep.state, SessionState::Hibernated);
        let woke = cluster
            .client(leader)
            .exec(&session.id, &exec("cat rounds | wc -l"))
            .await
            .unwrap();
        assert_eq!(woke.stdout.trim(), "4");

        // A WebSocket ticket issued by one instance opens a terminal on the other, once.
        let ticket = cluster.client(leader).ticket(&session.id).await.unwrap();
        let follower_port = cluster.instances[follower].port;
        let leader_port = cluster.instances[leader].port;
        assert_eq!(
            upgrade_status(follower_port, &session.id, &ticket),
            "HTTP/1.1 101"
        );
        assert_eq!(
            upgrade_status(leader_port, &session.id, &ticket),
            "HTTP/1.1 401",
            "a ticket is single use across instances"
        );

        cluster
            .client(follower)
            .delete_session(&session.id)
            .await
            .unwrap();
        let gone = cluster
            .client(leader)
            .get_session(&session.id)
            .await
            .unwrap();
        assert_eq!(gone.state, SessionState::Stopped);
    });
    assert!(cluster.containers().is_empty(), "{}", cluster.logs());
}

#[test]
fn concurrent_creates_on_every_instance_keep_quotas_and_pools_exact() {
    let cluster = Cluster::start(
        3,
        "[quota]\nsessions_per_user = 2\n\n[templates.default.pool]\nmin_ready = 3\n",
    );
    let users = 5;
    let per_user = 8;
    runtime().block_on(async {
        let admin = cluster.client(cluster.leader());
        let mut tokens = Vec::new();
        for user in 0..users {
            tokens.push(
                admin
                    .create_user(&format!("user{user}"))
                    .await
                    .unwrap()
                    .token,
            );
        }
        // 40 creates at once, spread over the three instances.
        let mut creates = tokio::task::JoinSet::new();
        for (user, token) in tokens.iter().enumerate() {
            for attempt in 0..per_user {
                let port = cluster.instances[(user + attempt) % 3].port;
                let client = Client::new(&format!("http://127.0.0.1:{port}"), token).unwrap();
                creates.spawn(async move { (user, client.create_session(&request()).await) });
            }
        }
        let mut created = Vec::new();
        let mut refused = 0;
        while let Some(joined) = creates.join_next().await {
            match joined.unwrap() {
                (user, Ok(session)) => created.push((user, session)),
                (_, Err(err)) if err.code() == Some(ErrorCode::QuotaExceeded) => refused += 1,
                (_, Err(err)) => panic!("{err}; {}", cluster.logs()),
            }
        }
        assert_eq!(created.len(), users * 2, "two each: {created:?}");
        assert_eq!(refused, users * (per_user - 2));
        for user in 0..users {
            assert_eq!(created.iter().filter(|(u, _)| *u == user).count(), 2);
        }
        // One container per session, none shared, and the pool back at three.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let containers = cluster.containers();
            let sessions: HashSet<&String> = containers.values().map(|(s, _)| s).collect();
            let pooled = containers.len().saturating_sub(created.len());
            let pool = admin.pool().await.unwrap();
            let ready = pool.iter().map(|p| p.ready).sum::<usize>();
            if sessions.len() == containers.len() && pooled == 3 && ready == 3 {
                for (_, session) in &created {
                    assert!(sessions.contains(&session.id));
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} containers for {} sessions, pool {pool:?}; {}",
                containers.len(),
                created.len(),
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// A create's outcome in a burst that outlives its leader: a session, or an error that says
/// to retry.
fn retryable(err: &ClientError) -> bool {
    matches!(
        err.code(),
        Some(ErrorCode::StoreUnavailable | ErrorCode::EngineUnavailable | ErrorCode::SessionFailed)
    )
}

#[test]
fn killing_the_leader_mid_burst_fails_over_and_leaves_nothing_behind() {
    let mut cluster = Cluster::start(2, "[templates.default.pool]\nmin_ready = 2\n");
    let leader = cluster.leader();
    let follower = 1 - leader;
    let follower_port = cluster.instances[follower].port;
    let rt = runtime();
    let burst = rt.spawn(async move {
        let client = Client::new(&format!("http://127.0.0.1:{follower_port}"), ADMIN).unwrap();
        let mut creates = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let client = client.clone();
            creates.spawn(async move { client.create_session(&request()).await });
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        creates.join_all().await
    });
    std::thread::sleep(Duration::from_millis(300));
    cluster.instances[leader].kill9();
    let killed = Instant::now();

    // Every create in flight ends, with a session or an error to retry.
    let outcomes = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), burst)
            .await
            .expect("every request in flight ends")
            .unwrap()
    });
    let mut created = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(session) => created.push(session.id),
            Err(err) => assert!(retryable(&err), "{err}; {}", cluster.logs()),
        }
    }
    // The survivor leads, and creates work again, within 10 s of the kill.
    rt.block_on(async {
        let client = cluster.client(follower);
        loop {
            match client.create_session(&request()).await {
                Ok(session) => {
                    created.push(session.id);
                    break;
                }
                Err(err) if retryable(&err) => {}
                Err(err) => panic!("{err}; {}", cluster.logs()),
            }
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "no create succeeded within 10 s of the kill; {}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(cluster.leader(), follower);

        // Settled: no row between states, no container without a live session.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let sessions = client
                .list_sessions(&berth_client::ListSessions {
                    all: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            let settled = sessions.iter().all(|s| {
                matches!(
                    s.state,
                    SessionState::Running | SessionState::Failed | SessionState::Stopped
                )
            });
            let live: HashSet<&str> = sessions
                .iter()
                .filter(|s| s.state == SessionState::Running)
                .map(|s| s.id.as_str())
                .collect();
            let containers = cluster.containers();
            let owned = containers
                .values()
                .filter(|(session, _)| live.contains(session.as_str()))
                .count();
            let pool = client.pool().await.unwrap();
            let pooled = pool.iter().map(|p| p.ready + p.warming).sum::<usize>();
            if settled && owned == live.len() && containers.len() == owned + pooled {
                for id in &created {
                    assert!(live.contains(id.as_str()), "{id} lives on");
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not settled: {sessions:?}, {containers:?}, pool {pool:?}; {}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

#[test]
fn sigterm_hands_the_lead_over_at_once() {
    let mut cluster = Cluster::start_with_lease(2, 30_000, "");
    let leader = cluster.leader();
    let follower = 1 - leader;
    cluster.instances[leader].terminate();
    let stopped = Instant::now();
    runtime().block_on(async {
        // The lease would keep a crashed leader's lead for 30 s; a stopped one gives it up.
        let session = cluster
            .client(follower)
            .create_session(&request())
            .await
            .unwrap();
        assert_eq!(session.state, SessionState::Running);
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "took {:?}",
        stopped.elapsed()
    );
    assert_eq!(cluster.leader(), follower);
}

#[test]
fn with_redis_down_lifecycle_answers_503_and_running_sessions_keep_working() {
    let mut cluster = Cluster::start(2, "");
    let leader = cluster.leader();
    let follower = 1 - leader;
    let rt = runtime();
    let session = rt.block_on(async {
        let session = cluster
            .client(leader)
            .create_session(&request())
            .await
            .unwrap();
        // Reached once through each instance before the outage.
        for index in [leader, follower] {
            cluster
                .client(index)
                .exec(&session.id, &exec("echo before >> notes"))
                .await
                .unwrap();
        }
        session
    });
    cluster.redis.stop();
    rt.block_on(async {
        for index in [leader, follower] {
            let asked = Instant::now();
            let err = cluster
                .client(index)
                .create_session(&request())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::StoreUnavailable), "{err}");
            assert!(
                asked.elapsed() < Duration::from_secs(6),
                "{:?}",
                asked.elapsed()
            );
            // Work in the running session goes on.
            let during = cluster
                .client(index)
                .exec(&session.id, &exec("echo during >> notes; wc -l < notes"))
                .await
                .unwrap();
            assert_eq!(during.exit_code, Some(0), "{during:?}");
        }
    });
    cluster.redis.restart();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let again = loop {
            match cluster.client(follower).create_session(&request()).await {
                Ok(session) => break session,
                Err(err) if retryable(&err) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("{err}; {}", cluster.logs()),
            }
        };
        assert_eq!(again.state, SessionState::Running);
        let notes = cluster
            .client(leader)
            .exec(&session.id, &exec("cat notes"))
            .await
            .unwrap();
        assert_eq!(notes.stdout, "before\nbefore\nduring\nduring\n");
    });
}

#[test]
fn a_flushed_store_is_rebuilt_from_the_engine_and_users_keep_their_sessions() {
    let cluster = Cluster::start(2, "");
    let leader = cluster.leader();
    let rt = runtime();
    let session = rt.block_on(async {
        let session = cluster
            .client(leader)
            .create_session(&request())
            .await
            .unwrap();
        cluster
            .client(leader)
            .exec(&session.id, &exec("echo kept > notes"))
            .await
            .unwrap();
        session
    });
    cluster.redis.flush_all();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = cluster.client(1 - leader).get_session(&session.id).await;
            if let Ok(found) = found {
                assert_eq!(found.state, SessionState::Running);
                assert_eq!(found.owner, session.owner);
                assert_eq!(found.template, session.template);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not rebuilt: {found:?}; {}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The rebuilt row is written before its agent's address is read from the engine: the
        // request waits for it rather than being refused.
        let notes = cluster
            .client(1 - leader)
            .exec(&session.id, &exec("cat notes"))
            .await
            .unwrap_or_else(|err| panic!("{err}; {}", cluster.logs()));
        assert_eq!(notes.stdout, "kept\n");
    });
    assert_eq!(cluster.containers().len(), 1, "{}", cluster.logs());
}

#[test]
fn the_leaders_idle_warning_reaches_a_client_of_another_instance() {
    let cluster = Cluster::start(
        2,
        "[templates.default.idle]\ntimeout_seconds = 30\nwarning_seconds = 29\n",
    );
    let leader = cluster.leader();
    let follower = 1 - leader;
    let session = runtime().block_on(async {
        cluster
            .client(leader)
            .create_session(&request())
            .await
            .unwrap()
    });
    // The leader's idle policy warns a second into idleness; the client listens on the other
    // instance.
    let heard = events_until(
        cluster.instances[follower].port,
        &session.id,
        "idle-warning",
        Duration::from_secs(15),
    );
    assert!(
        heard.starts_with("HTTP/1.1 101") && heard.contains("idle-warning"),
        "{heard:?}; {}",
        cluster.logs()
    );
}

/// One HTTP/1.0 request to `port` with a JSON body: the status and the JSON answer.
fn request_json(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn an_e2b_watcher_made_on_one_instance_is_polled_and_removed_on_another() {
    let mut cluster = Cluster::start(0, "");
    // E2B's two listeners are each instance's own.
    let ports: Vec<(u16, u16)> = (0..2)
        .map(|_| {
            let (api, sandbox) = (common::free_port(), common::free_port());
            cluster.add_instance(&format!(
                "[e2b]\nenabled = true\napi_listen = \"127.0.0.1:{api}\"\n\
                 sandbox_listen = \"127.0.0.1:{sandbox}\"\n"
            ));
            (api, sandbox)
        })
        .collect();
    // Runs `command` in the session through instance `index`; it must succeed.
    let run = |index: usize, session: &str, command: &str| {
        let ran = runtime().block_on(cluster.client(index).exec(session, &exec(command)));
        assert_eq!(ran.unwrap().exit_code, Some(0), "{command}");
    };
    let session = runtime()
        .block_on(cluster.client(0).create_session(&request()))
        .unwrap();
    run(0, &session.id, "mkdir -p /tmp/watched");
    let (status, sandbox) = request_json(
        ports[0].0,
        "GET",
        &format!("/sandboxes/{}", session.id),
        &[("X-API-KEY", ADMIN)],
        "",
    );
    assert_eq!(status, 200, "{sandbox}");
    let token = sandbox["envdAccessToken"].as_str().unwrap();
    let headers = [
        ("E2b-Sandbox-Id", session.id.as_str()),
        ("X-Access-Token", token),
    ];
    let rpc = |instance: usize, method: &str, body: &str| {
        let path = format!("/filesystem.Filesystem/{method}");
        request_json(ports[instance].1, "POST", &path, &headers, body)
    };

    let (status, created) = rpc(0, "CreateWatcher", r#"{"path": "/tmp/watched"}"#);
    assert_eq!(status, 200, "{created}; {}", cluster.logs());
    let watcher = created["watcherId"].as_str().unwrap().to_owned();
    let polled = format!(r#"{{"watcherId": "{watcher}"}}"#);
    run(1, &session.id, "echo x > /tmp/watched/news");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["name"] == "news") {
        assert!(Instant::now() < deadline, "no event for news: {seen:?}");
        let (status, events) = rpc(1, "GetWatcherEvents", &polled);
        assert_eq!(status, 200, "{events}; {}", cluster.logs());
        seen.extend(events["events"].as_array().cloned().unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen[0]["type"], "EVENT_TYPE_CREATE", "{seen:?}");

    // Removed through one, it is gone for both; a made-up id never reaches the agent as a path.
    assert_eq!(rpc(1, "RemoveWatcher", &polled).0, 200);
    for instance in 0..2 {
        let (status, gone) = rpc(instance, "GetWatcherEvents", &polled);
        assert_eq!((status, gone["code"].as_str()), (404, Some("not_found")));
    }
    let (status, _) = rpc(0, "GetWatcherEvents", r#"{"watcherId": "x?a="}"#);
    assert_eq!(
        status, 404,
        "not the 405 of the agent's DELETE-only /watches/x"
    );
}

#[test]
fn a_new_leader_serves_the_docker_and_callback_sockets_its_predecessor_made() {
    let mut cluster = Cluster::start(
        2,
        "[callback]\nenabled = true\n\n\
         [templates.docker]\nimage = \"berth/docker:latest\"\nmemory_mb = 256\n\n\
         [templates.docker.docker]\nenabled = true\nbase_images = [\"berth/busybox:latest\"]\n",
    );
    let leader = cluster.leader();
    let follower = 1 - leader;
    let created = CreateSession {
        template: "docker".into(),
        ..CreateSession::default()
    };
    let session = runtime().block_on(cluster.client(leader).create_session(&created));
    let session = session.unwrap();
    // Both ways out of the session: its Docker API, and the callback API to the platform.
    let both = "docker info --format '{{.ContainersRunning}}' >/dev/null && \
                curl -sf -X POST -H \"Authorization: Bearer $BERTH_SESSION_TOKEN\" \
                -H 'content-type: application/json' -d '{\"name\":\"still:here\"}' \
                \"$BERTH_API_URL/api/v1/self/events\"";
    let works_through = |cluster: &Cluster, index: usize| {
        runtime().block_on(async {
            let client = cluster.client(index);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let ran = client.exec(&session.id, &exec(both)).await.unwrap();
                if ran.exit_code == Some(0) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}{}; {}",
                    ran.stdout,
                    ran.stderr,
                    cluster.logs()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    };
    works_through(&cluster, leader);

    // Only the leader serves them: a follower that stops takes nothing with it...
    std::thread::sleep(Duration::from_secs(2));
    cluster.instances[follower].kill9();
    works_through(&cluster, leader);

    // ...and the next leader serves the same sockets, where the container mounts them.
    let next = cluster.add_instance("");
    cluster.instances[leader].kill9();
    assert_eq!(cluster.leader(), next);
    works_through(&cluster, next);
}
