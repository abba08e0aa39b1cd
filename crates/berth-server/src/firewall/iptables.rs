//! [`Netfilter`] on the host's `iptables`, `ip6tables` and their `-restore` commands.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use super::{FirewallError, Netfilter, rules::Family};

/// The system's default iptables, then each backend by name: Debian installs all three, and
/// rules must go where the engine's are, or its DOCKER-USER chain is not there to jump from.
const VARIANTS: [&str; 3] = ["", "-nft", "-legacy"];

#[derive(Debug)]
pub struct Iptables {
    /// `""`, `"-nft"` or `"-legacy"`: the suffix of the commands' names.
    variant: &'static str,
}

impl Iptables {
    /// Picks the variant whose filter table holds the engine's DOCKER-USER chain, or, when none
    /// does (no engine yet), the first that works; fails when none works. IPv6 rules are
    /// required too unless the kernel has no IPv6.
    pub fn detect() -> Result<(Self, Vec<Family>), FirewallError> {
        let mut first_working = None;
        let mut failures = Vec::new();
        let mut chosen = None;
        for variant in VARIANTS {
            let candidate = Self { variant };
            match candidate.list(Family::V4) {
                Ok(listing) if listing.lines().any(|l| l == "-N DOCKER-USER") => {
                    chosen = Some(candidate);
                    break;
                }
                Ok(_) => {
                    first_working.get_or_insert(candidate);
                }
                // The reason alone: the advice comes once, with the error made of them all.
                Err(FirewallError::Unavailable(reason)) => failures.push(reason),
                Err(err) => failures.push(err.to_string()),
            }
        }
        let iptables = chosen
            .or(first_working)
            .ok_or_else(|| FirewallError::Unavailable(failures.join("; ")))?;
        let mut families = vec![Family::V4];
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            iptables
                .list(Family::V6)
                .map_err(|err| FirewallError::Unavailable(format!("IPv6 is on but {err}")))?;
            families.push(Family::V6);
        }
        tracing::info!(
            command = iptables.command(Family::V4, false),
            ipv6 = families.contains(&Family::V6),
            "firewall backend"
        );
        Ok((iptables, families))
    }

    fn command(&self, family: Family, restore: bool) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let restore = if restore { "-restore" } else { "" };
        format!("{base}{}{restore}", self.variant)
    }

    /// Runs one command, waiting for the xtables lock (`-w`) rather than failing on it.
    fn run(
        &self,
        family: Family,
        restore: bool,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output, FirewallError> {
        let program = self.command(family, restore);
        let describe = || format!("{program} {}", args.join(" "));
        let failed = |message: String| FirewallError::Command {
            command: describe(),
            message,
        };
        let mut command = Command::new(&program);
        command
            .arg("-w")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => {
                FirewallError::Unavailable(format!("{program} is not installed"))
            }
            _ => failed(err.to_string()),
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|err| failed(err.to_string()))?;
        }
        child
            .wait_with_output()
            .map_err(|err| failed(err.to_string()))
    }

    /// The error for a command that ran and failed, with what it printed.
    fn failure(
        &self,
        family: Family,
        restore: bool,
        args: &[&str],
        output: &Output,
    ) -> FirewallError {
        // The nft backend warns on every call when legacy tables exist too; that is not the cause.
        let message: Vec<&str> = std::str::from_utf8(&output.stderr)
            .unwrap_or("")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        FirewallError::Command {
            command: format!("{} -w {}", self.command(family, restore), args.join(" ")),
            message: format!("{} ({})", message.join(" "), output.status),
        }
    }
}

impl Netfilter for Iptables {
    fn list(&self, family: Family) -> Result<String, FirewallError> {
        let args = ["-S"];
        let output = self.run(family, false, &args, None)?;
        if !output.status.success() {
            return Err(self.failure(family, false, &args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn contains(&self, family: Family, chain: &str, spec: &str) -> Result<bool, FirewallError> {
        let mut args = vec!["-C", chain];
        args.extend(spec.split_whitespace());
        let output = self.run(family, false, &args, None)?;
        match output.status.code() {
            Some(0) => Ok(true),
            // "No such rule"; anything else is a failure to answer.
            Some(1) => Ok(false),
            _ => Err(self.failure(family, false, &args, &output)),
        }
    }

    fn restore(&self, family: Family, script: &str) -> Result<(), FirewallError> {
        let args = ["--noflush"];
        let output = self.run(family, true, &args, Some(script))?;
        if !output.status.success() {
            let mut err = self.failure(family, true, &args, &output);
            if let FirewallError::Command { message, .. } = &mut err {
                message.push_str(&format!(" applying:\n{script}"));
            }
            return Err(err);
        }
        Ok(())
    }
}
