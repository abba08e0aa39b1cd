//! A session's story read from its timeline, on the real engine: lifecycle with reasons, what
//! its owner did through the API (exec, files, processes, snapshots, hibernation) with who did
//! it, and what the session saw itself: command lines typed in a terminal with their exit codes
//! (bash's prompt hook), a background process ending, a port opening.

mod common;

use std::time::Duration;

use berth_client::Client;
use berth_proto::{CreateSession, TimelineEvent, process::TerminalQuery};
use common::{Server, read_until, sh};
use serde_json::json;

fn find<'a>(events: &'a [TimelineEvent], kind: &str, what: &str) -> &'a TimelineEvent {
    events
        .iter()
        .find(|e| e.kind == kind && e.message.contains(what))
        .unwrap_or_else(|| panic!("no {kind} entry with {what:?} in {events:#?}"))
}

#[tokio::test]
async fn a_sessions_story_reads_from_its_timeline() {
    let server = Server::start().await;
    let token = server.client.create_user("alice").await.unwrap().token;
    let alice = Client::new(server.client.base_url(), &token).unwrap();
    let request = CreateSession {
        template: "base".into(),
        ..Default::default()
    };
    let id = alice.create_session(&request).await.unwrap().id;

    // Through the API.
    let ran = alice.exec(&id, &sh("exit 3")).await.unwrap();
    assert_eq!(ran.exit_code, Some(3));
    alice
        .upload(&id, "notes.txt", b"hi".to_vec())
        .await
        .unwrap();
    alice
        .start_process(&id, &sh("sleep 0.3; exit 5"))
        .await
        .unwrap();
    alice.create_snapshot(&id, "before-terminal").await.unwrap();

    // In a terminal.
    let query = TerminalQuery {
        cols: Some(100),
        rows: Some(30),
        ..Default::default()
    };
    let mut terminal = alice.terminal(&id, &query).await.unwrap();
    terminal.send(b"echo hello-$((6*7))\n").await.unwrap();
    read_until(&mut terminal, "hello-42").await;
    terminal.send(b"false\n").await.unwrap();
    terminal
        .send(b"python3 -m http.server 8123 >/dev/null 2>&1 &\n")
        .await
        .unwrap();
    terminal.send(b"echo done-$((1+1))\n").await.unwrap();
    let seen = read_until(&mut terminal, "done-2").await;
    assert!(
        !seen.contains("\x1b]6973"),
        "the hook's marks reached the screen: {seen:?}"
    );
    // The agent looks at ports every second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(terminal);

    let events = alice.timeline(&id).await.unwrap();
    find(&events, "created", "created");
    find(&events, "running", "running");
    let exec = find(&events, "exec", "exit 3");
    assert_eq!(exec.actor.as_deref(), Some("alice"));
    assert_eq!(
        exec.data,
        Some(json!({"command": "sh -c 'exit 3'", "exit_code": 3}))
    );
    let written = find(&events, "file_written", "notes.txt");
    assert_eq!(written.actor.as_deref(), Some("alice"));
    find(&events, "process_started", "sleep 0.3");
    let exited = find(&events, "process_exited", "exit 5");
    assert_eq!(exited.data.as_ref().unwrap()["exit_code"], 5);
    find(&events, "snapshot", "before-terminal");
    let hello = find(&events, "command", "echo hello-$((6*7))");
    assert_eq!(hello.data.as_ref().unwrap()["exit_code"], 0);
    let failed = find(&events, "command", "`false`");
    assert_eq!(failed.data.as_ref().unwrap()["exit_code"], 1);
    let port = find(&events, "port_opened", "8123");
    assert_eq!(port.data, Some(json!({"port": 8123})));
    let commands: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "command")
        .map(|e| e.data.as_ref().unwrap()["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        [
            "echo hello-$((6*7))",
            "false",
            "python3 -m http.server 8123 >/dev/null 2>&1 &",
            "echo done-$((1+1))"
        ],
        "each line once, in order"
    );
    assert!(
        events.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first"
    );

    // Another user's session is not theirs to read.
    let bob_token = server.client.create_user("bob").await.unwrap().token;
    let bob = Client::new(server.client.base_url(), &bob_token).unwrap();
    assert_eq!(bob.timeline(&id).await.unwrap_err().status(), Some(404));

    // Lifecycle with who asked, and the story outlives the session.
    alice.hibernate_session(&id).await.unwrap();
    alice.resume_session(&id).await.unwrap();
    alice.delete_session(&id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = alice.timeline(&id).await.unwrap();
        let told = |kind: &str| events.iter().any(|e| e.kind == kind);
        if (told("stopped") && told("delete_requested")) || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let asked = find(&events, "hibernate_requested", "hibernate");
    assert_eq!(asked.actor.as_deref(), Some("alice"));
    find(&events, "hibernated", "hibernated");
    find(&events, "restored", "woke");
    find(&events, "delete_requested", "delete");
    let stopped = find(&events, "stopped", "deleted");
    assert_eq!(stopped.actor, None, "the platform's own doing");
    server.stop().await;
}
