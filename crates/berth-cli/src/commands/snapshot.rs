//! `berth snapshot ...`: named snapshots of running sessions, to fork new sessions from
//! (`berth session create --from-snapshot ID`).

use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Copy a running session's files into a named snapshot (it is paused for the copy).
    Create {
        session: String,
        /// A name for people, 1 to 64 characters.
        #[arg(long, short)]
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List a session's named snapshots.
    #[command(visible_alias = "ls")]
    List {
        session: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete named snapshots; sessions forked from them keep their files.
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Create {
            session,
            name,
            json,
            conn,
        } => {
            let snapshot = conn
                .client()?
                .create_snapshot(&session, &name)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&snapshot);
            }
            println!(
                "{} (the session was paused {} ms)",
                snapshot.id,
                snapshot.pause_ms.unwrap_or_default()
            );
            Ok(())
        }
        SnapshotCommand::List {
            session,
            json,
            conn,
        } => {
            let snapshots = conn
                .client()?
                .list_snapshots(&session)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&snapshots);
            }
            let rows: Vec<Vec<String>> = snapshots
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.name.clone(),
                        output::relative(s.created_at),
                        s.size_bytes.map_or_else(|| "-".to_owned(), output::size),
                    ]
                })
                .collect();
            output::table(&["SNAPSHOT", "NAME", "CREATED", "SIZE"], &rows);
            Ok(())
        }
        SnapshotCommand::Remove { ids, conn } => {
            let client = conn.client()?;
            for id in ids {
                client.delete_snapshot(&id).await.map_err(explain)?;
                println!("{id}");
            }
            Ok(())
        }
    }
}
