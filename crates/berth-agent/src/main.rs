//! Entry point of the agent. As PID 1 of a session container it becomes the init process
//! (`init.rs`), which re-executes this binary as the server; run any other way it serves
//! directly, which is how it is run in development.

use std::{
    io::Read,
    net::{Ipv4Addr, SocketAddr},
    process::ExitCode,
};

use axum::serve::ListenerExt;
use berth_agent::{Agent, AgentConfig, init};
use berth_proto::agent::{AGENT_PORT, SECRET_ENV};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    init::protect_self();
    let from_env = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty());
    if init::is_init() {
        let Some(secret) = from_env else {
            return refuse();
        };
        return init::run(&secret);
    }
    // Started by init: the secret arrives on stdin. Started by hand: from the environment.
    let secret = from_env.or_else(|| {
        let mut secret = String::new();
        std::io::stdin()
            .read_to_string(&mut secret)
            .ok()
            .map(|_| secret.trim().to_owned())
            .filter(|s| !s.is_empty())
    });
    let Some(secret) = secret else {
        return refuse();
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(AgentConfig::from_env(secret))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("berth-agent: {err}");
            ExitCode::FAILURE
        }
    }
}

fn refuse() -> ExitCode {
    eprintln!("berth-agent: {SECRET_ENV} is not set; refusing to serve without a secret");
    ExitCode::from(2)
}

async fn serve(config: AgentConfig) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, AGENT_PORT));
    // A keystroke is one byte: with Nagle's algorithm it would wait for the peer's delayed ACK.
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let agent = Agent::new(config);
    let router = agent.router();
    agent.watch_ports();
    let _relays = berth_agent::relays::spawn();
    let _callback = berth_agent::callback_relay::spawn();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        // Init tells the shells to stop only once this process has exited, so all are still
        // there to be saved.
        agent.save_terminals().await;
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
