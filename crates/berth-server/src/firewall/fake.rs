//! An in-memory filter table that behaves like iptables where Berth depends on it: a restore
//! is all or nothing, rules cannot go into or jump to missing chains, a deleted rule must exist,
//! a deleted chain must be empty and unreferenced.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use super::{FirewallError, Netfilter, rules::Family};

const BUILTIN: [&str; 3] = ["INPUT", "FORWARD", "OUTPUT"];
const VERDICTS: [&str; 3] = ["ACCEPT", "DROP", "RETURN"];

type Chains = BTreeMap<String, Vec<String>>;

/// Clones share the table, so a test keeps one to look at and tamper with.
#[derive(Debug, Clone, Default)]
pub struct FakeNetfilter {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<Family, Chains>,
    restores: usize,
    /// Listings print this text in place of that, like a backend that prints a rule in another
    /// (equivalent) form than the one it was given.
    printed_as: Option<(String, String)>,
}

impl FakeNetfilter {
    /// A host where the engine made its DOCKER-USER chain, for IPv4 only (like Docker 20.10).
    pub fn with_engine() -> Self {
        let fake = Self::default();
        fake.apply(
            Family::V4,
            &[
                "-N DOCKER-USER",
                "-A FORWARD -j DOCKER-USER",
                "-A DOCKER-USER -j RETURN",
            ],
        );
        fake
    }

    /// Runs commands on the table directly, as another program on the host would.
    pub fn apply(&self, family: Family, commands: &[&str]) {
        let mut state = self.state.lock().unwrap();
        let chains = state.tables.entry(family).or_insert_with(builtin);
        for command in commands {
            run(chains, command).unwrap();
        }
    }

    pub fn rules(&self, family: Family, chain: &str) -> Vec<String> {
        let mut state = self.state.lock().unwrap();
        let chains = state.tables.entry(family).or_insert_with(builtin);
        chains.get(chain).cloned().unwrap_or_default()
    }

    pub fn print_as(&self, given: &str, printed: &str) {
        self.state.lock().unwrap().printed_as = Some((given.to_owned(), printed.to_owned()));
    }

    pub fn restores(&self) -> usize {
        self.state.lock().unwrap().restores
    }
}

fn builtin() -> Chains {
    BUILTIN
        .iter()
        .map(|c| ((*c).to_owned(), Vec::new()))
        .collect()
}

fn fail(message: String) -> FirewallError {
    FirewallError::Command {
        command: "fake".into(),
        message,
    }
}

fn run(chains: &mut Chains, command: &str) -> Result<(), FirewallError> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let existing = |chains: &Chains, chain: &str| {
        chains
            .contains_key(chain)
            .then_some(())
            .ok_or_else(|| fail(format!("no chain {chain}: {command}")))
    };
    match words.as_slice() {
        ["-N", chain] => {
            if chains.insert((*chain).to_owned(), Vec::new()).is_some() {
                return Err(fail(format!("chain exists: {command}")));
            }
        }
        ["-A" | "-I" | "-D", chain, rest @ ..] => {
            existing(chains, chain)?;
            let (index, spec) = match (words[0], rest) {
                ("-I", [n, spec @ ..]) => (n.parse::<usize>().ok(), spec.join(" ")),
                _ => (None, rest.join(" ")),
            };
            let target = spec.rsplit_once("-j ").map_or("", |(_, t)| t);
            if !VERDICTS.contains(&target) {
                existing(chains, target)?;
            }
            let rules = chains.get_mut(*chain).unwrap();
            match words[0] {
                "-A" => rules.push(spec),
                "-I" => rules.insert(index.unwrap_or(1) - 1, spec),
                _ => {
                    let at = rules
                        .iter()
                        .position(|r| *r == spec)
                        .ok_or_else(|| fail(format!("no such rule: {command}")))?;
                    rules.remove(at);
                }
            }
        }
        ["-F", chain] => {
            existing(chains, chain)?;
            chains.get_mut(*chain).unwrap().clear();
        }
        ["-X", chain] => {
            existing(chains, chain)?;
            let jump = format!("-j {chain}");
            let referenced = chains.values().flatten().any(|r| r.ends_with(&jump));
            if referenced || !chains[*chain].is_empty() || BUILTIN.contains(chain) {
                return Err(fail(format!("chain busy: {command}")));
            }
            chains.remove(*chain);
        }
        _ => return Err(fail(format!("unknown command {command}"))),
    }
    Ok(())
}

impl Netfilter for FakeNetfilter {
    fn list(&self, family: Family) -> Result<String, FirewallError> {
        let mut state = self.state.lock().unwrap();
        let chains = state.tables.entry(family).or_insert_with(builtin);
        let mut text = String::new();
        for chain in chains.keys() {
            if BUILTIN.contains(&chain.as_str()) {
                text.push_str(&format!("-P {chain} ACCEPT\n"));
            } else {
                text.push_str(&format!("-N {chain}\n"));
            }
        }
        for (chain, rules) in chains.iter() {
            for rule in rules {
                text.push_str(&format!("-A {chain} {rule}\n"));
            }
        }
        if let Some((given, printed)) = &state.printed_as {
            text = text.replace(given.as_str(), printed);
        }
        Ok(text)
    }

    fn contains(&self, family: Family, chain: &str, spec: &str) -> Result<bool, FirewallError> {
        Ok(self.rules(family, chain).iter().any(|r| r == spec))
    }

    fn restore(&self, family: Family, script: &str) -> Result<(), FirewallError> {
        let mut state = self.state.lock().unwrap();
        state.restores += 1;
        let chains = state.tables.entry(family).or_insert_with(builtin);
        let mut draft = chains.clone();
        let mut lines = script.lines();
        if lines.next() != Some("*filter") || !script.ends_with("COMMIT\n") {
            return Err(fail(format!("malformed script:\n{script}")));
        }
        for line in lines.filter(|l| *l != "COMMIT") {
            match line.strip_prefix(':') {
                // A declaration empties the chain, or makes it.
                Some(decl) => {
                    let chain = decl.split_whitespace().next().unwrap_or_default();
                    draft.insert(chain.to_owned(), Vec::new());
                }
                None => run(&mut draft, line)?,
            }
        }
        *chains = draft;
        Ok(())
    }
}
