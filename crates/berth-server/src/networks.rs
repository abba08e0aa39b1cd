//! Session networks: which Docker network, and so which bridge interface, each template's
//! sessions join.
//!
//! Templates with the same egress policy share a network; each policy has its own. The firewall
//! tells policies apart by the bridge a packet comes from (`-i berth-…`), so no rule names a
//! container and no rule changes when sessions come and go. A bridge's name is fixed when its
//! network is created (`com.docker.network.bridge.name`) and derived from the network's name,
//! so the rules can be in place before the network, or any container on it, exists.
//!
//! A Linux bridge takes at most 1,023 ports, so a policy's sessions on one engine are sharded
//! over as many networks as they need ([`SessionNetwork::shard`]). Every shard's bridge starts
//! with the same stem, and the firewall matches the stem (`-i berth-1a2b3c4d+`): a new shard is
//! covered before it exists, by the rules already in place.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use berth_proto::Egress;
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError, TemplateNetworkConfig};

/// Every session bridge's name starts with this. The firewall drops whatever a session sends
/// into an interface named so, which covers the sessions of every policy and installation.
pub const BRIDGE_PREFIX: &str = "berth-";

/// The bridges of the networks sessions' Docker children run on (`crate::docker_api`) start
/// with this: after `berth-` comes a letter no policy's stem has there (theirs are hex), so no
/// policy's rules match them, while `berth-+`, every session bridge, which no session may
/// route into, does.
pub const CHILD_BRIDGE_PREFIX: &str = "berth-k";

/// A child network's subnet size: 29 addresses past the bridge's own, for the session's
/// `docker.max_containers` children and the session itself.
pub const CHILD_SUBNET_PREFIX: u8 = 27;

/// The bridge interface of the child network named `network` on the engine.
pub fn child_bridge(network: &str) -> String {
    format!("{CHILD_BRIDGE_PREFIX}{}", &short_hash(network)[..8])
}

/// The child networks' subnets `pool` holds (`docker.child_network_pool`), in order.
pub fn child_subnets(pool: &Cidr) -> impl Iterator<Item = Cidr> {
    let (base, count) = match pool.addr {
        IpAddr::V4(addr) if pool.prefix <= CHILD_SUBNET_PREFIX => {
            (u32::from(addr), 1u32 << (CHILD_SUBNET_PREFIX - pool.prefix))
        }
        _ => (0, 0),
    };
    let size = 1u32 << (32 - CHILD_SUBNET_PREFIX);
    (0..count).filter_map(move |i| {
        let addr = Ipv4Addr::from(base + i * size);
        Cidr::new(IpAddr::V4(addr), CHILD_SUBNET_PREFIX).ok()
    })
}

/// What a template's sessions may reach besides what is always blocked, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EgressPolicy {
    Open,
    Deny,
    /// Sorted and without duplicates, so equal lists written differently share a network.
    Allow(Vec<AllowRule>),
}

impl EgressPolicy {
    /// Checks a template's `[network]` table; the message names the offending entry.
    pub fn from_config(network: &TemplateNetworkConfig) -> Result<Self, String> {
        let mut rules = network
            .allow
            .iter()
            .map(|entry| entry.parse::<AllowRule>())
            .collect::<Result<Vec<_>, _>>()?;
        match network.egress {
            Egress::Open | Egress::Deny if !rules.is_empty() => Err(format!(
                "network.allow is only used with egress = \"allow\", not {:?}",
                network.egress.as_str()
            )),
            Egress::Open => Ok(Self::Open),
            Egress::Deny => Ok(Self::Deny),
            Egress::Allow if rules.is_empty() => Err(
                "egress = \"allow\" needs at least one network.allow entry (egress = \"deny\" allows nothing)"
                    .into(),
            ),
            Egress::Allow => {
                rules.sort();
                rules.dedup();
                Ok(Self::Allow(rules))
            }
        }
    }
}

/// One `allow` entry: a destination network, and a port (TCP and UDP) or every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowRule {
    pub net: Cidr,
    pub port: Option<u16>,
}

impl FromStr for AllowRule {
    type Err = String;

    /// `"10.1.0.0/16"` or `"10.1.0.0/16:443"`; IPv6 the same (`"2001:db8::/32:443"`): the port
    /// comes after the prefix length, so it never mixes with the address's colons.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "network.allow entry {entry:?}: {why}; expected \"CIDR\" or \"CIDR:port\", such as \"203.0.113.0/24\" or \"203.0.113.7/32:443\""
            )
        };
        let (addr, rest) = entry
            .split_once('/')
            .ok_or_else(|| bad("no prefix length"))?;
        let (prefix, port) = match rest.split_once(':') {
            Some((prefix, port)) => (prefix, Some(port)),
            None => (rest, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("bad prefix length"))?;
        let net = Cidr::new(addr, prefix).map_err(|why| bad(&why))?;
        let port = match port {
            None => None,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(bad("the port must be 1 to 65535")),
            },
        };
        Ok(Self { net, port })
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.net),
            None => write!(f, "{}", self.net),
        }
    }
}

/// An address with a prefix length and no bits set past it: the way iptables prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let (bits, max) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        if prefix > max {
            return Err(format!("the prefix length is more than {max}"));
        }
        let host_bits = if prefix == max {
            0
        } else {
            (1u128 << (max - prefix)) - 1
        };
        if bits & host_bits != 0 {
            let network = bits & !host_bits;
            let network = match addr {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(network as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(network)),
            };
            return Err(format!(
                "bits are set past the prefix length (did you mean {network}/{prefix}?)"
            ));
        }
        Ok(Self { addr, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |addr: IpAddr| match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let ((net, max), (ip, ip_max)) = (bits(self.addr), bits(ip));
        let shift = u32::from(max - self.prefix);
        max == ip_max && (shift == 128 || net >> shift == ip >> shift)
    }
}

/// `"10.1.0.0/16"`, as the engine reports a network's subnet.
impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} has no prefix length"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} does not start with an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{text:?} has a bad prefix length"))?;
        Self::new(addr, prefix)
    }
}

/// In the config, as text: `"10.213.0.0/16"`.
impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Interface names end in one of these after a shard's stem, shard 1 onwards; none is a hex
/// digit, so no shard's bridge is the first shard's, whose name ends in one.
const SHARD_MARKS: &str = "ghijklmnopqrstuvwxyz";

/// Networks one policy may shard its sessions over on one engine: the first, and one per mark.
pub const MAX_SHARDS: usize = SHARD_MARKS.len() + 1;

/// One policy's Docker networks, with the policy every session on them gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionNetwork {
    /// `{docker.network}-open`, `-deny` or `-allow-{hash of the list}`: the first shard's name.
    pub name: String,
    /// Short hash of the name; the bridge and the network's firewall chains are named after it.
    pub id: String,
    /// The first shard's bridge interface: `berth-{id}`, at most 15 characters as Linux requires.
    pub bridge: String,
    /// What the firewall matches every shard's bridge by: `berth-{first 8 of id}+`.
    pub bridges: String,
    pub policy: EgressPolicy,
    /// Destinations no session reaches, whatever its policy (`firewall.blocked`: a cluster's
    /// own network, its nodes and control ports).
    pub blocked: Vec<Cidr>,
}

impl SessionNetwork {
    fn new(prefix: &str, policy: EgressPolicy, blocked: Vec<Cidr>) -> Self {
        let name = match &policy {
            EgressPolicy::Open => format!("{prefix}-open"),
            EgressPolicy::Deny => format!("{prefix}-deny"),
            EgressPolicy::Allow(rules) => {
                let list: Vec<String> = rules.iter().map(ToString::to_string).collect();
                format!("{prefix}-allow-{}", &short_hash(&list.join(","))[..8])
            }
        };
        let id = short_hash(&name)[..9].to_owned();
        Self {
            bridge: format!("{BRIDGE_PREFIX}{id}"),
            bridges: format!("{BRIDGE_PREFIX}{}+", &id[..8]),
            id,
            name,
            policy,
            blocked,
        }
    }
}

/// One of a policy's networks on an engine: `index` 0 is the network as Berth always made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    /// `{name}` for the first shard, `{name}-2`, `{name}-3`… after it.
    pub name: String,
    /// `berth-{id}` for the first, `berth-{first 8 of id}{g…z}` after it.
    pub bridge: String,
}

impl SessionNetwork {
    /// Shard `index` (below [`MAX_SHARDS`]) of this policy's networks.
    pub fn shard(&self, index: usize) -> Shard {
        assert!(index < MAX_SHARDS, "shard {index} of at most {MAX_SHARDS}");
        if index == 0 {
            return Shard {
                index,
                name: self.name.clone(),
                bridge: self.bridge.clone(),
            };
        }
        let mark = &SHARD_MARKS[index - 1..index];
        Shard {
            index,
            name: format!("{}-{}", self.name, index + 1),
            bridge: format!("{BRIDGE_PREFIX}{}{mark}", &self.id[..8]),
        }
    }

    /// Which shard a network of this name is, if it is one of this policy's.
    pub fn shard_of(&self, network_name: &str) -> Option<usize> {
        if network_name == self.name {
            return Some(0);
        }
        let number: usize = network_name
            .strip_prefix(self.name.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()?;
        // `-02` is not shard 2's name.
        (2..=MAX_SHARDS)
            .contains(&number)
            .then_some(number - 1)
            .filter(|index| self.shard(*index).name == network_name)
    }
}

fn short_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The session networks of one configuration, and which template uses which.
#[derive(Debug, Clone, Default)]
pub struct SessionNetworks {
    networks: Vec<SessionNetwork>,
    by_template: BTreeMap<String, usize>,
}

impl SessionNetworks {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let mut by_policy: BTreeMap<EgressPolicy, usize> = BTreeMap::new();
        let mut networks = Vec::new();
        let mut by_template = BTreeMap::new();
        let blocked = config
            .firewall
            .blocked
            .iter()
            .map(|entry| {
                entry.parse::<Cidr>().map_err(|why| {
                    ConfigError::Invalid(format!(
                        "firewall.blocked entry {entry:?}: {why}; expected a CIDR such as \"10.0.0.0/24\""
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (name, template) in &config.templates {
            let policy = EgressPolicy::from_config(&template.network)
                .map_err(|msg| ConfigError::Invalid(format!("template {name:?}: {msg}")))?;
            let index = *by_policy.entry(policy.clone()).or_insert_with(|| {
                networks.push(SessionNetwork::new(
                    &config.docker.network,
                    policy,
                    blocked.clone(),
                ));
                networks.len() - 1
            });
            by_template.insert(name.clone(), index);
        }
        // Two policies whose bridges share a stem would share the firewall's rules too.
        let stems: std::collections::BTreeSet<&str> =
            networks.iter().map(|n| n.bridges.as_str()).collect();
        if stems.len() != networks.len() {
            return Err(ConfigError::Invalid(format!(
                "two egress policies' bridges would share the name stem of one of {:?}; \
                 change docker.network",
                stems
            )));
        }
        Ok(Self {
            networks,
            by_template,
        })
    }

    pub fn for_template(&self, template: &str) -> Option<&SessionNetwork> {
        self.index_of_template(template).map(|i| &self.networks[i])
    }

    /// The position of the template's network in [`Self::iter`].
    pub fn index_of_template(&self, template: &str) -> Option<usize> {
        self.by_template.get(template).copied()
    }

    /// The network at a position of [`Self::iter`].
    pub fn get(&self, index: usize) -> Option<&SessionNetwork> {
        self.networks.get(index)
    }

    /// The policy (by position) and shard a network of this name is, if it is a session network.
    pub fn shard_of(&self, network_name: &str) -> Option<(usize, usize)> {
        self.networks
            .iter()
            .enumerate()
            .find_map(|(i, n)| Some((i, n.shard_of(network_name)?)))
    }

    /// Each network once, however many templates share it.
    pub fn iter(&self) -> impl Iterator<Item = &SessionNetwork> {
        self.networks.iter()
    }

    pub fn is_session_network(&self, name: &str) -> bool {
        self.shard_of(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TemplateConfig;

    fn allow(entries: &[&str]) -> TemplateNetworkConfig {
        TemplateNetworkConfig {
            egress: Egress::Allow,
            allow: entries.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn a_cidr_contains_the_addresses_of_its_prefix_only() {
        let net: Cidr = "10.111.4.0/24".parse().unwrap();
        assert!(net.contains("10.111.4.0".parse().unwrap()));
        assert!(net.contains("10.111.4.255".parse().unwrap()));
        assert!(!net.contains("10.111.5.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.111.4.1".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.9".parse().unwrap()));
        let host: Cidr = "2001:db8::1/128".parse().unwrap();
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!(!host.contains("2001:db8::2".parse().unwrap()));
        let wider: Cidr = "10.111.0.0/16".parse().unwrap();
        assert!(wider.overlaps(&net) && net.overlaps(&wider));
        assert!(!net.overlaps(&"10.111.5.0/24".parse().unwrap()));
        assert!("10.111.4.1/24".parse::<Cidr>().is_err());
        assert!("10.111.4.0".parse::<Cidr>().is_err());
    }

    #[test]
    fn allow_entries_parse_with_and_without_ports_in_both_families() {
        let rule: AllowRule = "203.0.113.0/24".parse().unwrap();
        assert_eq!(
            (rule.net.to_string(), rule.port),
            ("203.0.113.0/24".into(), None)
        );
        let rule: AllowRule = "203.0.113.7/32:443".parse().unwrap();
        assert_eq!(
            (rule.net.to_string(), rule.port),
            ("203.0.113.7/32".into(), Some(443))
        );
        let rule: AllowRule = "2001:db8::/32:53".parse().unwrap();
        assert_eq!(
            (rule.net.to_string(), rule.port),
            ("2001:db8::/32".into(), Some(53))
        );
        assert!(!rule.net.is_ipv4());
        assert_eq!(
            "0.0.0.0/0".parse::<AllowRule>().unwrap().to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn bad_allow_entries_say_what_is_wrong() {
        for (entry, why) in [
            ("10.0.0.1", "no prefix length"),
            ("10.0.0.300/32", "not an IP address"),
            ("10.0.0.0/33", "more than 32"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("2001:db8::1/32", "did you mean 2001:db8::/32"),
            ("10.0.0.0/8:0", "1 to 65535"),
            ("10.0.0.0/8:http", "1 to 65535"),
            ("10.0.0.0/x", "bad prefix length"),
        ] {
            let err = entry.parse::<AllowRule>().unwrap_err();
            assert!(err.contains(why) && err.contains(entry), "{entry}: {err}");
        }
    }

    #[test]
    fn the_mode_and_the_list_must_agree() {
        let open_with_list = TemplateNetworkConfig {
            egress: Egress::Open,
            allow: vec!["10.0.0.0/8".into()],
        };
        assert!(EgressPolicy::from_config(&open_with_list).is_err());
        assert!(EgressPolicy::from_config(&allow(&[])).is_err());
        assert_eq!(
            EgressPolicy::from_config(&TemplateNetworkConfig::default()),
            Ok(EgressPolicy::Open)
        );
    }

    #[test]
    fn templates_share_a_network_exactly_when_their_policies_are_equal() {
        let mut config = Config::default();
        config.docker.network = "bn".into();
        let with = |network| TemplateConfig {
            network,
            ..TemplateConfig::default()
        };
        config
            .templates
            .insert("a".into(), with(TemplateNetworkConfig::default()));
        config
            .templates
            .insert("b".into(), with(TemplateNetworkConfig::default()));
        config.templates.insert(
            "c".into(),
            with(TemplateNetworkConfig {
                egress: Egress::Deny,
                allow: vec![],
            }),
        );
        config
            .templates
            .insert("d".into(), with(allow(&["10.0.0.0/8", "192.0.2.0/24:80"])));
        // The same list in another order, with a duplicate.
        config.templates.insert(
            "e".into(),
            with(allow(&["192.0.2.0/24:80", "10.0.0.0/8", "10.0.0.0/8"])),
        );
        config
            .templates
            .insert("f".into(), with(allow(&["10.0.0.0/8"])));
        let networks = SessionNetworks::new(&config).unwrap();
        let name = |t: &str| networks.for_template(t).unwrap().name.clone();
        assert_eq!(name("a"), "bn-open");
        assert_eq!(name("a"), name("b"));
        assert_eq!(name("c"), "bn-deny");
        assert!(name("d").starts_with("bn-allow-"), "{}", name("d"));
        assert_eq!(name("d"), name("e"));
        assert_ne!(name("d"), name("f"));
        assert_eq!(networks.iter().count(), 4);
        for network in networks.iter() {
            assert!(network.bridge.len() <= 15, "{network:?}");
            assert!(network.bridge.starts_with(BRIDGE_PREFIX));
            assert!(networks.is_session_network(&network.name));
        }
        assert!(networks.for_template("nope").is_none());
    }

    #[test]
    fn every_shard_has_its_own_name_and_bridge_under_its_policy_s_stem() {
        let mut config = Config::default();
        config
            .templates
            .insert("a".into(), TemplateConfig::default());
        let networks = SessionNetworks::new(&config).unwrap();
        let network = networks.for_template("a").unwrap();
        let first = network.shard(0);
        assert_eq!(
            (first.name.as_str(), &first.bridge),
            ("berth-open", &network.bridge)
        );
        let stem = network.bridges.trim_end_matches('+');
        let mut bridges = std::collections::BTreeSet::new();
        for index in 0..MAX_SHARDS {
            let shard = network.shard(index);
            assert!(shard.bridge.len() <= 15, "{shard:?}");
            assert!(shard.bridge.starts_with(stem), "{shard:?}");
            assert!(bridges.insert(shard.bridge.clone()), "{shard:?}");
            assert_eq!(networks.shard_of(&shard.name), Some((0, index)));
        }
        assert_eq!(network.shard(1).name, "berth-open-2");
        for other in [
            "berth-open-1",
            "berth-open-02",
            "berth-open-22",
            "berth-open-x",
            "berth",
        ] {
            assert_eq!(networks.shard_of(other), None, "{other}");
        }
    }

    #[test]
    fn a_bad_entry_is_reported_with_its_template() {
        let mut config = Config::default();
        config.templates.insert(
            "locked".into(),
            TemplateConfig {
                network: allow(&["10.0.0.1"]),
                ..TemplateConfig::default()
            },
        );
        let err = config.finish().unwrap_err().to_string();
        assert!(
            err.contains("\"locked\"") && err.contains("10.0.0.1"),
            "{err}"
        );
    }

    #[test]
    fn child_networks_take_the_pools_subnets_in_order_and_name_their_bridges_apart() {
        let pool: Cidr = "10.213.0.0/25".parse().unwrap();
        let subnets: Vec<String> = child_subnets(&pool).map(|c| c.to_string()).collect();
        assert_eq!(
            subnets,
            [
                "10.213.0.0/27",
                "10.213.0.32/27",
                "10.213.0.64/27",
                "10.213.0.96/27"
            ]
        );
        assert_eq!(
            child_subnets(&"10.213.0.0/16".parse().unwrap()).count(),
            2048
        );
        let bridge = child_bridge("s1_default");
        assert_eq!(bridge.len(), 15, "{bridge}: Linux's limit");
        assert_ne!(bridge, child_bridge("s2_default"));
    }
}
