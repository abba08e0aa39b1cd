//! The rule set and its upkeep, on the in-memory table.

use berth_proto::Egress;

use super::{
    Firewall, Scope,
    fake::FakeNetfilter,
    rules::{self, Family},
};
use crate::{
    config::{Config, TemplateConfig, TemplateNetworkConfig},
    networks::{SessionNetwork, SessionNetworks},
};

fn networks(prefix: &str) -> SessionNetworks {
    let mut config = Config::default();
    config.docker.network = prefix.into();
    let with = |egress, allow: &[&str]| TemplateConfig {
        network: TemplateNetworkConfig {
            egress,
            allow: allow.iter().map(|a| (*a).to_owned()).collect(),
        },
        ..TemplateConfig::default()
    };
    config
        .templates
        .insert("open".into(), with(Egress::Open, &[]));
    config
        .templates
        .insert("deny".into(), with(Egress::Deny, &[]));
    config.templates.insert(
        "allow".into(),
        with(
            Egress::Allow,
            &["198.51.100.0/24", "203.0.113.7/32:443", "2001:db8::/32:53"],
        ),
    );
    SessionNetworks::new(&config).unwrap()
}

fn network<'a>(networks: &'a SessionNetworks, template: &str) -> &'a SessionNetwork {
    networks.for_template(template).unwrap()
}

fn firewall(fake: &FakeNetfilter, networks: &SessionNetworks) -> Firewall {
    Firewall::new(
        Box::new(fake.clone()),
        networks,
        vec![Family::V4, Family::V6],
        None,
    )
}

/// Every rule in both families, as `iptables -S` would list them.
fn listing(fake: &FakeNetfilter) -> String {
    use super::Netfilter;
    let v4 = fake.list(Family::V4).unwrap();
    let v6 = fake.list(Family::V6).unwrap();
    format!("{v4}--\n{v6}")
}

/// The same, regardless of the order of rules: for a table whose dispatch rules were put back
/// in another order, which is no different to a packet (each matches one bridge).
fn rule_set(fake: &FakeNetfilter) -> Vec<String> {
    let mut lines: Vec<String> = listing(fake).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn an_allow_list_network_gets_exactly_these_rules() {
    let networks = networks("bn");
    let net = network(&networks, "allow");
    let (b, i, f) = (
        &net.bridges,
        rules::input_chain(net),
        rules::forward_chain(net),
    );
    assert_eq!(
        rules::input_rules(net),
        [
            format!("-A {i} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            format!("-A {i} -j DROP"),
        ]
    );
    let always = |family_blocks: &[&str]| {
        let mut lines = vec![
            format!("-A {f} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"),
            format!("-A {f} -o {b} -j DROP"),
            format!("-A {f} -m conntrack --ctstate DNAT -j DROP"),
        ];
        lines.extend(
            family_blocks
                .iter()
                .map(|n| format!("-A {f} -d {n} -j DROP")),
        );
        lines.extend([
            format!("-A {f} -o docker0 -j DROP"),
            format!("-A {f} -o br-+ -j DROP"),
            format!("-A {f} -o berth-+ -j DROP"),
        ]);
        lines
    };
    let mut v4 = always(&["169.254.0.0/16"]);
    v4.extend([
        format!("-A {f} -d 198.51.100.0/24 -j RETURN"),
        format!("-A {f} -d 203.0.113.7/32 -p tcp -m tcp --dport 443 -j RETURN"),
        format!("-A {f} -d 203.0.113.7/32 -p udp -m udp --dport 443 -j RETURN"),
        format!("-A {f} -j DROP"),
    ]);
    assert_eq!(rules::forward_rules(net, Family::V4), v4);
    let mut v6 = always(&["fe80::/10", "fd00:ec2::254/128"]);
    v6.extend([
        format!("-A {f} -d 2001:db8::/32 -p tcp -m tcp --dport 53 -j RETURN"),
        format!("-A {f} -d 2001:db8::/32 -p udp -m udp --dport 53 -j RETURN"),
        format!("-A {f} -j DROP"),
    ]);
    assert_eq!(rules::forward_rules(net, Family::V6), v6);
}

#[test]
fn blocked_networks_are_dropped_before_any_policy_allows_them() {
    let mut config = Config::default();
    config.firewall.blocked = vec!["10.99.0.0/24".into(), "fd99::/64".into()];
    config.templates.insert(
        "allow".into(),
        TemplateConfig {
            network: TemplateNetworkConfig {
                egress: Egress::Allow,
                allow: vec!["10.0.0.0/8".into()],
            },
            ..TemplateConfig::default()
        },
    );
    let networks = SessionNetworks::new(&config).unwrap();
    let v4 = rules::forward_rules(network(&networks, "allow"), Family::V4);
    let drop = v4
        .iter()
        .position(|r| r.ends_with("-d 10.99.0.0/24 -j DROP"));
    let allow = v4
        .iter()
        .position(|r| r.contains("-d 10.0.0.0/8 -j RETURN"));
    assert!(drop.unwrap() < allow.unwrap(), "{v4:?}");
    assert!(!v4.iter().any(|r| r.contains("fd99::")), "{v4:?}");
    let v6 = rules::forward_rules(network(&networks, "allow"), Family::V6);
    assert!(
        v6.iter().any(|r| r.ends_with("-d fd99::/64 -j DROP")),
        "{v6:?}"
    );

    config.firewall.blocked = vec!["10.99.0.1/24".into()];
    let err = SessionNetworks::new(&config).unwrap_err().to_string();
    assert!(
        err.contains("firewall.blocked") && err.contains("10.99.0.0/24"),
        "{err}"
    );
}

#[test]
fn open_ends_with_the_always_blocked_and_deny_drops_the_rest() {
    let networks = networks("bn");
    let open = rules::forward_rules(network(&networks, "open"), Family::V4);
    let deny = rules::forward_rules(network(&networks, "deny"), Family::V4);
    assert!(
        open.last().unwrap().ends_with("-o berth-+ -j DROP"),
        "{open:?}"
    );
    assert_eq!(deny.len(), open.len() + 1);
    assert!(deny.last().unwrap().ends_with(" -j DROP"));
    assert!(!deny.last().unwrap().contains(" -o "));
}

#[test]
fn the_first_check_installs_everything_and_the_next_changes_nothing() {
    let fake = FakeNetfilter::with_engine();
    fake.apply(Family::V4, &["-A INPUT -s 192.0.2.9/32 -j ACCEPT"]);
    let networks = networks("bn");
    let firewall = firewall(&fake, &networks);

    let changes = firewall.ensure_blocking().unwrap();
    assert!(!changes.is_empty());
    // Jumps come first, before anything that accepts; the engine's RETURN stays last.
    assert_eq!(fake.rules(Family::V4, "INPUT")[0], "-j BERTH-INPUT");
    assert_eq!(
        fake.rules(Family::V4, "INPUT")[1],
        "-s 192.0.2.9/32 -j ACCEPT"
    );
    assert_eq!(
        fake.rules(Family::V4, "DOCKER-USER"),
        ["-j BERTH-FORWARD", "-j RETURN"]
    );
    // No engine chain for IPv6: FORWARD itself.
    assert_eq!(fake.rules(Family::V6, "FORWARD"), ["-j BERTH-FORWARD"]);
    for family in [Family::V4, Family::V6] {
        for net in networks.iter() {
            let input = fake.rules(family, rules::INPUT);
            assert!(input.contains(&format!(
                "-i {} -j {}",
                net.bridges,
                rules::input_chain(net)
            )));
            let forward = fake.rules(family, rules::FORWARD);
            for way in ["-i", "-o"] {
                let dispatch = format!("{way} {} -j {}", net.bridges, rules::forward_chain(net));
                assert!(forward.contains(&dispatch), "{dispatch} in {forward:?}");
            }
            assert_eq!(
                fake.rules(family, &rules::forward_chain(net)).len(),
                rules::forward_rules(net, family).len()
            );
        }
    }

    let installed = listing(&fake);
    let restores = fake.restores();
    assert!(firewall.ensure_blocking().unwrap().is_empty());
    assert_eq!(fake.restores(), restores, "a clean check writes nothing");
    assert_eq!(listing(&fake), installed);
}

#[test]
fn whatever_is_deleted_or_changed_is_put_back() {
    let fake = FakeNetfilter::with_engine();
    let networks = networks("bn");
    let firewall = firewall(&fake, &networks);
    firewall.ensure_blocking().unwrap();
    let installed = rule_set(&fake);
    let deny = network(&networks, "deny");
    let forward = rules::forward_chain(deny);
    let input = rules::input_chain(network(&networks, "open"));
    fake.apply(
        Family::V4,
        &[
            "-D INPUT -j BERTH-INPUT",
            "-D DOCKER-USER -j BERTH-FORWARD",
            &format!("-D {} -i {} -j {forward}", rules::FORWARD, deny.bridges),
            // A rule swapped for a laxer one.
            &format!("-D {forward} -j DROP"),
            &format!("-A {forward} -j ACCEPT"),
            &format!("-F {input}"),
        ],
    );
    fake.apply(Family::V6, &["-D FORWARD -j BERTH-FORWARD"]);

    let changes = firewall.ensure_blocking().unwrap().to_string();
    for what in ["-j BERTH-INPUT", "-j BERTH-FORWARD", &forward, &input] {
        assert!(changes.contains(what), "{what} not in {changes}");
    }
    assert_eq!(rule_set(&fake), installed);
    assert_eq!(fake.rules(Family::V4, "INPUT")[0], "-j BERTH-INPUT");
    assert_eq!(fake.rules(Family::V4, "DOCKER-USER")[0], "-j BERTH-FORWARD");
    assert_eq!(
        fake.rules(Family::V4, &forward),
        rules::forward_rules(deny, Family::V4)
            .iter()
            .map(|l| l.trim_start_matches(&format!("-A {forward} ")).to_owned())
            .collect::<Vec<_>>()
    );
}

#[test]
fn deleted_chains_are_put_back_whole() {
    let fake = FakeNetfilter::with_engine();
    let networks = networks("bn");
    let firewall = firewall(&fake, &networks);
    firewall.ensure_blocking().unwrap();
    let installed = listing(&fake);
    firewall.uninstall(Scope::All).unwrap();
    assert!(!listing(&fake).contains("BERTH"));
    firewall.ensure_blocking().unwrap();
    assert_eq!(listing(&fake), installed);
}

#[test]
fn the_forward_jump_moves_into_docker_user_once_the_engine_makes_it() {
    let fake = FakeNetfilter::default();
    let networks = networks("bn");
    let firewall = firewall(&fake, &networks);
    firewall.ensure_blocking().unwrap();
    assert_eq!(fake.rules(Family::V4, "FORWARD"), ["-j BERTH-FORWARD"]);

    // The engine starts and, as Docker does, puts its chain first in FORWARD.
    fake.apply(
        Family::V4,
        &[
            "-N DOCKER-USER",
            "-A DOCKER-USER -j RETURN",
            "-I FORWARD 1 -j DOCKER-USER",
        ],
    );
    let changes = firewall.ensure_blocking().unwrap().to_string();
    assert!(changes.contains("DOCKER-USER"), "{changes}");
    assert_eq!(fake.rules(Family::V4, "FORWARD"), ["-j DOCKER-USER"]);
    assert_eq!(
        fake.rules(Family::V4, "DOCKER-USER"),
        ["-j BERTH-FORWARD", "-j RETURN"]
    );
}

#[test]
fn a_chain_printed_differently_from_how_it_was_written_is_not_rewritten_every_time() {
    let fake = FakeNetfilter::with_engine();
    fake.print_as("-m conntrack --ctstate", "-m state --state");
    let networks = networks("bn");
    let firewall = firewall(&fake, &networks);
    firewall.ensure_blocking().unwrap();
    let restores = fake.restores();
    assert!(firewall.ensure_blocking().unwrap().is_empty());
    assert_eq!(fake.restores(), restores);
    // Yet a real change is still seen.
    let chain = rules::input_chain(network(&networks, "open"));
    fake.apply(Family::V4, &[&format!("-D {chain} -j DROP")]);
    assert!(!firewall.ensure_blocking().unwrap().is_empty());
}

#[test]
fn uninstall_takes_only_its_own_networks_and_the_last_one_out_takes_the_entry_chains() {
    let fake = FakeNetfilter::with_engine();
    fake.apply(Family::V4, &["-A INPUT -s 192.0.2.9/32 -j ACCEPT"]);
    let before = listing(&fake);
    let (ours, theirs) = (networks("bn"), networks("other"));
    let first = firewall(&fake, &ours);
    let second = firewall(&fake, &theirs);
    first.ensure_blocking().unwrap();
    second.ensure_blocking().unwrap();

    let removed = first.uninstall(Scope::Configured).unwrap();
    assert_eq!(removed.0.len(), 2 * 2 * 3, "two chains per network, family");
    assert!(
        listing(&fake).contains("BERTH-FWD-children"),
        "the child networks' chains stay while another configuration has networks"
    );
    let left = listing(&fake);
    for net in ours.iter() {
        assert!(!left.contains(&net.bridges), "{left}");
    }
    for net in theirs.iter() {
        assert!(left.contains(&rules::forward_chain(net)), "{left}");
    }
    assert!(left.contains("-A INPUT -j BERTH-INPUT"));
    // Still whole for the other configuration: its check finds nothing to do.
    assert!(second.ensure_blocking().unwrap().is_empty());

    second.uninstall(Scope::Configured).unwrap();
    assert_eq!(listing(&fake), before);
}

#[test]
fn uninstall_everything_leaves_the_engine_and_the_operator_alone() {
    let fake = FakeNetfilter::with_engine();
    fake.apply(Family::V4, &["-N OPERATOR", "-A INPUT -j OPERATOR"]);
    let before = listing(&fake);
    firewall(&fake, &networks("bn")).ensure_blocking().unwrap();
    firewall(&fake, &networks("other"))
        .ensure_blocking()
        .unwrap();
    let removed = firewall(&fake, &networks("third"))
        .uninstall(Scope::All)
        .unwrap();
    assert!(!removed.is_empty());
    assert_eq!(listing(&fake), before);
}

#[test]
fn child_networks_keep_to_their_bridge_whatever_their_sessions_policy() {
    let fake = FakeNetfilter::with_engine();
    firewall(&fake, &networks("bn")).ensure_blocking().unwrap();
    let rules = rule_set(&fake);
    for expected in [
        "-A BERTH-INPUT -i berth-k+ -j BERTH-IN-children",
        "-A BERTH-IN-children -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A BERTH-IN-children -j DROP",
        "-A BERTH-FORWARD -i berth-k+ -j BERTH-FWD-children",
        "-A BERTH-FORWARD -o berth-k+ -j BERTH-FWD-children",
        "-A BERTH-FWD-children -m physdev --physdev-is-bridged -j RETURN",
        "-A BERTH-FWD-children -j DROP",
    ] {
        assert!(
            rules.iter().any(|r| r == expected),
            "{expected} in {rules:#?}"
        );
    }
    // No policy's dispatch takes a child bridge for one of its own: their stems are hex.
    let open = network(&networks("bn"), "open").bridges.clone();
    assert!(!open.starts_with(crate::networks::CHILD_BRIDGE_PREFIX));
    assert!(!crate::networks::child_bridge("sabc_default").starts_with(open.trim_end_matches('+')));
}
