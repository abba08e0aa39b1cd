//! The rules Berth wants in the filter table, as text in the form `iptables -S` prints. Pure,
//! so the whole rule set is checked by unit tests without root.
//!
//! ```text
//! INPUT ──▶ BERTH-INPUT ──(-i bridges)──▶ BERTH-IN-{id}:  replies pass; anything else: DROP
//! DOCKER-USER ──▶ BERTH-FORWARD ──(-i bridges, -o bridges)──▶ BERTH-FWD-{id}:
//!     into the session: replies only; from it: never the host by a published port, link-local
//!     addresses or container bridges; then the template's egress policy
//! ```
//!
//! `bridges` is a policy's bridge stem with iptables' wildcard (`berth-1a2b3c4d+`): it matches
//! every shard of the policy's networks, those made later included.
//!
//! Traffic the chains do not drop goes on (`RETURN`) to the rules after them, the engine's own,
//! so Berth only ever takes away.

use crate::networks::{BRIDGE_PREFIX, CHILD_BRIDGE_PREFIX, EgressPolicy, SessionNetwork};

/// Jumped to from `INPUT`: traffic from sessions to any address of the host.
pub const INPUT: &str = "BERTH-INPUT";
/// Jumped to from `DOCKER-USER` (or `FORWARD` where the engine made none): traffic the host
/// routes to or from sessions.
pub const FORWARD: &str = "BERTH-FORWARD";
/// The engine's chain for its users' rules: the first thing `FORWARD` does, and never flushed
/// by the engine, unlike its own chains.
pub const DOCKER_USER: &str = "DOCKER-USER";
/// Prefixes of the per-network chains.
pub const NETWORK_CHAIN_PREFIXES: [&str; 2] = ["BERTH-IN-", "BERTH-FWD-"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    /// Addresses no session has a reason to reach: link-local ones, where cloud metadata
    /// services live (169.254.169.254), and AWS's IPv6 metadata address, which is not.
    fn always_blocked(self) -> &'static [&'static str] {
        match self {
            Self::V4 => &["169.254.0.0/16"],
            Self::V6 => &["fe80::/10", "fd00:ec2::254/128"],
        }
    }
}

pub fn input_chain(network: &SessionNetwork) -> String {
    format!("{}{}", NETWORK_CHAIN_PREFIXES[0], network.id)
}

pub fn forward_chain(network: &SessionNetwork) -> String {
    format!("{}{}", NETWORK_CHAIN_PREFIXES[1], network.id)
}

/// A rule's place: appended to a chain, or inserted first (the jumps into Berth's chains, which
/// must come before anything that accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    First,
    Last,
}

/// A rule Berth needs somewhere in a chain that is not wholly its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub chain: String,
    /// The rule as `iptables -S` prints it after `-A CHAIN `.
    pub spec: String,
    pub position: Position,
}

impl Hook {
    fn new(chain: &str, spec: String, position: Position) -> Self {
        Self {
            chain: chain.to_owned(),
            spec,
            position,
        }
    }

    /// The chain this rule jumps to.
    pub fn target(&self) -> &str {
        target(&self.spec)
    }
}

/// The target of a rule spec (the word after `-j`).
pub fn target(spec: &str) -> &str {
    spec.rsplit_once("-j ").map_or("", |(_, t)| t.trim())
}

/// The jumps into Berth's two entry chains; `forward_anchor` is `DOCKER-USER` when it exists.
pub fn entry_hooks(forward_anchor: &str) -> [Hook; 2] {
    [
        Hook::new("INPUT", format!("-j {INPUT}"), Position::First),
        Hook::new(forward_anchor, format!("-j {FORWARD}"), Position::First),
    ]
}

/// The rules that send one network's traffic to its own chains.
pub fn dispatch_hooks(network: &SessionNetwork) -> [Hook; 3] {
    let bridge = &network.bridges;
    let forward = forward_chain(network);
    [
        Hook::new(
            INPUT,
            format!("-i {bridge} -j {}", input_chain(network)),
            Position::Last,
        ),
        Hook::new(FORWARD, format!("-i {bridge} -j {forward}"), Position::Last),
        Hook::new(FORWARD, format!("-o {bridge} -j {forward}"), Position::Last),
    ]
}

const REPLIES: &str = "-m conntrack --ctstate RELATED,ESTABLISHED";

/// The network's `INPUT` chain, reached for packets from its bridge to any address of the host
/// (every interface's, the gateways', docker0's). The control plane reaches sessions from the
/// host, so what comes back from them is a reply; nothing else from a session is for the host.
pub fn input_rules(network: &SessionNetwork) -> Vec<String> {
    replies_only(&input_chain(network))
}

fn replies_only(chain: &str) -> Vec<String> {
    vec![
        format!("-A {chain} {REPLIES} -j ACCEPT"),
        format!("-A {chain} -j DROP"),
    ]
}

/// The network's `FORWARD` chain, reached for packets the host routes from or to its bridge.
/// Both families get the same shape; IPv6 only differs in its link-local block and allow list.
pub fn forward_rules(network: &SessionNetwork, family: Family) -> Vec<String> {
    let chain = forward_chain(network);
    let bridge = &network.bridges;
    let mut rules = vec![
        // Into a session: only replies. The control plane is on the host (its packets go through
        // OUTPUT, not here), so nothing routed may open a connection to a session: not another
        // session, not another container, not another machine.
        format!("-A {chain} -o {bridge} {REPLIES} -j RETURN"),
        format!("-A {chain} -o {bridge} -j DROP"),
        // From here on the packet comes from the session. Addressed to the host but rewritten by
        // a published port (the engine's DNAT) to a container: still the host's services.
        format!("-A {chain} -m conntrack --ctstate DNAT -j DROP"),
    ];
    rules.extend(
        family
            .always_blocked()
            .iter()
            .map(|net| format!("-A {chain} -d {net} -j DROP")),
    );
    let ipv4 = family == Family::V4;
    rules.extend(
        network
            .blocked
            .iter()
            .filter(|net| net.is_ipv4() == ipv4)
            .map(|net| format!("-A {chain} -d {net} -j DROP")),
    );
    rules.extend([
        // Container networks: the default bridge, the engine's user-defined bridges (`br-…`),
        // and every session bridge, whoever's.
        format!("-A {chain} -o docker0 -j DROP"),
        format!("-A {chain} -o br-+ -j DROP"),
        format!("-A {chain} -o {BRIDGE_PREFIX}+ -j DROP"),
    ]);
    match &network.policy {
        EgressPolicy::Open => {}
        EgressPolicy::Deny => rules.push(format!("-A {chain} -j DROP")),
        EgressPolicy::Allow(allowed) => {
            for rule in allowed.iter().filter(|r| r.net.is_ipv4() == ipv4) {
                let net = rule.net;
                match rule.port {
                    None => rules.push(format!("-A {chain} -d {net} -j RETURN")),
                    Some(port) => {
                        for proto in ["tcp", "udp"] {
                            rules.push(format!(
                                "-A {chain} -d {net} -p {proto} -m {proto} --dport {port} -j RETURN"
                            ));
                        }
                    }
                }
            }
            rules.push(format!("-A {chain} -j DROP"));
        }
    }
    rules
}

/// The child networks' chains, as (`INPUT` chain, `FORWARD` chain).
pub fn child_chains() -> (String, String) {
    (
        format!("{}children", NETWORK_CHAIN_PREFIXES[0]),
        format!("{}children", NETWORK_CHAIN_PREFIXES[1]),
    )
}

/// Every child bridge, with iptables' wildcard.
fn child_bridges() -> String {
    format!("{CHILD_BRIDGE_PREFIX}+")
}

/// From a child network to the host: replies only, as from a session.
pub fn child_input_rules() -> Vec<String> {
    replies_only(&child_chains().0)
}

/// Through the host from or to a child network: only what stays on the one bridge (a child and
/// its siblings, the session and its children; `physdev` tells a bridged packet from a routed
/// one). Nothing is routed into a child network or out of it, so children reach neither other
/// networks nor the outside, whatever their session's policy.
pub fn child_forward_rules() -> Vec<String> {
    let chain = child_chains().1;
    vec![
        format!("-A {chain} -m physdev --physdev-is-bridged -j RETURN"),
        format!("-A {chain} -j DROP"),
    ]
}

/// The rules that send the child networks' traffic to their chains.
pub fn child_dispatch_hooks() -> [Hook; 3] {
    let (input, forward) = child_chains();
    let bridges = child_bridges();
    [
        Hook::new(INPUT, format!("-i {bridges} -j {input}"), Position::Last),
        Hook::new(
            FORWARD,
            format!("-i {bridges} -j {forward}"),
            Position::Last,
        ),
        Hook::new(
            FORWARD,
            format!("-o {bridges} -j {forward}"),
            Position::Last,
        ),
    ]
}
