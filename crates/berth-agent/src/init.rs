//! PID 1 duties, like tini: the container's first process starts the agent server as its child,
//! reaps every orphan the kernel hands it, passes SIGTERM and SIGINT on to every process in the
//! session so each can stop cleanly, and exits with the server's status.
//!
//! The server hears a stop first and the rest only once it has exited (or after
//! `SERVER_FIRST`): it saves the terminals, and needs their shells as they were.
//!
//! Reaping lives in a separate process because a server that calls `waitpid(-1)` would steal
//! the exit statuses of the processes it runs for users.

use std::{
    io::Write,
    process::{ExitCode, Stdio},
    time::Duration,
};

use berth_proto::agent::SECRET_ENV;
use rustix::process::{DumpableBehavior, Pid, Signal, WaitOptions};
use tokio::signal::unix::{SignalKind, signal};

/// Tells the re-executed binary to be the server, not PID 1.
const ROLE_ENV: &str = "BERTH_AGENT_ROLE";

/// The longest the server may take to save the terminals before every other process is told
/// to stop too. Saving takes milliseconds; this keeps a stuck server from costing more than a
/// second of the stop's grace (`docker stop` kills after ten).
const SERVER_FIRST: Duration = Duration::from_secs(1);

/// Makes this process's memory, `/proc/<pid>/environ` and ptrace off-limits to processes of the
/// same uid: the session user's processes must not read the agent's secret.
pub fn protect_self() {
    if let Err(err) = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        eprintln!("berth-agent: cannot make the agent non-dumpable: {err}");
    }
}

/// Whether this process should act as PID 1 (start the server, reap) rather than serve.
pub fn is_init() -> bool {
    std::process::id() == 1 && std::env::var_os(ROLE_ENV).is_none()
}

/// Runs PID 1: starts the server with the secret on its stdin (never in an environment) and
/// reaps until the server exits.
pub fn run(secret: &str) -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/usr/local/bin/berth-agent".into());
    let mut server = match std::process::Command::new(exe)
        .env(ROLE_ENV, "server")
        .env_remove(SECRET_ENV)
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            eprintln!("berth-agent: cannot start the server: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(mut stdin) = server.stdin.take() {
        let _ = stdin.write_all(secret.as_bytes());
    }
    let server_pid = Pid::from_raw(i32::try_from(server.id()).unwrap_or(i32::MAX));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth-agent: init runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(supervise(server_pid))
}

async fn supervise(server: Option<Pid>) -> ExitCode {
    let (Ok(mut term), Ok(mut int), Ok(mut child)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::child()),
    ) else {
        eprintln!("berth-agent: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // A stop signal the other processes have not been sent yet, and when they get it anyway.
    let mut held: Option<(Signal, tokio::time::Instant)> = None;
    loop {
        let pass_on = async {
            match held {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => stop(server, Signal::TERM, &mut held),
            _ = int.recv() => stop(server, Signal::INT, &mut held),
            () = pass_on => {
                if let Some((signal, _)) = held.take() {
                    forward(signal);
                }
            }
            _ = child.recv() => {
                // Reap everything that has ended; several exits can share one SIGCHLD.
                while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
                    if Some(pid) == server {
                        let code = status.exit_status().unwrap_or(1);
                        if let Some((signal, _)) = held.take() {
                            forward(signal);
                        }
                        drain_children(&mut child).await;
                        return ExitCode::from(u8::try_from(code).unwrap_or(1));
                    }
                }
            }
        }
    }
}

/// Passes a stop signal to the server, and holds it back from the others until the server has
/// exited or `SERVER_FIRST` has passed.
fn stop(server: Option<Pid>, signal: Signal, held: &mut Option<(Signal, tokio::time::Instant)>) {
    let Some(server) = server else {
        return forward(signal);
    };
    let _ = rustix::process::kill_process(server, signal);
    held.get_or_insert((signal, tokio::time::Instant::now() + SERVER_FIRST));
}

/// Signals every other process in the container (the PID namespace shows only ours).
fn forward(signal: Signal) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .and_then(Pid::from_raw);
        if let Some(pid) = pid.filter(|pid| pid.as_raw_nonzero().get() != 1) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// After the server has gone, gives the processes told to stop up to two seconds to do so, so
/// they are not cut off mid-write when PID 1 exits and the kernel kills the rest.
async fn drain_children(child_exits: &mut tokio::signal::unix::Signal) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Err(_) => return,
            Ok(Some(_)) => continue,
            Ok(None) => {}
        }
        if tokio::time::timeout_at(deadline, child_exits.recv())
            .await
            .is_err()
        {
            return;
        }
    }
}
