//! `berth`: runs the control plane (`berth serve`) and talks to it, like `docker` does.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "Isolated per-user container sessions on Docker", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Serve(commands::serve::ServeArgs),
    /// Create, list, inspect, extend and remove sessions.
    #[command(subcommand)]
    Session(commands::session::SessionCommand),
    /// Manage users (admin token required).
    #[command(subcommand)]
    User(commands::user::UserCommand),
    /// Your API tokens: named, scoped, expiring, revocable.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Named snapshots of sessions, to fork new sessions from.
    #[command(subcommand)]
    Snapshot(commands::snapshot::SnapshotCommand),
    /// Persistent homes, which outlive the sessions that use them.
    #[command(subcommand)]
    Home(commands::home::HomeCommand),
    /// List the templates sessions can be created from.
    #[command(subcommand)]
    Template(commands::template::TemplateCommand),
    /// Run a command in a session, streaming its output; exits with its exit code.
    Exec(commands::exec::ExecArgs),
    /// Open an interactive terminal in a session (like `docker exec -it`).
    Shell(commands::exec::ShellArgs),
    /// Copy files or directories between this machine and a session (SESSION:PATH).
    Cp(commands::cp::CpArgs),
    /// Look at files inside a session.
    #[command(subcommand)]
    Files(commands::files::FilesCommand),
    /// Manage the packet-filter rules `berth serve` installs to isolate sessions.
    #[command(subcommand)]
    Firewall(commands::firewall::FirewallCommand),
    /// Work on the store behind `berth serve` (copy it to another).
    #[command(subcommand)]
    Store(commands::store::StoreCommand),
    /// Write and check labs: `berth labs check DIR`, `berth labs import SCENARIO OUT`.
    #[command(subcommand)]
    Labs(commands::labs::LabsCommand),
    /// Print the API's OpenAPI document (what `GET /openapi.json` serves), to generate clients.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Serve(args) => done(commands::serve::run(args).await),
            Command::Session(command) => done(commands::session::run(command).await),
            Command::User(command) => done(commands::user::run(command).await),
            Command::Token(command) => done(commands::token::run(command).await),
            Command::Template(command) => done(commands::template::run(command).await),
            Command::Snapshot(command) => done(commands::snapshot::run(command).await),
            Command::Home(command) => done(commands::home::run(command).await),
            Command::Exec(args) => commands::exec::exec(args).await,
            Command::Shell(args) => commands::exec::shell(args).await,
            Command::Cp(args) => done(commands::cp::run(args).await),
            Command::Files(command) => done(commands::files::run(command).await),
            Command::Firewall(command) => done(commands::firewall::run(command)),
            Command::Store(command) => done(commands::store::run(command).await),
            Command::Labs(command) => done(commands::labs::run(command)),
            Command::Openapi => done(commands::openapi::run()),
        }
    });
    // Leaving at once: stdin may still be held by a reader task that would block a clean exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("berth: {err:#}");
            ExitCode::FAILURE
        }
    }
}
