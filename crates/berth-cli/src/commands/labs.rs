//! `berth labs ...`: for lab authors, outside a server: check a lab's directory, import a
//! Killercoda scenario.

use std::path::PathBuf;

use berth_server::labs;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum LabsCommand {
    /// Check a lab's directory (or a directory of labs) as `berth serve` will at its start:
    /// lab.toml's fields, step texts, check scripts, patterns. Templates are checked by the
    /// server, against its configuration.
    Check {
        /// A lab's directory (with lab.toml), or a directory of them.
        dir: PathBuf,
    },
    /// Import a Killercoda scenario (index.json, step texts, verify and background scripts)
    /// as a lab: each step's `verify` becomes a script check, its `background` the step's
    /// setup.
    Import {
        /// The scenario's directory, with its index.json.
        source: PathBuf,
        /// Where the lab's directory is made (`OUT/<id>`), such as your labs.dir.
        out: PathBuf,
        /// The lab's id; the scenario directory's name by default.
        #[arg(long)]
        id: Option<String>,
        /// The template its sessions are made from.
        #[arg(long, default_value = "default")]
        template: String,
    },
}

pub fn run(command: LabsCommand) -> anyhow::Result<()> {
    match command {
        LabsCommand::Check { dir } => check(&dir),
        LabsCommand::Import {
            source,
            out,
            id,
            template,
        } => {
            let imported =
                labs::import::import_killercoda(&source, &out, id.as_deref(), &template)?;
            println!(
                "imported {} step(s) into {}",
                imported.steps,
                imported.dir.display()
            );
            for title in &imported.unverified {
                eprintln!(
                    "note: step {title:?} had no verify script; its check fails until you write one"
                );
            }
            // An import is only done when the lab it made passes the same check as any other.
            check(&imported.dir)
        }
    }
}

fn check(dir: &std::path::Path) -> anyhow::Result<()> {
    match labs::check_dir(dir) {
        Ok(ids) => {
            for id in ids {
                println!("{id}: ok");
            }
            Ok(())
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            anyhow::bail!("{} problem(s) in {}", errors.len(), dir.display())
        }
    }
}
