//! `berth home ...`: persistent homes (templates with `home = "persistent"`), which outlive
//! the sessions that use them.

use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum HomeCommand {
    /// List your persistent homes (the admin: everyone's) and the session using each.
    Ls {
        /// The admin: only this user's.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete persistent homes and every file in them; refused while a session uses one.
    Rm {
        /// Their names, as `berth home ls` shows them.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: HomeCommand) -> anyhow::Result<()> {
    match command {
        HomeCommand::Ls { user, json, conn } => {
            let homes = conn
                .client()?
                .homes(user.as_deref())
                .await
                .map_err(explain)?;
            if json {
                return output::json(&homes);
            }
            let rows: Vec<Vec<String>> = homes
                .iter()
                .map(|home| {
                    vec![
                        home.name.clone(),
                        home.user.clone(),
                        home.template.clone(),
                        home.size_mb
                            .map_or_else(|| "-".to_owned(), |mb| format!("{mb} MiB")),
                        home.used_by.clone().unwrap_or_else(|| "-".to_owned()),
                        home.created_at.to_rfc3339(),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "USER", "TEMPLATE", "LIMIT", "USED BY", "CREATED"],
                &rows,
            );
            Ok(())
        }
        HomeCommand::Rm { names, conn } => {
            let client = conn.client()?;
            for name in names {
                client.delete_home(&name).await.map_err(explain)?;
                eprintln!("{name} deleted");
            }
            Ok(())
        }
    }
}
