//! `berth store ...`: the store behind `berth serve`, outside it.

use std::path::Path;

use anyhow::Context;
use berth_server::store::{self, CopyProgress, StoreUrl};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy users, sessions (every state), their timelines, snapshots, lab attempts and
    /// classes from one store to another, e.g. from SQLite to Redis before running several instances.
    ///
    /// Stop every `berth serve` using either store first: what they write meanwhile may be
    /// missed. Session containers and snapshot images stay in Docker; only their records move.
    #[command(verbatim_doc_comment)]
    Copy {
        /// The store to read: sqlite://PATH, redis://[:PASSWORD@]HOST:PORT/DB or
        /// rediss://... (TLS).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to write, same forms as --from. It must be empty unless --force.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Copy into a store that already holds data: sessions and snapshots with the same id
        /// are replaced, users whose id or name is taken are kept as they are, timelines are
        /// appended to.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Copy { from, to, force } => copy(&from, &to, force).await,
    }
}

async fn copy(from: &str, to: &str, force: bool) -> anyhow::Result<()> {
    // Both URLs are required, so the data dir the default would live in never matters.
    let no_default = Path::new(".");
    let source =
        StoreUrl::parse(Some(from), no_default).map_err(|msg| anyhow::anyhow!("--from: {msg}"))?;
    StoreUrl::parse(Some(to), no_default).map_err(|msg| anyhow::anyhow!("--to: {msg}"))?;
    // Opening SQLite creates a missing file: a mistyped --from would copy nothing, quietly.
    if let StoreUrl::Sqlite(path) = &source
        && !path.exists()
    {
        anyhow::bail!("--from: {} does not exist", path.display());
    }
    let source = store::open(Some(from), no_default)
        .await
        .with_context(|| format!("opening --from {}", store::redact(from)))?;
    let target = store::open(Some(to), no_default)
        .await
        .with_context(|| format!("opening --to {}", store::redact(to)))?;
    let done = store::copy(&*source.store, &*target.store, force, |p| {
        eprintln!("{}", counts(p));
    })
    .await
    .context("copying")?;
    println!(
        "copied {} from {} to {}",
        counts(&done),
        store::redact(from),
        store::redact(to)
    );
    Ok(())
}

fn counts(p: &CopyProgress) -> String {
    format!(
        "{} users, {} sessions, {} events, {} snapshots, {} lab attempts, {} classes, {} state values, {} tokens, {} webhooks, {} deliveries",
        p.users,
        p.sessions,
        p.events,
        p.snapshots,
        p.attempts,
        p.classes,
        p.state,
        p.tokens,
        p.webhooks,
        p.deliveries
    )
}
