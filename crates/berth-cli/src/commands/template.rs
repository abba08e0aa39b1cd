//! `berth template ...`.

use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates.
    #[command(visible_alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: TemplateCommand) -> anyhow::Result<()> {
    match command {
        TemplateCommand::List { json, conn } => {
            let templates = conn.client()?.templates().await.map_err(explain)?;
            if json {
                return output::json(&templates);
            }
            let rows: Vec<Vec<String>> = templates
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.image.clone(),
                        format!("{} MB", t.memory_mb),
                        t.cpus.to_string(),
                        t.pids.to_string(),
                        format!("{}s", t.ttl_seconds),
                        format!("{}s", t.max_ttl_seconds),
                        t.network.egress.to_string(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "NAME", "IMAGE", "MEMORY", "CPUS", "PIDS", "TTL", "MAX TTL", "EGRESS",
                ],
                &rows,
            );
            Ok(())
        }
    }
}
