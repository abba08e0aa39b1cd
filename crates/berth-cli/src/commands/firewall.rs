//! `berth firewall ...`: Berth's packet-filter rules on this host, outside `berth serve`.

use std::path::PathBuf;

use berth_server::{
    config::Config,
    firewall::{Firewall, Scope},
    networks::SessionNetworks,
};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Remove Berth's rules (root). Stop `berth serve` first: it puts its rules back within
    /// `firewall.check_interval_seconds`.
    Uninstall {
        /// The config `berth serve` runs with; its session networks' rules are removed.
        #[arg(long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Remove every Berth chain on this host, whichever configuration made it.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(command: FirewallCommand) -> anyhow::Result<()> {
    match command {
        FirewallCommand::Uninstall { config, all } => {
            let config = match &config {
                Some(path) => Config::from_file(path)?,
                None => Config::default(),
            }
            .finish()?;
            let firewall = Firewall::detect(&SessionNetworks::new(&config)?)?;
            let scope = if all { Scope::All } else { Scope::Configured };
            let removed = firewall.uninstall(scope)?;
            if removed.is_empty() {
                println!("no Berth firewall rules to remove");
            }
            for line in &removed.0 {
                println!("{line}");
            }
            Ok(())
        }
    }
}
