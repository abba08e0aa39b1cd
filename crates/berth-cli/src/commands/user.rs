//! `berth user ...`.

use berth_proto::user::{Role, UpdateUser};
use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its API token (shown this once).
    Create {
        name: String,
        /// `instructor` may keep classes (docs/labs.md); `user` by default.
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the users and their roles (never their tokens).
    Ls {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Change a user's role.
    Role {
        name: String,
        #[arg(value_enum)]
        role: RoleArg,
        #[command(flatten)]
        conn: Connection,
    },
    /// Disable a user: their sessions stop, their tokens and sign-ins are refused.
    Disable {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Enable a disabled user again.
    Enable {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a user: their sessions end; their tokens, state and persistent homes go.
    Rm {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    User,
    Instructor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::User => Role::User,
            RoleArg::Instructor => Role::Instructor,
        }
    }
}

pub async fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            name,
            role,
            json,
            conn,
        } => {
            let user = conn
                .client()?
                .create_user_with_role(&name, role.into())
                .await
                .map_err(explain)?;
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
        UserCommand::Ls { json, conn } => {
            let users = conn.client()?.users().await.map_err(explain)?;
            if json {
                return output::json(&users);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.name.clone(),
                        u.role.as_str().to_owned(),
                        if u.disabled { "disabled" } else { "active" }.to_owned(),
                        u.created_at.to_rfc3339(),
                    ]
                })
                .collect();
            output::table(&["NAME", "ROLE", "STATUS", "CREATED"], &rows);
            Ok(())
        }
        UserCommand::Role { name, role, conn } => {
            let change = UpdateUser {
                role: Some(role.into()),
                disabled: None,
            };
            let user = conn
                .client()?
                .update_user(&name, &change)
                .await
                .map_err(explain)?;
            eprintln!("{name} is now {}", user.role.as_str());
            Ok(())
        }
        UserCommand::Disable { name, conn } => set_disabled(&name, &conn, true).await,
        UserCommand::Enable { name, conn } => set_disabled(&name, &conn, false).await,
        UserCommand::Rm { name, conn } => {
            conn.client()?.delete_user(&name).await.map_err(explain)?;
            eprintln!("Deleted user {name}");
            Ok(())
        }
    }
}

async fn set_disabled(name: &str, conn: &Connection, disabled: bool) -> anyhow::Result<()> {
    let change = UpdateUser {
        role: None,
        disabled: Some(disabled),
    };
    conn.client()?
        .update_user(name, &change)
        .await
        .map_err(explain)?;
    let now = if disabled { "disabled" } else { "enabled" };
    eprintln!("{name} is now {now}");
    Ok(())
}
