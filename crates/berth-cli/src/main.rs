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
    /// List the templates sessions can be created from.
    #[command(subcommand)]
    Template(commands::template::TemplateCommand),
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
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Session(command) => commands::session::run(command).await,
            Command::User(command) => commands::user::run(command).await,
            Command::Template(command) => commands::template::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("berth: {err:#}");
            ExitCode::FAILURE
        }
    }
}
