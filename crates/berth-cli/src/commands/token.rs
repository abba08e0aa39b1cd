//! `berth token ...`: the caller's API tokens beside their login token.

use berth_proto::token::Scope;
use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret (shown this once).
    Create {
        /// Unique among your tokens.
        name: String,
        /// What it may do; repeat or separate with commas: sessions:read, sessions:write,
        /// files, exec, previews, labs, webhooks, admin (the admin's tokens only).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<Scope>,
        /// It stops working after this long: 90m, 12h, 30d; never when left out.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<u64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// List your tokens (the admin: everyone's), never their secrets.
    Ls {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a token: it fails from the next request on.
    Rm {
        /// Its id (`tok_...`), as `berth token ls` shows it.
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Seconds in `90s`, `90m`, `12h` or `30d`.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: write a number and s, m, h or d (30d)")),
    };
    number
        .parse::<u64>()
        .map(|n| n * seconds)
        .map_err(|_| format!("{text:?}: write a number and s, m, h or d (30d)"))
}

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
            json,
            conn,
        } => {
            let created = conn
                .client()?
                .create_token(&name, scopes, expires)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&created);
            }
            println!("{}", created.secret);
            eprintln!(
                "Created token {} ({}). Keep the secret above: it is not shown again.",
                created.token.name, created.token.id
            );
            Ok(())
        }
        TokenCommand::Ls { json, conn } => {
            let tokens = conn.client()?.tokens().await.map_err(explain)?;
            if json {
                return output::json(&tokens);
            }
            let when = |at: Option<chrono::DateTime<chrono::Utc>>, none: &str| {
                at.map_or_else(|| none.to_owned(), |at| at.to_rfc3339())
            };
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.owner.clone(),
                        scopes.join(","),
                        when(t.expires_at, "never"),
                        when(t.last_used_at, "-"),
                    ]
                })
                .collect();
            output::table(
                &["ID", "NAME", "OWNER", "SCOPES", "EXPIRES", "LAST USED"],
                &rows,
            );
            Ok(())
        }
        TokenCommand::Rm { id, conn } => {
            conn.client()?.delete_token(&id).await.map_err(explain)?;
            eprintln!("{id} revoked");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
    }
}
