//! `berth exec` and `berth shell`: like `docker exec` and `docker exec -it`.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use berth_client::{ExecEvent, TerminalEvent};
use berth_proto::process::{ExecRequest, PtySize, TerminalQuery};
use clap::Args;
use tokio::io::AsyncReadExt;

use super::{Connection, explain, key_value};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Session id.
    session: String,
    /// Working directory inside the session [default: /home/user].
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Environment variable, KEY=VALUE; repeatable.
    #[arg(long, short, value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Kill the command (and everything it started) after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Pass this terminal's standard input to the command.
    #[arg(long, short)]
    interactive: bool,
    /// Run the command under a terminal of this one's size, as `docker exec -t` does: colours,
    /// prompts and line editing work, stderr arrives merged into stdout. With `-i`, keys go to
    /// it as typed (this terminal is put in raw mode).
    #[arg(long, short)]
    tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true)]
    command: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

/// Streams the command's output as it comes and exits with its exit code (128 + signal when a
/// signal ended it, as shells do).
pub async fn exec(args: ExecArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = args.conn.client()?;
    let request = ExecRequest {
        cmd: args.command,
        cwd: args.workdir,
        env: args.env.into_iter().collect(),
        stdin: None,
        timeout_ms: args.timeout.map(|s| s.saturating_mul(1000)),
        keepalive: false,
        pty: args.tty.then(|| {
            let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
            PtySize { cols, rows }
        }),
    };
    let mut stream = client
        .exec_stream(&args.session, &request)
        .await
        .map_err(explain)?;
    // Keys go through as typed only to a terminal: a pipe's input is passed as it is.
    let _raw = (args.tty && args.interactive && std::io::stdin().is_terminal())
        .then(RawMode::enable)
        .transpose()?;
    let mut resized =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdin = tokio::io::stdin();
    let mut input = vec![0u8; 32 * 1024];
    let mut stdin_open = args.interactive;
    if !stdin_open && !args.tty {
        stream.close_stdin().await.map_err(explain)?;
    }
    loop {
        tokio::select! {
            _ = resized.recv(), if args.tty => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    stream.resize(cols, rows).await.map_err(explain)?;
                }
            }
            event = stream.next() => match event {
                Some(ExecEvent::Stdout(bytes)) => write_all(&mut std::io::stdout(), &bytes)?,
                Some(ExecEvent::Stderr(bytes)) => write_all(&mut std::io::stderr(), &bytes)?,
                Some(ExecEvent::End { exit_code, signal, timed_out }) => {
                    if timed_out {
                        eprintln!("berth: the command timed out and was killed");
                    }
                    let code = exit_code.or(signal.map(|s| 128 + s)).unwrap_or(1);
                    return Ok(std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)));
                }
                None => anyhow::bail!("the connection to the session closed before the command ended"),
            },
            read = stdin.read(&mut input), if stdin_open => match read {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    stream.close_stdin().await.map_err(explain)?;
                }
                Ok(n) => stream.write_stdin(&input[..n]).await.map_err(explain)?,
            },
        }
    }
}

fn write_all(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<()> {
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Session id.
    session: String,
    /// Reattach to this terminal (its recent output is replayed) instead of opening a new one.
    #[arg(long)]
    terminal: Option<String>,
    /// Watch without typing.
    #[arg(long)]
    readonly: bool,
    /// Where a new terminal's shell starts (default /home/user).
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

/// Puts the local terminal in raw mode and restores it however the shell ends.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        crossterm::terminal::enable_raw_mode()
            .context("berth shell needs a terminal (for scripts, use berth exec)")?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// An interactive terminal in the session, like `docker exec -it SESSION bash`.
pub async fn shell(args: ShellArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = args.conn.client()?;
    let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
    let query = TerminalQuery {
        terminal_id: args.terminal,
        readonly: args.readonly,
        cols: Some(cols),
        rows: Some(rows),
        cwd: args.workdir,
    };
    let terminal = client
        .terminal(&args.session, &query)
        .await
        .map_err(explain)?;
    let terminal_id = terminal.id.clone();
    let (mut input, mut output) = terminal.split();
    if query.terminal_id.is_some() {
        // A reattached terminal keeps its old size until told otherwise.
        input.resize(cols, rows).await.map_err(explain)?;
    }

    let raw = RawMode::enable()?;
    let mut resized =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdin = tokio::io::stdin();
    let mut keys = vec![0u8; 4096];
    let mut stdout = std::io::stdout();
    let code = loop {
        tokio::select! {
            event = output.next() => match event {
                Some(TerminalEvent::Output(bytes)) => write_all(&mut stdout, &bytes)?,
                Some(TerminalEvent::Exit(code)) => break code.unwrap_or(0),
                None => {
                    drop(raw);
                    eprintln!("\r\nberth: connection lost; reattach with `berth shell {} --terminal {terminal_id}`", args.session);
                    return Ok(std::process::ExitCode::FAILURE);
                }
            },
            read = stdin.read(&mut keys) => match read {
                Ok(0) | Err(_) => break 0,
                Ok(n) => input.send(&keys[..n]).await.map_err(explain)?,
            },
            _ = resized.recv() => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    input.resize(cols, rows).await.map_err(explain)?;
                }
            }
        }
    };
    drop(raw);
    input.close().await;
    Ok(std::process::ExitCode::from(
        u8::try_from(code).unwrap_or(1),
    ))
}
