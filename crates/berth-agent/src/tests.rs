//! The agent's routes in-process, on a temporary home directory.

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};
use berth_proto::{
    agent::SECRET_HEADER,
    files::{FileEntry, FileKind, FileList},
    process::ExecResult,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

struct TestAgent {
    agent: Agent,
    router: Router,
    home: tempfile::TempDir,
}

fn config(home: &std::path::Path) -> AgentConfig {
    AgentConfig {
        secret: "s3cret".into(),
        home: home.to_owned(),
        max_file_bytes: 1024,
    }
}

fn agent() -> TestAgent {
    let home = tempfile::tempdir().unwrap();
    let agent = Agent::new(config(home.path()));
    TestAgent {
        router: agent.router(),
        agent,
        home,
    }
}

impl TestAgent {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(SECRET_HEADER, "s3cret")
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        (
            status,
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
    }

    async fn exec(&self, json: &str) -> ExecResult {
        let (status, body) = self.call(Method::POST, "/exec", json.to_owned()).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

fn code(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn health_needs_the_secret() {
    let agent = agent();
    let (status, body) = agent.call(Method::GET, "/health", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let health: Health = serde_json::from_slice(&body).unwrap();
    assert_eq!(health.protocol, PROTOCOL_VERSION);

    for secret in [None, Some("s3creT")] {
        let mut request = Request::get("/health");
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        let response = agent
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn files_round_trip_and_list() {
    let agent = agent();
    let (status, body) = agent
        .call(Method::PUT, "/files/content?path=src/a%20b.txt", "hello")
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let written: FileEntry = serde_json::from_slice(&body).unwrap();
    assert_eq!((written.kind, written.size), (FileKind::File, 5));
    assert!(
        agent.home.path().join("src/a b.txt").exists(),
        "relative paths start at home; parents are created"
    );

    let (status, body) = agent
        .call(
            Method::GET,
            "/files/content?path=src/a%20b.txt",
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"hello".as_slice())
    );

    agent
        .call(Method::POST, "/files/mkdir", r#"{"path":"src/z/deep"}"#)
        .await;
    let (_, body) = agent
        .call(Method::GET, "/files?path=src", Body::empty())
        .await;
    let list: FileList = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = list.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["z", "a b.txt"], "directories first");

    let (status, _) = agent
        .call(
            Method::POST,
            "/files/move",
            r#"{"from":"src/a b.txt","to":"moved.txt"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = agent
        .call(Method::GET, "/files/stat?path=moved.txt", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    // A rename onto an existing file is refused unless asked to replace it, as fs.rename does.
    agent
        .call(Method::PUT, "/files/content?path=other.txt", "other")
        .await;
    let onto_moved = r#"{"from":"other.txt","to":"moved.txt"}"#;
    let (status, body) = agent.call(Method::POST, "/files/move", onto_moved).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    let replacing = r#"{"from":"other.txt","to":"moved.txt","overwrite":true}"#;
    let (status, _) = agent.call(Method::POST, "/files/move", replacing).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::fs::read_to_string(agent.home.path().join("moved.txt")).unwrap(),
        "other"
    );
    assert!(!agent.home.path().join("other.txt").exists());

    let (status, body) = agent
        .call(Method::DELETE, "/files?path=src", Body::empty())
        .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    let (status, _) = agent
        .call(
            Method::DELETE,
            "/files?path=src&recursive=true",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn file_errors_have_their_statuses() {
    let agent = agent();
    std::fs::create_dir(agent.home.path().join("dir")).unwrap();
    std::fs::write(agent.home.path().join("file"), "x").unwrap();
    let cases = [
        (
            Method::GET,
            "/files/content?path=missing",
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/files/content?path=dir", StatusCode::CONFLICT),
        (Method::GET, "/files?path=file", StatusCode::CONFLICT),
        (Method::PUT, "/files/content?path=dir", StatusCode::CONFLICT),
        (Method::GET, "/files/stat?path=", StatusCode::BAD_REQUEST),
        (
            Method::GET,
            "/files?path=/proc/1/root",
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, uri, expected) in cases {
        let (status, body) = agent.call(method.clone(), uri, Body::empty()).await;
        // Root may read anything, so the permission case only holds for an unprivileged run.
        if uri.contains("/proc/1/root") && rustix::process::geteuid().is_root() {
            continue;
        }
        assert_eq!(
            status,
            expected,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, body) = agent
        .call(Method::PUT, "/files/content?path=big", vec![b'x'; 2048])
        .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert!(
        std::fs::read_dir(agent.home.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("big")),
        "a refused upload leaves no file behind"
    );
}

#[tokio::test]
async fn archives_round_trip_symlinks_and_modes() {
    use std::os::unix::fs::PermissionsExt;
    let agent = agent();
    let tree = agent.home.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("bin/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(
        tree.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("bin/run.sh", tree.join("link")).unwrap();

    let (status, tar) = agent
        .call(Method::GET, "/files/archive?path=tree", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = agent
        .call(Method::PUT, "/files/archive?path=copy", tar)
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&body)
    );

    let copy = agent.home.path().join("copy");
    assert_eq!(
        std::fs::read_to_string(copy.join("bin/run.sh")).unwrap(),
        "#!/bin/sh\necho run\n"
    );
    assert_eq!(
        std::fs::metadata(copy.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(copy.join("link")).unwrap(),
        std::path::Path::new("bin/run.sh")
    );

    let (status, body) = agent
        .call(
            Method::PUT,
            "/files/archive?path=bad",
            "not a tar at all, clearly".repeat(40),
        )
        .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn exec_reports_exit_codes_output_and_timeouts() {
    let agent = agent();
    let ok = agent
        .exec(r#"{"cmd":["sh","-c","echo out; echo err >&2; exit 3"]}"#)
        .await;
    assert_eq!(
        (ok.exit_code, ok.stdout.as_str(), ok.stderr.as_str()),
        (Some(3), "out\n", "err\n")
    );
    let input = agent.exec(r#"{"cmd":["cat"],"stdin":"piped in"}"#).await;
    assert_eq!(input.stdout, "piped in");
    let env = agent
        .exec(r#"{"cmd":["sh","-c","echo $GREETING $HOME"],"env":{"GREETING":"hi"}}"#)
        .await;
    assert_eq!(env.stdout, format!("hi {}\n", agent.home.path().display()));

    // The grandchild `sleep` is in the same process group and dies with it.
    let started = std::time::Instant::now();
    let slow = agent
        .exec(r#"{"cmd":["sh","-c","sleep 30 & sleep 30"],"timeout_ms":300}"#)
        .await;
    assert!(
        slow.timed_out && slow.exit_code.is_none() && slow.signal == Some(9),
        "{slow:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let flood = agent
        .exec(r#"{"cmd":["sh","-c","head -c 3000000 /dev/zero"]}"#)
        .await;
    assert!(
        flood.truncated && flood.stdout.len() == 1024 * 1024,
        "{}",
        flood.stdout.len()
    );

    // A program that is not there: any argument vector is a well-formed request, and a 404
    // would say the session is not there.
    let (status, body) = agent
        .call(Method::POST, "/exec", r#"{"cmd":["/no/such/program"]}"#)
        .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let (status, _) = agent.call(Method::POST, "/exec", r#"{"cmd":[]}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A terminal WebSocket on an agent served on a local port.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `agent`'s router on a local port, as the container network would.
async fn serve(agent: &Agent) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = agent.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Opens `/terminal?query`: the terminal's id from its `ready` frame, or the refusal's status.
async fn terminal(addr: std::net::SocketAddr, query: &str) -> Result<(String, Socket), StatusCode> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let mut request = format!("ws://{addr}/terminal?{query}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(SECRET_HEADER, "s3cret".parse().unwrap());
    let mut socket = match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => socket,
        Err(tungstenite::Error::Http(response)) => return Err(response.status()),
        Err(err) => panic!("{err}"),
    };
    let ready = socket.next().await.unwrap().unwrap();
    match serde_json::from_str(ready.to_text().unwrap()).unwrap() {
        berth_proto::process::TerminalServerMessage::Ready { terminal_id } => {
            Ok((terminal_id, socket))
        }
        other => panic!("{other:?} before ready"),
    }
}

async fn type_in(socket: &mut Socket, keys: &str) {
    use futures_util::SinkExt;
    let keys = tokio_tungstenite::tungstenite::Message::Binary(keys.as_bytes().to_vec().into());
    socket.send(keys).await.unwrap();
}

/// Reads terminal output until `needle` shows up, returning everything read.
async fn read_until(socket: &mut Socket, needle: &str) -> String {
    use futures_util::StreamExt;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(bytes)))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
            }
            other => panic!("no {needle:?} in the terminal ({other:?}); got {seen:?}"),
        }
    }
    seen
}

const RESTORED: &str = "programs that were running were stopped]\r\n";

#[tokio::test]
async fn a_saved_terminal_comes_back_in_the_next_agent_with_its_output_cwd_and_size() {
    let first = agent();
    let home = first.home.path().to_owned();
    let addr = serve(&first.agent).await;
    let (id, mut socket) = terminal(addr, "cols=100&rows=30").await.unwrap();
    std::fs::create_dir_all(home.join("work/deep")).unwrap();
    type_in(&mut socket, "cd work/deep && echo before-$((6*7))\n").await;
    read_until(&mut socket, "before-42").await;

    // What SIGTERM does, then a new agent in the same home: a restarted container.
    first.agent.save_terminals().await;
    let saved = home.join(".berth/terminals").join(&id);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for file in ["meta.json", "scrollback"] {
        let bytes = std::fs::read(saved.join(file)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret"),
            "{file}"
        );
    }
    let second = Agent::new(config(&home));
    let addr = serve(&second).await;
    let (restored_id, mut restored) = terminal(addr, &format!("terminal_id={id}")).await.unwrap();
    assert_eq!(restored_id, id);
    let replay = read_until(&mut restored, RESTORED).await;
    let before = replay
        .find("before-42")
        .expect("the scrollback is replayed");
    let line = replay.find("\r\n[berth: session restored at ").unwrap();
    assert!(before < line, "{replay:?}");
    assert!(
        !saved.exists(),
        "a restored terminal's saved state is consumed"
    );

    type_in(&mut restored, "echo cwd=$(pwd) size=$(stty size)\n").await;
    read_until(
        &mut restored,
        &format!("cwd={} size=30 100", home.join("work/deep").display()),
    )
    .await;
    let (fresh, _) = terminal(addr, "").await.unwrap();
    assert_ne!(fresh, id, "new terminals do not take a saved one's id");
}

#[tokio::test]
async fn saved_terminals_restore_once_and_bad_saved_state_is_ignored() {
    let home = tempfile::tempdir().unwrap();
    let saved = home.path().join(".berth/terminals");
    let write = |id: &str, meta: Option<&str>| {
        std::fs::create_dir_all(saved.join(id)).unwrap();
        if let Some(meta) = meta {
            std::fs::write(saved.join(id).join("meta.json"), meta).unwrap();
        }
    };
    let meta = |id: &str| format!(r#"{{"id":"{id}","cwd":"/no/such/dir","cols":80,"rows":24}}"#);
    write("t3", Some(&meta("t3")));
    write("t9", Some("{not json"));
    write("t4", Some(&meta("t7")));
    write("t5", None);
    // Outside the saved directory: only ids the agent makes may name a saved terminal.
    std::fs::create_dir_all(home.path().join(".berth/evil")).unwrap();
    std::fs::write(home.path().join(".berth/evil/meta.json"), meta("../evil")).unwrap();

    let agent = Agent::new(config(home.path()));
    let addr = serve(&agent).await;
    for id in ["t9", "t4", "t5", "..%2Fevil", "t77"] {
        let refused = terminal(addr, &format!("terminal_id={id}")).await.err();
        assert_eq!(refused, Some(StatusCode::NOT_FOUND), "{id}");
    }

    // No scrollback and a working directory that is gone: back in home, with only the line.
    let (id, mut socket) = terminal(addr, "terminal_id=t3").await.unwrap();
    assert_eq!(id, "t3");
    let replay = read_until(&mut socket, RESTORED).await;
    assert!(
        replay.starts_with("\r\n[berth: session restored at "),
        "{replay:?}"
    );
    type_in(&mut socket, "echo cwd=$(pwd)\n").await;
    read_until(&mut socket, &format!("cwd={}\r\n", home.path().display())).await;
    let (again, _) = terminal(addr, "terminal_id=t3").await.unwrap();
    assert_eq!(again, "t3", "the live terminal, not a second restore");
    let (fresh, _) = terminal(addr, "").await.unwrap();
    assert_eq!(fresh, "t10", "numbered above every saved id, usable or not");
}

/// Opens `path` (a WebSocket route) on a served agent.
async fn socket(addr: std::net::SocketAddr, path: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert(SECRET_HEADER, "s3cret".parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send_text(socket: &mut Socket, text: &str) {
    use futures_util::SinkExt;
    let text = tokio_tungstenite::tungstenite::Message::Text(text.to_owned().into());
    socket.send(text).await.unwrap();
}

/// Reads a process stream until its output holds `needle`: that output (tags dropped), and
/// the text frames met on the way.
async fn output_until(socket: &mut Socket, needle: &str) -> (String, Vec<String>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (mut output, mut frames) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !output.contains(needle) {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                assert_eq!(
                    bytes[0],
                    berth_proto::process::STDOUT_TAG,
                    "a terminal is one stream"
                );
                output.push_str(&String::from_utf8_lossy(&bytes[1..]));
            }
            Ok(Some(Ok(Message::Text(text)))) => frames.push(text.to_string()),
            other => panic!("no {needle:?} in the output ({other:?}); got {output:?}"),
        }
    }
    (output, frames)
}

#[tokio::test]
async fn a_streamed_process_under_a_pty_has_a_terminal_that_resizes_and_merges_its_output() {
    let agent = agent();
    let addr = serve(&agent.agent).await;
    let mut socket = socket(addr, "/exec/stream").await;
    let script = "test -t 0 && test -t 2 && echo is-a-tty; stty size; read line; stty size; \
                  echo got-$line >&2; exit 3";
    let request = serde_json::json!({
        "cmd": ["sh", "-c", script],
        "pty": {"cols": 100, "rows": 30},
    });
    send_text(&mut socket, &request.to_string()).await;
    let (seen, frames) = output_until(&mut socket, "30 100").await;
    assert!(seen.contains("is-a-tty"), "{seen:?}");
    assert!(frames[0].contains(r#""type":"start""#), "{frames:?}");

    send_text(&mut socket, r#"{"type":"resize","cols":120,"rows":40}"#).await;
    type_in(&mut socket, "hello\n").await;
    let (seen, _) = output_until(&mut socket, "got-hello").await;
    assert!(
        seen.contains("40 120"),
        "the new size, after the line: {seen:?}"
    );
    // The terminal echoes what is typed and ends lines with CR LF, as terminals do.
    assert!(seen.contains("hello\r\n"), "{seen:?}");
    let end = loop {
        use futures_util::StreamExt;
        match socket.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => break text,
            Some(Ok(_)) => {}
            other => panic!("the stream ended without an end frame: {other:?}"),
        }
    };
    assert!(
        end.contains(r#""type":"end""#) && end.contains(r#""exit_code":3"#),
        "{end}"
    );
}

#[tokio::test]
async fn buffered_exec_refuses_a_pty() {
    let agent = agent();
    let (status, body) = agent
        .call(
            Method::POST,
            "/exec",
            r#"{"cmd":["true"],"pty":{"cols":80,"rows":24}}"#,
        )
        .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn watch_events_say_whether_a_file_or_a_directory_changed() {
    use berth_proto::files::{FileChange, FileEvent};
    use futures_util::StreamExt;
    let agent = agent();
    let addr = serve(&agent.agent).await;
    let mut socket = socket(addr, "/files/watch?path=.").await;
    let home = agent.home.path();
    let mut next = async || {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        let event: FileEvent = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        let name = event.path.rsplit('/').next().unwrap().to_owned();
        (event.change, name, event.kind)
    };
    // One step at a time: the new directory is watched only once its creation is read.
    std::fs::create_dir(home.join("made")).unwrap();
    let mut seen = vec![next().await];
    std::fs::write(home.join("made/file.txt"), "x").unwrap();
    seen.extend([next().await, next().await]);
    std::fs::remove_file(home.join("made/file.txt")).unwrap();
    seen.push(next().await);
    std::fs::remove_dir(home.join("made")).unwrap();
    seen.push(next().await);
    let file = |change| (change, "file.txt".to_owned(), FileKind::File);
    let dir = |change| (change, "made".to_owned(), FileKind::Dir);
    assert_eq!(
        seen,
        [
            dir(FileChange::Created),
            file(FileChange::Created),
            file(FileChange::Modified),
            file(FileChange::Removed),
            dir(FileChange::Removed),
        ]
    );
}

#[tokio::test]
async fn a_polled_watch_keeps_changes_between_polls_until_removed_and_a_session_holds_64() {
    let agent = agent();
    std::fs::create_dir(agent.home.path().join("w")).unwrap();
    let (status, body) = agent
        .call(
            Method::POST,
            "/watches",
            r#"{"path": "w", "recursive": true}"#,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let watch: berth_proto::files::PolledWatch = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        watch.path,
        agent.home.path().join("w").display().to_string()
    );
    let events = format!("/watches/{}/events", watch.id);

    std::fs::write(agent.home.path().join("w/new"), "x").unwrap();
    let mut seen = Vec::new();
    for _ in 0..50 {
        let (status, body) = agent.call(Method::GET, &events, Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        let polled: berth_proto::files::PolledWatchEvents = serde_json::from_slice(&body).unwrap();
        seen.extend(polled.events);
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen[0].path.ends_with("w/new"), "{seen:?}");

    let remove = format!("/watches/{}", watch.id);
    let (status, _) = agent.call(Method::DELETE, &remove, Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = agent.call(Method::GET, &events, Body::empty()).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, _) = agent.call(Method::DELETE, &remove, Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for _ in 0..polled_watches::MAX_WATCHES {
        let (status, _) = agent
            .call(Method::POST, "/watches", r#"{"path": "."}"#)
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = agent
        .call(Method::POST, "/watches", r#"{"path": "."}"#)
        .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
    );
}
