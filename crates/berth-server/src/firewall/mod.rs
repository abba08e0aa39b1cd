//! Berth's packet-filter rules: sessions reach neither the host, nor link-local addresses
//! (cloud metadata), nor other sessions or containers, whatever their template says; and each
//! template's egress policy (`open`, `deny`, `allow`) applies to the rest.
//!
//! The rules live in chains of Berth's own (see [`rules`]), keyed by the session networks'
//! bridges, and are enforced by the host's kernel: nothing inside a session can change them.
//! [`Firewall::ensure`] installs what is missing and is idempotent; `berth serve` runs it at
//! start, before any container exists, then every `firewall.check_interval_seconds`, and it is
//! what to call when the engine restarts (which may rebuild its own chains around ours).
//! [`Netfilter`] is the seam to the OS: `iptables`/`ip6tables` in [`iptables`], an in-memory
//! table in the unit tests.

pub mod iptables;
pub mod rules;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::task::JoinHandle;

use self::rules::{DOCKER_USER, Family, Hook, Position};
use crate::networks::{SessionNetwork, SessionNetworks};

/// Held while rules are read and changed, so two control planes on one host (or `berth firewall
/// uninstall` next to `berth serve`) never interleave their changes.
/// In a directory of Berth's own, which the packaged service (`berth` user) gets from systemd
/// (`RuntimeDirectory=berth`) and root makes as it needs it.
const LOCK_FILE: &str = "/run/berth/firewall.lock";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(
        "no working iptables ({0}). Berth needs root and Debian's iptables package to keep sessions \
         off the host; where the operator's own firewall does that, set firewall.enabled = false"
    )]
    Unavailable(String),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("the firewall check did not finish: {0}")]
    Task(String),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The host's filter table as Berth uses it.
pub trait Netfilter: Send + Sync + std::fmt::Debug + 'static {
    /// The filter table as `iptables -S` prints it: `-P`, `-N` and `-A` lines.
    fn list(&self, family: Family) -> Result<String, FirewallError>;
    /// Whether `chain` holds `spec`, compared the way the kernel compares rules (`-C`).
    fn contains(&self, family: Family, chain: &str, spec: &str) -> Result<bool, FirewallError>;
    /// Applies `iptables-restore --noflush` input as one transaction: a declared chain is
    /// emptied and refilled with no moment in between, chains not named are left alone.
    fn restore(&self, family: Family, script: &str) -> Result<(), FirewallError>;
}

/// What a check or an uninstall changed, one line each; empty when nothing needed doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes(pub Vec<String>);

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// Which per-network chains an uninstall removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Those of this configuration's networks; Berth's entry chains go once no network uses them.
    Configured,
    /// Every Berth chain on the host, whichever configuration made it.
    All,
}

/// A handle on Berth's rules for one configuration's session networks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Firewall {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    netfilter: Box<dyn Netfilter>,
    networks: Vec<SessionNetwork>,
    families: Vec<Family>,
    lock_file: Option<PathBuf>,
    /// Per-network chains as the kernel printed them right after Berth wrote them. A backend
    /// that prints a rule differently from how Berth renders it is then still recognised, so a
    /// check does not rewrite a correct chain every time.
    written: Mutex<HashMap<(Family, String), Vec<String>>>,
}

impl Firewall {
    /// Finds the host's iptables (see [`iptables::Iptables::detect`]); fails when none works.
    pub fn detect(networks: &SessionNetworks) -> Result<Self, FirewallError> {
        let (netfilter, families) = iptables::Iptables::detect()?;
        Ok(Self::new(
            Box::new(netfilter),
            networks,
            families,
            Some(PathBuf::from(LOCK_FILE)),
        ))
    }

    fn new(
        netfilter: Box<dyn Netfilter>,
        networks: &SessionNetworks,
        families: Vec<Family>,
        lock_file: Option<PathBuf>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                netfilter,
                networks: networks.iter().cloned().collect(),
                families,
                lock_file,
                written: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Checks every rule and puts back what is missing or changed; idempotent. Call it after the
    /// engine restarts: the periodic check would do the same, only later.
    pub async fn ensure(&self) -> Result<Changes, FirewallError> {
        let firewall = self.clone();
        tokio::task::spawn_blocking(move || firewall.ensure_blocking())
            .await
            .map_err(|join| FirewallError::Task(join.to_string()))?
    }

    /// [`Firewall::ensure`] on the calling thread, which it blocks on `iptables`.
    pub fn ensure_blocking(&self) -> Result<Changes, FirewallError> {
        let _lock = self.lock()?;
        let mut written = self
            .inner
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut changes = Vec::new();
        for &family in &self.inner.families {
            let table = Table::parse(&self.inner.netfilter.list(family)?);
            let mut script = Script::default();
            for line in self.plan(family, &table, &written, &mut script)? {
                changes.push(format!("{}: {line}", family.name()));
            }
            if script.is_empty() {
                continue;
            }
            self.inner.netfilter.restore(family, &script.render())?;
            let table = Table::parse(&self.inner.netfilter.list(family)?);
            for chain in script.rewritten {
                let printed = table.chains.get(&chain).cloned().unwrap_or_default();
                written.insert((family, chain), printed);
            }
        }
        Ok(Changes(changes))
    }

    /// What one family needs: the script that fixes it, and a line per fix.
    fn plan(
        &self,
        family: Family,
        table: &Table,
        written: &HashMap<(Family, String), Vec<String>>,
        script: &mut Script,
    ) -> Result<Vec<String>, FirewallError> {
        let mut changes = Vec::new();
        for chain in [rules::INPUT, rules::FORWARD] {
            if !table.has(chain) {
                script.declare(chain);
                changes.push(format!("created chain {chain}"));
            }
        }
        // The engine's DOCKER-USER comes before its own ACCEPTs, which it inserts above anything
        // else in FORWARD; without it (no engine yet, or none managing this family) FORWARD is
        // the place, and once the engine makes it, the jump moves there.
        let anchor = if table.has(DOCKER_USER) {
            DOCKER_USER
        } else {
            "FORWARD"
        };
        let stale = format!("-j {}", rules::FORWARD);
        if anchor == DOCKER_USER {
            for _ in table.rules("FORWARD").filter(|spec| **spec == stale) {
                script.rule(format!("-D FORWARD {stale}"));
                changes.push(format!(
                    "moved the jump to {} into {DOCKER_USER}",
                    rules::FORWARD
                ));
            }
        }
        let mut hooks: Vec<Hook> = rules::entry_hooks(anchor).into();
        let mut wanted = Vec::new();
        for network in &self.inner.networks {
            wanted.push((
                rules::input_chain(network),
                rules::input_rules(network),
                network.name.as_str(),
            ));
            wanted.push((
                rules::forward_chain(network),
                rules::forward_rules(network, family),
                network.name.as_str(),
            ));
            hooks.extend(rules::dispatch_hooks(network));
        }
        let (child_input, child_forward) = rules::child_chains();
        wanted.push((child_input, rules::child_input_rules(), "child networks"));
        wanted.push((
            child_forward,
            rules::child_forward_rules(),
            "child networks",
        ));
        hooks.extend(rules::child_dispatch_hooks());
        for (chain, want, owner) in wanted {
            let have = table.chains.get(&chain);
            let as_written = written.get(&(family, chain.clone()));
            let intact = have.is_some_and(|have| {
                let rendered: Vec<&str> = want
                    .iter()
                    .map(|line| line.trim_start_matches(&format!("-A {chain} ")))
                    .collect();
                have.iter().map(String::as_str).eq(rendered) || Some(have) == as_written
            });
            if !intact {
                script.declare(&chain);
                for line in want {
                    script.rule(line);
                }
                script.rewritten.push(chain.clone());
                changes.push(format!("wrote chain {chain} ({owner})"));
            }
        }
        for hook in hooks {
            if self.hook_present(family, table, &hook)? {
                continue;
            }
            script.rule(match hook.position {
                Position::First => format!("-I {} 1 {}", hook.chain, hook.spec),
                Position::Last => format!("-A {} {}", hook.chain, hook.spec),
            });
            changes.push(format!("added `{}` to {}", hook.spec, hook.chain));
        }
        Ok(changes)
    }

    fn hook_present(
        &self,
        family: Family,
        table: &Table,
        hook: &Hook,
    ) -> Result<bool, FirewallError> {
        // A rule cannot be in a chain that does not exist yet, nor jump to one.
        if !table.has(&hook.chain) || !table.has(hook.target()) {
            return Ok(false);
        }
        if table.rules(&hook.chain).any(|spec| *spec == hook.spec) {
            return Ok(true);
        }
        // Printed differently from how Berth writes it, perhaps: ask the kernel before adding a
        // second copy.
        self.inner
            .netfilter
            .contains(family, &hook.chain, &hook.spec)
    }

    /// Removes Berth's rules: the chains of `scope`'s networks and the rules that lead to them,
    /// then Berth's entry chains and their jumps once nothing else of Berth's is in them.
    /// A running `berth serve` puts its own back at its next check.
    pub fn uninstall(&self, scope: Scope) -> Result<Changes, FirewallError> {
        let _lock = self.lock()?;
        let mut changes = Vec::new();
        for &family in &self.inner.families {
            let table = Table::parse(&self.inner.netfilter.list(family)?);
            let ours: BTreeSet<String> = match scope {
                Scope::Configured => {
                    let mut ours: BTreeSet<String> = self
                        .inner
                        .networks
                        .iter()
                        .flat_map(|n| [rules::input_chain(n), rules::forward_chain(n)])
                        .filter(|chain| table.has(chain))
                        .collect();
                    // The child networks' chains serve every configuration on the host: they
                    // go with the last one's.
                    let (child_input, child_forward) = rules::child_chains();
                    let others_left = table.chains.keys().any(|chain| {
                        rules::NETWORK_CHAIN_PREFIXES
                            .iter()
                            .any(|p| chain.starts_with(p))
                            && !ours.contains(chain)
                            && *chain != child_input
                            && *chain != child_forward
                    });
                    if !others_left {
                        ours.extend(
                            [child_input, child_forward]
                                .into_iter()
                                .filter(|chain| table.has(chain)),
                        );
                    }
                    ours
                }
                Scope::All => table
                    .chains
                    .keys()
                    .filter(|c| {
                        rules::NETWORK_CHAIN_PREFIXES
                            .iter()
                            .any(|p| c.starts_with(p))
                    })
                    .cloned()
                    .collect(),
            };
            let mut script = Script::default();
            let mut removed = Vec::new();
            let mut entry_chains = Vec::new();
            for (entry, anchors) in [
                (rules::INPUT, &["INPUT"][..]),
                (rules::FORWARD, &[DOCKER_USER, "FORWARD"][..]),
            ] {
                let mut left = 0;
                for spec in table.rules(entry) {
                    if ours.contains(rules::target(spec)) {
                        script.rule(format!("-D {entry} {spec}"));
                    } else {
                        left += 1;
                    }
                }
                if table.has(entry) && left == 0 {
                    let jump = format!("-j {entry}");
                    for anchor in anchors {
                        for _ in table.rules(anchor).filter(|spec| **spec == jump) {
                            script.rule(format!("-D {anchor} {jump}"));
                        }
                    }
                    entry_chains.push(entry);
                }
            }
            for chain in &ours {
                script.rule(format!("-F {chain}"));
                script.rule(format!("-X {chain}"));
                removed.push(chain.clone());
            }
            for entry in entry_chains {
                script.rule(format!("-X {entry}"));
                removed.push(entry.to_owned());
            }
            if script.is_empty() {
                continue;
            }
            self.inner.netfilter.restore(family, &script.render())?;
            changes.extend(
                removed
                    .iter()
                    .map(|chain| format!("{}: removed chain {chain}", family.name())),
            );
        }
        self.inner
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        Ok(Changes(changes))
    }

    /// Runs [`Firewall::ensure`] every `period`, and as soon as the engine comes back (a new
    /// generation), until the handle is aborted. Whatever it had to put back is logged as a
    /// warning: something on the host removes Berth's rules.
    pub fn spawn_checks(
        &self,
        period: Duration,
        mut engine_generations: tokio::sync::watch::Receiver<u64>,
    ) -> JoinHandle<()> {
        let firewall = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // An engine that starts rewrites its own chains: check at once, not at the
                // next tick.
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = engine_generations.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                match firewall.ensure().await {
                    Ok(changes) if changes.is_empty() => {}
                    Ok(changes) => {
                        tracing::warn!(%changes, "firewall rules were missing or changed; put back")
                    }
                    Err(err) => tracing::error!(%err, "firewall check failed; will retry"),
                }
            }
        })
    }

    fn lock(&self) -> Result<Option<std::fs::File>, FirewallError> {
        let Some(path) = &self.inner.lock_file else {
            return Ok(None);
        };
        let error = |source| FirewallError::Lock {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(error)?;
        // Released when the file closes.
        file.lock().map_err(error)?;
        Ok(Some(file))
    }
}

/// The filter table as listed: each chain's rules after `-A CHAIN `.
#[derive(Debug, Default)]
struct Table {
    chains: BTreeMap<String, Vec<String>>,
}

impl Table {
    fn parse(listing: &str) -> Self {
        let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in listing.lines() {
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("-P" | "-N"), Some(chain), _) => {
                    chains.entry(chain.to_owned()).or_default();
                }
                (Some("-A"), Some(chain), Some(spec)) => {
                    chains
                        .entry(chain.to_owned())
                        .or_default()
                        .push(spec.to_owned());
                }
                _ => {}
            }
        }
        Self { chains }
    }

    fn has(&self, chain: &str) -> bool {
        self.chains.contains_key(chain)
    }

    fn rules(&self, chain: &str) -> impl Iterator<Item = &String> {
        self.chains.get(chain).into_iter().flatten()
    }
}

/// An `iptables-restore --noflush` script: chain declarations first (each empties its chain),
/// then rule commands in order.
#[derive(Debug, Default)]
struct Script {
    declared: Vec<String>,
    rules: Vec<String>,
    rewritten: Vec<String>,
}

impl Script {
    fn declare(&mut self, chain: &str) {
        self.declared.push(chain.to_owned());
    }

    fn rule(&mut self, line: String) {
        self.rules.push(line);
    }

    fn is_empty(&self) -> bool {
        self.declared.is_empty() && self.rules.is_empty()
    }

    fn render(&self) -> String {
        let mut text = String::from("*filter\n");
        for chain in &self.declared {
            text.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for line in &self.rules {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("COMMIT\n");
        text
    }
}
