//! `berth files ...`.

use clap::Subcommand;

use super::{Connection, explain};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List a directory inside a session.
    Ls {
        session: String,
        /// Directory; relative paths start at /home/user.
        #[arg(default_value = ".")]
        path: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: FilesCommand) -> anyhow::Result<()> {
    match command {
        FilesCommand::Ls {
            session,
            path,
            json,
            conn,
        } => {
            let list = conn
                .client()?
                .list_files(&session, &path)
                .await
                .map_err(explain)?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .entries
                .iter()
                .map(|e| {
                    let kind = match e.kind {
                        berth_proto::files::FileKind::Dir => 'd',
                        berth_proto::files::FileKind::Symlink => 'l',
                        berth_proto::files::FileKind::File => '-',
                        berth_proto::files::FileKind::Other => '?',
                    };
                    let name = match &e.target {
                        Some(target) => format!("{} -> {target}", e.name),
                        None => e.name.clone(),
                    };
                    vec![
                        format!("{kind}{:04o}", e.mode),
                        e.size.to_string(),
                        output::relative(e.mtime),
                        name,
                    ]
                })
                .collect();
            output::table(&["MODE", "SIZE", "MODIFIED", "NAME"], &rows);
            Ok(())
        }
    }
}
