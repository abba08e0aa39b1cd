//! Work inside sessions (terminals, files, processes) through the control plane, against real
//! containers. Probes from inside the container check what the API claims.

mod common;

use std::{io::Read, time::Duration};

use berth_client::{Client, ExecEvent, TerminalEvent};
use berth_proto::{
    ErrorCode,
    process::{ExecRequest, TerminalQuery},
};
use common::{Server, container_of, docker, read_until, session, sh};

#[tokio::test]
async fn terminals_echo_resize_reattach_and_watch_read_only() {
    let server = Server::start().await;
    let id = session(&server, "base").await;
    let query = TerminalQuery {
        cols: Some(80),
        rows: Some(24),
        ..Default::default()
    };
    let mut terminal = server.client.terminal(&id, &query).await.unwrap();
    terminal.send(b"echo hi-$((40+2))\n").await.unwrap();
    read_until(&mut terminal, "hi-42").await;

    terminal.resize(100, 30).await.unwrap();
    terminal.send(b"stty size\n").await.unwrap();
    read_until(&mut terminal, "30 100").await;

    // Another client reattaches: the scrollback comes first.
    let again = TerminalQuery {
        terminal_id: Some(terminal.id.clone()),
        ..Default::default()
    };
    let mut second = server.client.terminal(&id, &again).await.unwrap();
    assert_eq!(second.id, terminal.id);
    read_until(&mut second, "hi-42").await;

    // A read-only viewer sees the output but its keystrokes go nowhere.
    let watch = TerminalQuery {
        terminal_id: Some(terminal.id.clone()),
        readonly: true,
        ..Default::default()
    };
    let mut viewer = server.client.terminal(&id, &watch).await.unwrap();
    viewer.send(b"echo viewer-typed-$((1+1))\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminal.send(b"echo owner-$((2+3))\n").await.unwrap();
    let seen = read_until(&mut viewer, "owner-5").await;
    assert!(
        !seen.contains("viewer-typed"),
        "a read-only viewer typed: {seen:?}"
    );

    terminal.send(b"exit 7\n").await.unwrap();
    let mut exit = None;
    while let Some(event) = terminal.next().await {
        if let TerminalEvent::Exit(code) = event {
            exit = Some(code);
            break;
        }
    }
    assert_eq!(exit, Some(Some(7)));
    let gone = server.client.terminal(&id, &again).await.unwrap_err();
    assert_eq!(gone.status(), Some(404));
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_terminal_comes_back_after_its_container_restarts() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    let query = TerminalQuery {
        cols: Some(90),
        rows: Some(20),
        ..Default::default()
    };
    let mut terminal = server.client.terminal(&id, &query).await.unwrap();
    terminal
        .send(b"mkdir -p work/deep && cd work/deep && echo before-$((6*7))\n")
        .await
        .unwrap();
    read_until(&mut terminal, "before-42").await;

    // `docker restart` stops the container as an engine restart would: SIGTERM to init.
    docker(&["restart", &container_of(&server, &id)]).unwrap();
    // The control plane reads the restarted container's address from the engine's events.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.client.exec(&id, &sh("true")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session did not answer again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let again = TerminalQuery {
        terminal_id: Some(terminal.id.clone()),
        ..Default::default()
    };
    let mut restored = server.client.terminal(&id, &again).await.unwrap();
    assert_eq!(restored.id, terminal.id);
    let replay = read_until(&mut restored, "programs that were running were stopped]").await;
    let before = replay
        .find("before-42")
        .expect("the scrollback is replayed");
    let line = replay.find("[berth: session restored at ").unwrap();
    assert!(before < line, "{replay:?}");
    restored
        .send(b"echo cwd=$(pwd) size=$(stty size)\n")
        .await
        .unwrap();
    read_until(&mut restored, "cwd=/home/user/work/deep size=20 90").await;
    let fresh = server
        .client
        .terminal(&id, &TerminalQuery::default())
        .await
        .unwrap();
    assert_ne!(fresh.id, terminal.id, "a new terminal takes a new id");
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_yes_flood_keeps_memory_bounded_and_the_terminal_alive() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    let mut terminal = server
        .client
        .terminal(&id, &TerminalQuery::default())
        .await
        .unwrap();
    terminal.send(b"yes\n").await.unwrap();
    // This client stops reading entirely while `yes` writes as fast as it can.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probe = server
        .client
        .exec(&id, &sh("ps -o rss,args | grep '[b]erth-agent'"))
        .await
        .unwrap();
    let rss_kib: Vec<u64> = probe
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!rss_kib.is_empty(), "{probe:?}");
    assert!(
        rss_kib.iter().all(|&kib| kib < 64 * 1024),
        "agent RSS grew: {rss_kib:?} KiB"
    );
    let alive = server.client.exec(&id, &sh("pidof yes")).await.unwrap();
    assert_eq!(
        alive.exit_code,
        Some(0),
        "yes keeps running for the slow client"
    );
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn exec_codes_stderr_signals_and_group_timeouts() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    let result = server
        .client
        .exec(&id, &sh("echo out; echo err >&2; exit 4"))
        .await
        .unwrap();
    assert_eq!(
        (
            result.exit_code,
            result.stdout.as_str(),
            result.stderr.as_str()
        ),
        (Some(4), "out\n", "err\n")
    );

    let timed = ExecRequest {
        timeout_ms: Some(500),
        ..sh("sleep 60 & sleep 60")
    };
    let result = server.client.exec(&id, &timed).await.unwrap();
    assert!(result.timed_out && result.signal == Some(9), "{result:?}");
    let left = server
        .client
        .exec(&id, &sh("pidof sleep || echo none"))
        .await
        .unwrap();
    assert_eq!(left.stdout, "none\n", "the whole process group died");

    let mut stream = server
        .client
        .exec_stream(&id, &sh("echo started; sleep 60"))
        .await
        .unwrap();
    assert_eq!(
        stream.next().await,
        Some(ExecEvent::Stdout(b"started\n".to_vec()))
    );
    stream.signal(15).await.unwrap();
    let end = stream.next().await;
    assert_eq!(
        end,
        Some(ExecEvent::End {
            exit_code: None,
            signal: Some(15),
            timed_out: false
        })
    );

    let mut cat = server
        .client
        .exec_stream(
            &id,
            &ExecRequest {
                cmd: vec!["cat".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    cat.write_stdin(b"through stdin").await.unwrap();
    cat.close_stdin().await.unwrap();
    assert_eq!(
        cat.next().await,
        Some(ExecEvent::Stdout(b"through stdin".to_vec()))
    );
    assert_eq!(
        cat.next().await,
        Some(ExecEvent::End {
            exit_code: Some(0),
            signal: None,
            timed_out: false
        })
    );
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn user_processes_run_as_uid_1000_without_the_agent_secret() {
    let server = Server::start().await;
    let id = session(&server, "base").await;
    let probe = server
        .client
        .exec(
            &id,
            &sh("id -u; pwd; env; cat /proc/1/environ >/dev/null 2>&1 && echo LEAK || echo sealed"),
        )
        .await
        .unwrap();
    let lines: Vec<&str> = probe.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "/home/user");
    assert!(
        !probe.stdout.contains("BERTH_AGENT_SECRET"),
        "{}",
        probe.stdout
    );
    assert_eq!(*lines.last().unwrap(), "sealed");
    let mut terminal = server
        .client
        .terminal(&id, &TerminalQuery::default())
        .await
        .unwrap();
    terminal
        .send(b"echo uid=$(id -u) secret=${BERTH_AGENT_SECRET:-none}\n")
        .await
        .unwrap();
    read_until(&mut terminal, "uid=1000 secret=none").await;
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn file_errors_map_to_their_statuses() {
    let server = Server::start_with(|c| c.agent.max_file_mb = 1).await;
    let id = session(&server, "base").await;
    server.client.upload(&id, "a-file", "x").await.unwrap();
    server.client.make_dir(&id, "a-dir").await.unwrap();
    let cases: Vec<(Result<(), berth_client::ClientError>, u16, ErrorCode)> = vec![
        (
            server.client.stat_file(&id, "missing").await.map(drop),
            404,
            ErrorCode::NotFound,
        ),
        (
            server.client.list_files(&id, "a-file").await.map(drop),
            409,
            ErrorCode::Conflict,
        ),
        (
            server.client.upload(&id, "a-dir", "x").await.map(drop),
            409,
            ErrorCode::Conflict,
        ),
        (
            server.client.list_files(&id, "/root").await.map(drop),
            403,
            ErrorCode::Forbidden,
        ),
        (
            server
                .client
                .upload(&id, "big", vec![0u8; 2 << 20])
                .await
                .map(drop),
            413,
            ErrorCode::PayloadTooLarge,
        ),
        (
            server.client.stat_file(&id, "").await.map(drop),
            400,
            ErrorCode::InvalidRequest,
        ),
        (
            server.client.remove_file(&id, "/etc/passwd", false).await,
            403,
            ErrorCode::Forbidden,
        ),
    ];
    for (i, (result, status, code)) in cases.into_iter().enumerate() {
        let err = result.expect_err(&format!("case {i} should fail"));
        assert_eq!(
            (err.status(), err.code()),
            (Some(status), Some(code)),
            "case {i}: {err}"
        );
    }
    let other = server.client.create_user("mallory").await.unwrap();
    let mallory = Client::new(server.client.base_url(), &other.token).unwrap();
    assert_eq!(
        mallory.stat_file(&id, "a-file").await.unwrap_err().status(),
        Some(404)
    );
    server.client.delete_session(&id).await.unwrap();
    assert_eq!(
        server
            .client
            .stat_file(&id, "a-file")
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    server.stop().await;
}

#[tokio::test]
async fn tar_upload_and_download_keep_symlinks_and_exec_bits() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(17);
    header.set_mode(0o755);
    builder
        .append_data(&mut header, "tool/run.sh", &b"#!/bin/sh\necho ok\n"[..17])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, "run", "tool/run.sh")
        .unwrap();
    let tar = builder.into_inner().unwrap();
    server
        .client
        .upload_archive(&id, "project", tar)
        .await
        .unwrap();

    let run = server
        .client
        .exec(
            &id,
            &sh("cd project && ./run; ls -l tool/run.sh | cut -c1-10; readlink run"),
        )
        .await
        .unwrap();
    assert_eq!(run.stdout, "ok\n-rwxr-xr-x\ntool/run.sh\n", "{run:?}");

    let bytes = server
        .client
        .download_archive(&id, "project")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = tar::Archive::new(bytes.as_ref());
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mode = entry.header().mode().unwrap() & 0o777;
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        found.push((path, mode, link, content));
    }
    assert!(
        found.contains(&(
            "tool/run.sh".into(),
            0o755,
            None,
            "#!/bin/sh\necho ok".into()
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(p, _, l, _)| p == "run" && l.as_deref() == Some("tool/run.sh")),
        "{found:?}"
    );
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_workspace_seed_is_in_place_before_the_session_runs() {
    let seed = tempfile::tempdir().unwrap();
    std::fs::create_dir(seed.path().join("case")).unwrap();
    std::fs::write(seed.path().join("case/brief.txt"), "the facts").unwrap();
    let seed_dir = seed.path().to_owned();
    let server = Server::start_with(move |c| {
        let mut template = c.templates["default"].clone();
        template.workspace_seed = Some(seed_dir);
        c.templates.insert("seeded".into(), template);
    })
    .await;
    let id = session(&server, "seeded").await;
    let probe = server
        .client
        .exec(&id, &sh("cat case/brief.txt; stat -c %u case/brief.txt"))
        .await
        .unwrap();
    assert_eq!(probe.stdout, "the facts1000\n");
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn websockets_accept_a_single_use_ticket_instead_of_a_header() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    let ticket = server.client.ticket(&id).await.unwrap();
    // No header at all: the ticket alone must carry the call.
    let url = format!(
        "{}/api/v1/sessions/{id}/terminal?ticket={ticket}",
        server.client.base_url().replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    use futures_util::StreamExt;
    let ready = socket.next().await.unwrap().unwrap();
    assert!(
        ready.to_text().unwrap().contains("terminal_id"),
        "{ready:?}"
    );
    let reused = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(reused.is_err(), "a ticket works once");
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn background_processes_are_listed_reattached_fed_and_signalled() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    let started = server
        .client
        .start_process(&id, &sh("read line; echo got-$line; sleep 30"))
        .await
        .unwrap();
    assert!(started.running);

    let mut first = server
        .client
        .attach_process(&id, &started.id)
        .await
        .unwrap();
    server
        .client
        .write_process_stdin(&id, &started.id, b"hello\n".to_vec())
        .await
        .unwrap();
    assert_eq!(
        first.next().await,
        Some(ExecEvent::Stdout(b"got-hello\n".to_vec()))
    );
    drop(first);

    // Nobody is attached, and the process runs on; a new client gets its output replayed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listed = server.client.list_processes(&id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.id.as_str(), p.running))
            .collect::<Vec<_>>(),
        [(started.id.as_str(), true)]
    );
    let mut second = server
        .client
        .attach_process(&id, &started.id)
        .await
        .unwrap();
    assert_eq!(
        second.next().await,
        Some(ExecEvent::Stdout(b"got-hello\n".to_vec()))
    );

    server
        .client
        .signal_process(&id, &started.id, 15)
        .await
        .unwrap();
    assert_eq!(
        second.next().await,
        Some(ExecEvent::End {
            exit_code: None,
            signal: Some(15),
            timed_out: false
        })
    );
    let listed = server.client.list_processes(&id).await.unwrap();
    assert!(
        !listed[0].running && listed[0].signal == Some(15),
        "{listed:?}"
    );
    let again = server
        .client
        .signal_process(&id, &started.id, 15)
        .await
        .unwrap_err();
    assert_eq!(again.status(), Some(409));
    let unknown = server.client.attach_process(&id, "p999").await.unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn watching_a_directory_reports_changes_below_it() {
    let server = Server::start().await;
    let id = session(&server, "default").await;
    server.client.make_dir(&id, "watched").await.unwrap();
    let mut watch = server.client.watch_files(&id, "watched").await.unwrap();
    let mut next = async || {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap();
        (event.change, event.path)
    };
    use berth_proto::files::FileChange::{Created, Modified, Removed};
    server
        .client
        .upload(&id, "watched/a.txt", "one")
        .await
        .unwrap();
    assert_eq!(
        next().await,
        (Created, "/home/user/watched/a.txt".to_owned()),
        "the upload lands by rename"
    );
    server
        .client
        .exec(&id, &sh("echo two >> watched/a.txt"))
        .await
        .unwrap();
    assert_eq!(
        next().await,
        (Modified, "/home/user/watched/a.txt".to_owned())
    );
    server.client.make_dir(&id, "watched/sub").await.unwrap();
    assert_eq!(next().await, (Created, "/home/user/watched/sub".to_owned()));
    server
        .client
        .upload(&id, "watched/sub/b.txt", "deep")
        .await
        .unwrap();
    assert_eq!(
        next().await,
        (Created, "/home/user/watched/sub/b.txt".to_owned()),
        "new subdirectories are watched too"
    );
    server
        .client
        .remove_file(&id, "watched/a.txt", false)
        .await
        .unwrap();
    assert_eq!(
        next().await,
        (Removed, "/home/user/watched/a.txt".to_owned())
    );
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}
