//! Entry point of the agent: PID 1 of a session container.

use std::net::{Ipv4Addr, SocketAddr};

use berth_proto::agent::{AGENT_PORT, SECRET_ENV};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> std::process::ExitCode {
    // Read the secret and drop it from our environment before any thread starts, so no process
    // the agent spawns later inherits it.
    let secret = std::env::var(SECRET_ENV).unwrap_or_default();
    // SAFETY: no other thread exists yet, so nothing can read the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::remove_var(SECRET_ENV);
    }
    if secret.is_empty() {
        eprintln!("berth-agent: {SECRET_ENV} is not set; refusing to serve without a secret");
        return std::process::ExitCode::from(2);
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth-agent: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(secret)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("berth-agent: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(secret: String) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, AGENT_PORT));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // As PID 1 the kernel ignores signals we have no handler for, so `docker stop` would wait
    // out its grace period; handling SIGTERM and SIGINT makes stop immediate.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    axum::serve(listener, berth_agent::router(secret))
        .with_graceful_shutdown(shutdown)
        .await
}
