//! `berth user ...`.

use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its API token (shown this once).
    Create {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { name, json, conn } => {
            let user = conn.client()?.create_user(&name).await.map_err(explain)?;
            if json {
                return output::json(&user);
            }
            println!("{}", user.token);
            eprintln!(
                "Created user {} ({}). Keep the token above: it is not shown again.",
                user.name, user.id
            );
            Ok(())
        }
    }
}
