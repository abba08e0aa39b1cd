//! `berth session ...`.

use std::collections::BTreeMap;

use berth_client::ListSessions;
use berth_proto::{CreateSession, Session};
use clap::Subcommand;

use super::{Connection, explain, key_value};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session and wait until it is running; prints its id.
    Create {
        /// Template to create from.
        #[arg(long, short, default_value = "default")]
        template: String,
        /// Lifetime in seconds [default: the template's].
        #[arg(long)]
        ttl: Option<u64>,
        /// Environment variable for the session, KEY=VALUE; repeatable.
        #[arg(long, short, value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Label, KEY=VALUE; repeatable.
        #[arg(long, short, value_parser = key_value)]
        label: Vec<(String, String)>,
        /// Fork: start from this named snapshot's files (`berth snapshot ls`).
        #[arg(long)]
        from_snapshot: Option<String>,
        /// Print the whole session as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List sessions.
    #[command(visible_alias = "ls", visible_alias = "ps")]
    List {
        /// Only sessions with this label, KEY=VALUE; repeatable.
        #[arg(long, short, value_parser = key_value)]
        label: Vec<(String, String)>,
        /// Include stopped and failed sessions.
        #[arg(long, short)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one session.
    #[command(visible_alias = "inspect")]
    Get {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show what happened to a session and who did it, oldest first (like `docker events`
    /// for one container): lifecycle, exec and terminal commands with their exit codes, files,
    /// ports, snapshots.
    Timeline {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop and remove sessions.
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Make a session expire TTL seconds from now (up to its template's maximum lifetime).
    Extend {
        id: String,
        #[arg(long)]
        ttl: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Put a running session to sleep: its files are kept in a snapshot, its container goes.
    /// Any access (shell, exec, files, previews, `resume`) wakes it.
    Hibernate {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Wake a hibernated session; waits until it runs again.
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::Create {
            template,
            ttl,
            env,
            label,
            from_snapshot,
            json,
            conn,
        } => {
            let request = CreateSession {
                template,
                ttl_seconds: ttl,
                env: env.into_iter().collect(),
                labels: label.into_iter().collect(),
                from_snapshot,
            };
            let session = conn
                .client()?
                .create_session(&request)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&session);
            }
            println!("{}", session.id);
            Ok(())
        }
        SessionCommand::List {
            label,
            all,
            json,
            conn,
        } => {
            let sessions = conn
                .client()?
                .list_sessions(&ListSessions { labels: label, all })
                .await
                .map_err(explain)?;
            if json {
                return output::json(&sessions);
            }
            let rows: Vec<Vec<String>> = sessions.iter().map(row).collect();
            output::table(
                &[
                    "ID", "OWNER", "TEMPLATE", "STATE", "CREATED", "EXPIRES", "LABELS",
                ],
                &rows,
            );
            Ok(())
        }
        SessionCommand::Get { id, json, conn } => {
            let session = conn.client()?.get_session(&id).await.map_err(explain)?;
            if json {
                return output::json(&session);
            }
            describe(&session);
            Ok(())
        }
        SessionCommand::Timeline { id, json, conn } => {
            let events = conn.client()?.timeline(&id).await.map_err(explain)?;
            if json {
                return output::json(&events);
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|event| {
                    vec![
                        event.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        event.actor.clone().unwrap_or_else(|| "-".to_owned()),
                        event.kind.clone(),
                        event.message.clone(),
                    ]
                })
                .collect();
            output::table(&["TIME", "BY", "KIND", "WHAT"], &rows);
            Ok(())
        }
        SessionCommand::Remove { ids, conn } => {
            let client = conn.client()?;
            let mut failed = 0;
            // Like `docker rm`: report each, go on after a failure, fail overall if any failed.
            for id in ids {
                match client.delete_session(&id).await {
                    Ok(()) => println!("{id}"),
                    Err(err) => {
                        failed += 1;
                        eprintln!("berth: {id}: {:#}", explain(err));
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} session(s) could not be removed")
            } else {
                Ok(())
            }
        }
        SessionCommand::Extend {
            id,
            ttl,
            json,
            conn,
        } => {
            let session = conn
                .client()?
                .extend_session(&id, ttl)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&session);
            }
            println!(
                "{} now expires {} ({})",
                session.id,
                session.expires_at.to_rfc3339(),
                output::relative(session.expires_at)
            );
            Ok(())
        }
        SessionCommand::Hibernate { id, json, conn } => {
            let session = conn
                .client()?
                .hibernate_session(&id)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&session);
            }
            println!("{} is hibernated; any access wakes it", session.id);
            Ok(())
        }
        SessionCommand::Resume { id, json, conn } => {
            let session = conn.client()?.resume_session(&id).await.map_err(explain)?;
            if json {
                return output::json(&session);
            }
            println!("{} is {}", session.id, session.state);
            Ok(())
        }
    }
}

fn row(s: &Session) -> Vec<String> {
    vec![
        s.id.clone(),
        s.owner.clone(),
        s.template.clone(),
        match &s.stop_reason {
            Some(reason) if !s.state.is_live() => format!("{} ({reason})", s.state),
            _ => s.state.to_string(),
        },
        output::relative(s.created_at),
        if s.state.is_live() {
            output::relative(s.expires_at)
        } else {
            "-".to_owned()
        },
        labels(&s.labels),
    ]
}

fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn describe(s: &Session) {
    println!("ID:            {}", s.id);
    println!("Owner:         {}", s.owner);
    println!("Template:      {}", s.template);
    println!("State:         {}", s.state);
    if let Some(reason) = &s.stop_reason {
        println!("Stop reason:   {reason}");
    }
    println!(
        "Created:       {} ({})",
        s.created_at.to_rfc3339(),
        output::relative(s.created_at)
    );
    println!(
        "Expires:       {} ({})",
        s.expires_at.to_rfc3339(),
        output::relative(s.expires_at)
    );
    println!("Last activity: {}", s.last_activity.to_rfc3339());
    println!("Labels:        {}", labels(&s.labels));
}
