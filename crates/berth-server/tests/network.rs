//! Network isolation on the real engine and the host's real iptables: what a session reaches,
//! probed from inside it with curl. Needs root and iproute2 (`ip`). Every address probed is on
//! this machine: the host's own, a link-local one added to `lo`, and a network namespace that
//! stands for the internet, routed through the host like the real one.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::fd::AsFd,
    process::Command,
    time::{Duration, Instant},
};

use berth_proto::{Egress, process::TerminalQuery};
use berth_server::{
    config::{Config, TemplateConfig, TemplateNetworkConfig},
    firewall::{Firewall, Scope},
    networks::{MAX_SHARDS, SessionNetworks},
};
use common::{ADMIN, BASE, Server, container_of, docker, inspect, session, sh};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::RwLock,
};

/// A test that deletes Berth's jumps from INPUT and DOCKER-USER takes this for writing; the
/// others, which would find the host open meanwhile, for reading.
static JUMPS: RwLock<()> = RwLock::const_new(());

/// Curl's exit code when it could not connect in time: the packets were dropped. (A listener
/// that is not there answers with a refusal, 7, so a mistake in a test cannot pass for a drop.)
const DROPPED: i32 = 28;

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn ip(args: &[&str]) {
    run("ip", args).unwrap();
}

fn iptables(args: &[&str]) {
    run("iptables", &[&["-w"], args].concat()).unwrap();
}

fn listing(chain: &str) -> String {
    run("iptables", &["-w", "-S", chain]).unwrap_or_default()
}

/// Answers every HTTP request on `listener` with `tag`.
fn serve(listener: TcpListener, tag: &'static str) -> u16 {
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{tag}",
                    tag.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

async fn listen(addr: &str, tag: &'static str) -> u16 {
    serve(TcpListener::bind(addr).await.unwrap(), tag)
}

/// A network namespace standing for the internet: a veth pair to the host, 198.18.N.0/24 (a
/// range set aside for tests) with .2 and .3 inside, its default route back through the host.
struct Internet {
    name: String,
    host_end: String,
    subnet: u8,
}

impl Internet {
    fn new(subnet: u8) -> Self {
        let name = format!("berth-test-net{subnet}");
        // Not `berth-…` nor `br-…`: Berth drops whatever a session sends into those.
        let host_end = format!("bnt{subnet}h");
        let inside = format!("bnt{subnet}n");
        // Left over by an interrupted run.
        let _ = run("ip", &["netns", "del", &name]);
        let _ = run("ip", &["link", "del", &host_end]);
        let internet = Self {
            name,
            host_end,
            subnet,
        };
        let (ns, host_end) = (internet.name.as_str(), internet.host_end.as_str());
        ip(&["netns", "add", ns]);
        ip(&[
            "link", "add", host_end, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", internet.addr(1)),
            "dev",
            host_end,
        ]);
        ip(&["link", "set", host_end, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        for host in [2, 3] {
            let addr = format!("{}/24", internet.addr(host));
            ip(&["-n", ns, "addr", "add", &addr, "dev", &inside]);
        }
        ip(&["-n", ns, "link", "set", &inside, "up"]);
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &internet.addr(1),
        ]);
        internet
    }

    fn addr(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.subnet)
    }

    /// Serves `tag` on `addr` inside the namespace: the socket is made there by a thread that
    /// moved in, and stays there when the thread is gone.
    fn listen(&self, addr: &str, tag: &'static str) -> u16 {
        let path = format!("/run/netns/{}", self.name);
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = std::thread::spawn(move || {
            let netns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                netns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            let listener = std::net::TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            listener
        })
        .join()
        .unwrap();
        serve(TcpListener::from_std(listener).unwrap(), tag)
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so the pair.
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &self.host_end]);
    }
}

/// Removes what a test's control plane made: containers, session networks, firewall chains.
struct Cleanup {
    config: Config,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=berth.instance={}", self.config.docker.instance);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            for id in ids.lines() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        let networks = SessionNetworks::new(&self.config).unwrap();
        for network in networks.iter() {
            for shard in 0..MAX_SHARDS {
                let _ = docker(&["network", "rm", &network.shard(shard).name]);
            }
        }
        if let Ok(firewall) = Firewall::detect(&networks) {
            let _ = firewall.uninstall(Scope::Configured);
        }
    }
}

fn template(egress: Egress, allow: &[String]) -> TemplateConfig {
    TemplateConfig {
        image: BASE.into(),
        network: TemplateNetworkConfig {
            egress,
            allow: allow.to_vec(),
        },
        ..TemplateConfig::default()
    }
}

/// A control plane whose session networks no other test shares.
async fn start(customise: impl FnOnce(&mut Config)) -> (Server, Cleanup) {
    let server = Server::start_with(|config| {
        config.docker.network = format!("bnt-{}", &berth_server::ids::user_id()[..6]);
        config
            .templates
            .insert("open".into(), template(Egress::Open, &[]));
        customise(config);
    })
    .await;
    let cleanup = Cleanup {
        config: server.config.clone(),
    };
    (server, cleanup)
}

/// Fetches `http://{target}/` for every target at once from inside the session: curl's exit
/// code and the body for each.
async fn probe(server: &Server, id: &str, targets: &[String]) -> BTreeMap<String, (i32, String)> {
    let mut script: String = targets
        .iter()
        .map(|t| {
            format!(
                "(body=$(curl -s --connect-timeout 3 --max-time 6 http://{t}/); echo \"{t} $? $body\") &\n"
            )
        })
        .collect();
    script.push_str("wait\n");
    let result = server.client.exec(id, &sh(&script)).await.unwrap();
    let results: BTreeMap<String, (i32, String)> = result
        .stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            let target = words.next()?.to_owned();
            let code = words.next()?.parse().ok()?;
            Some((target, (code, words.next().unwrap_or("").to_owned())))
        })
        .collect();
    assert_eq!(results.len(), targets.len(), "{result:?}");
    results
}

fn assert_dropped(results: &BTreeMap<String, (i32, String)>, target: &str) {
    let (code, body) = &results[target];
    assert_eq!(
        *code, DROPPED,
        "{target} must be dropped; curl said {code} {body:?}"
    );
}

fn assert_reached(results: &BTreeMap<String, (i32, String)>, target: &str, tag: &str) {
    assert_eq!(
        results[target],
        (0, tag.to_owned()),
        "{target} must answer {tag}"
    );
}

/// The gateway of a session network: the host's address on that bridge.
fn gateway(network: &str) -> String {
    let out = docker(&[
        "network",
        "inspect",
        network,
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ])
    .unwrap();
    out.trim().to_owned()
}

/// The host's IPv4 addresses a session might try: every interface's, except loopback and
/// other tests' bridges and namespaces, which may vanish mid-probe, and with them the route that
/// keeps a probe on this machine.
fn host_addresses() -> Vec<String> {
    run("ip", &["-4", "-o", "addr", "show"])
        .unwrap()
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (interface, cidr) = (*words.get(1)?, *words.get(3)?);
            let others = ["lo", "br-", "berth-", "bnt", "veth"];
            if others.iter().any(|p| interface.starts_with(p)) {
                return None;
            }
            Some(cidr.split('/').next()?.to_owned())
        })
        .collect()
}

fn network_of<'a>(networks: &'a SessionNetworks, template: &str) -> &'a str {
    &networks.for_template(template).unwrap().name
}

/// A link-local address on the host's `lo`, like a metadata service the host itself answers
/// for (the kernel here may have no dummy interfaces). Removed on drop.
struct LinkLocal(&'static str);

impl LinkLocal {
    fn add(addr: &'static str) -> Self {
        run(
            "ip",
            &["addr", "replace", &format!("{addr}/32"), "dev", "lo"],
        )
        .unwrap();
        Self(addr)
    }
}

impl Drop for LinkLocal {
    fn drop(&mut self) {
        let _ = run(
            "ip",
            &["addr", "del", &format!("{}/32", self.0), "dev", "lo"],
        );
    }
}

#[tokio::test]
async fn a_session_reaches_neither_the_host_nor_link_local_addresses() {
    let _jumps = JUMPS.read().await;
    let internet = Internet::new(61);
    // Routed through the host like a cloud's metadata service, so the FORWARD rules are what
    // stops it, not the INPUT ones.
    let routed_metadata = "169.254.170.2";
    ip(&[
        "-n",
        &internet.name,
        "addr",
        "add",
        &format!("{routed_metadata}/32"),
        "dev",
        "lo",
    ]);
    ip(&[
        "route",
        "add",
        &format!("{routed_metadata}/32"),
        "via",
        &internet.addr(2),
    ]);
    let web = internet.listen(&format!("{}:0", internet.addr(2)), "internet");
    internet.listen(&format!("{routed_metadata}:{web}"), "routed-metadata");
    let host = listen("0.0.0.0:0", "host").await;
    let metadata = LinkLocal::add("169.254.169.254");
    let local_metadata = listen(&format!("{}:0", metadata.0), "metadata").await;

    let (server, _cleanup) = start(|_| {}).await;
    let id = session(&server, "open").await;
    let networks = SessionNetworks::new(&server.config).unwrap();
    let own_gateway = gateway(network_of(&networks, "open"));

    let mut blocked: Vec<String> = host_addresses()
        .into_iter()
        .chain([own_gateway.clone(), internet.addr(1)])
        .map(|addr| format!("{addr}:{host}"))
        .collect();
    blocked.push(format!("{}:{local_metadata}", metadata.0));
    blocked.push(format!("{routed_metadata}:{web}"));
    let reachable = format!("{}:{web}", internet.addr(2));
    let targets: Vec<String> = blocked.iter().cloned().chain([reachable.clone()]).collect();
    let results = probe(&server, &id, &targets).await;
    assert!(blocked.iter().any(|t| t.starts_with(&own_gateway)));
    for target in &blocked {
        assert_dropped(&results, target);
    }
    // The same probe gets through to the internet: the drops above are the rules' doing.
    assert_reached(&results, &reachable, "internet");

    // Docker's DNS inside the session still answers: its own container's name.
    let dns = server
        .client
        .exec(&id, &sh(&format!("getent hosts berth-{id}")))
        .await
        .unwrap();
    assert_eq!(dns.exit_code, Some(0), "{dns:?}");
    assert!(dns.stdout.contains("berth-"), "{dns:?}");

    server.stop().await;
}

#[tokio::test]
async fn open_reaches_the_internet_deny_nothing_and_allow_exactly_its_list() {
    let _jumps = JUMPS.read().await;
    let internet = Internet::new(62);
    let listed = internet.listen(&format!("{}:0", internet.addr(2)), "listed");
    internet.listen(&format!("{}:{listed}", internet.addr(3)), "other-address");
    let other_port = internet.listen(&format!("{}:0", internet.addr(2)), "other-port");
    let allow = vec![format!("{}/32:{listed}", internet.addr(2))];

    let (server, _cleanup) = start(|config| {
        config
            .templates
            .insert("deny".into(), template(Egress::Deny, &[]));
        config
            .templates
            .insert("allow".into(), template(Egress::Allow, &allow));
    })
    .await;
    let templates = server.client.templates().await.unwrap();
    let egress: BTreeMap<&str, (Egress, &[String])> = templates
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                (t.network.egress, t.network.allow.as_slice()),
            )
        })
        .collect();
    assert_eq!(egress["open"], (Egress::Open, &[][..]));
    assert_eq!(egress["deny"], (Egress::Deny, &[][..]));
    assert_eq!(egress["allow"], (Egress::Allow, allow.as_slice()));

    let listed_target = format!("{}:{listed}", internet.addr(2));
    let other_address = format!("{}:{listed}", internet.addr(3));
    let other_port_target = format!("{}:{other_port}", internet.addr(2));
    let targets = [
        listed_target.clone(),
        other_address.clone(),
        other_port_target.clone(),
    ];
    let (open, deny, allowed) = tokio::join!(
        session(&server, "open"),
        session(&server, "deny"),
        session(&server, "allow")
    );

    let results = probe(&server, &open, &targets).await;
    assert_reached(&results, &listed_target, "listed");
    assert_reached(&results, &other_address, "other-address");
    assert_reached(&results, &other_port_target, "other-port");

    let results = probe(&server, &deny, &targets).await;
    for target in &targets {
        assert_dropped(&results, target);
    }

    let results = probe(&server, &allowed, &targets).await;
    assert_reached(&results, &listed_target, "listed");
    assert_dropped(&results, &other_address);
    assert_dropped(&results, &other_port_target);

    // Nothing outbound, yet the control plane still reaches the session: terminals, files,
    // name resolution and previews.
    let mut terminal = server
        .client
        .terminal(&deny, &TerminalQuery::default())
        .await
        .unwrap();
    terminal.send(b"echo term-$((6*7))\n").await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("term-42") {
        match tokio::time::timeout_at(deadline, terminal.next()).await {
            Ok(Some(berth_client::TerminalEvent::Output(bytes))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes))
            }
            other => panic!("no output from the terminal ({other:?}); got {seen:?}"),
        }
    }
    server
        .client
        .upload(&deny, "hello.txt", b"isolated".to_vec())
        .await
        .unwrap();
    let download = server.client.download(&deny, "hello.txt").await.unwrap();
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"isolated");
    let dns = server
        .client
        .exec(&deny, &sh(&format!("getent hosts berth-{deny}")))
        .await
        .unwrap();
    assert_eq!(dns.exit_code, Some(0), "{dns:?}");

    server
        .client
        .exec(
            &deny,
            &sh("setsid python3 -m http.server 8000 >/tmp/http.log 2>&1 &"),
        )
        .await
        .unwrap();
    let preview = format!(
        "{}/api/v1/sessions/{deny}/ports/8000/hello.txt",
        server.client.base_url()
    );
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let response = http.get(&preview).bearer_auth(ADMIN).send().await.unwrap();
        if response.status() == reqwest::StatusCode::OK {
            assert_eq!(response.text().await.unwrap(), "isolated");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the preview never answered: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    server.stop().await;
}

/// Deletes one network's dispatch rules and empties its INPUT chain, as something on the host
/// might; no other test's rules are touched.
fn tamper_with_network(networks: &SessionNetworks, template: &str) -> String {
    let network = networks.for_template(template).unwrap();
    let input_chain = format!("BERTH-IN-{}", network.id);
    let forward_chain = format!("BERTH-FWD-{}", network.id);
    let bridge = network.bridges.as_str();
    iptables(&["-D", "BERTH-INPUT", "-i", bridge, "-j", &input_chain]);
    iptables(&["-D", "BERTH-FORWARD", "-i", bridge, "-j", &forward_chain]);
    iptables(&["-D", "BERTH-FORWARD", "-o", bridge, "-j", &forward_chain]);
    iptables(&["-F", &input_chain]);
    input_chain
}

#[tokio::test]
async fn the_check_function_puts_deleted_rules_back_at_once() {
    let _jumps = JUMPS.read().await;
    let host = listen("0.0.0.0:0", "host").await;
    // No periodic check within the test: only the call below can put the rules back.
    let (server, _cleanup) = start(|c| c.firewall.check_interval_seconds = 3600).await;
    let id = session(&server, "open").await;
    let networks = SessionNetworks::new(&server.config).unwrap();
    let target = format!("{}:{host}", gateway(network_of(&networks, "open")));

    assert_dropped(
        &probe(&server, &id, std::slice::from_ref(&target)).await,
        &target,
    );
    let input_chain = tamper_with_network(&networks, "open");
    // Without its rules the session reaches the host: what the other tests would see too if
    // the rules did not work.
    assert_reached(
        &probe(&server, &id, std::slice::from_ref(&target)).await,
        &target,
        "host",
    );

    // What the engine watcher calls after an engine restart.
    let firewall = Firewall::detect(&networks).unwrap();
    let changes = firewall.ensure().await.unwrap();
    assert!(changes.to_string().contains(&input_chain), "{changes}");
    assert!(listing(&input_chain).contains("-j DROP"));
    assert_dropped(
        &probe(&server, &id, std::slice::from_ref(&target)).await,
        &target,
    );
    assert!(firewall.ensure().await.unwrap().is_empty());

    server.stop().await;
}

#[tokio::test]
async fn rules_deleted_by_anyone_are_back_within_seconds() {
    let host = listen("0.0.0.0:0", "host").await;
    let (server, _cleanup) = start(|c| c.firewall.check_interval_seconds = 1).await;
    let id = session(&server, "open").await;
    let networks = SessionNetworks::new(&server.config).unwrap();
    let target = format!("{}:{host}", gateway(network_of(&networks, "open")));

    let jumps = JUMPS.write().await;
    let input_chain = tamper_with_network(&networks, "open");
    iptables(&["-D", "INPUT", "-j", "BERTH-INPUT"]);
    let anchor = if listing("DOCKER-USER").contains("-j BERTH-FORWARD") {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    iptables(&["-D", anchor, "-j", "BERTH-FORWARD"]);
    let deleted = Instant::now();
    loop {
        // This network's chain only this control plane puts back.
        let back = listing(&input_chain).contains("-j DROP")
            && listing("INPUT").contains("-A INPUT -j BERTH-INPUT")
            && listing(anchor).contains("-j BERTH-FORWARD");
        if back {
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(5),
            "the rules were not back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(jumps);
    assert_dropped(
        &probe(&server, &id, std::slice::from_ref(&target)).await,
        &target,
    );

    server.stop().await;
}

/// The session network a session's container is on, and its address there.
fn network_and_address(server: &Server, id: &str) -> (String, String) {
    let info = inspect(&container_of(server, id));
    let networks = info["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(networks.len(), 1, "{networks:?}");
    let (name, endpoint) = networks.iter().next().unwrap();
    (
        name.clone(),
        endpoint["IPAddress"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn sessions_past_a_network_s_bound_fill_the_next_shard_which_isolates_and_egresses_alike() {
    let _jumps = JUMPS.read().await;
    let internet = Internet::new(63);
    let web = internet.listen(&format!("{}:0", internet.addr(2)), "internet");
    let reachable = format!("{}:{web}", internet.addr(2));
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let (server, _cleanup) = start(|c| {
        c.docker.sessions_per_network = 2;
        c.data_dir = data_dir.clone();
    })
    .await;
    let networks = SessionNetworks::new(&server.config).unwrap();
    let open = networks.for_template("open").unwrap().clone();
    let shard = |index: usize| open.shard(index).name;

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(session(&server, "open").await);
    }
    let placed: Vec<(String, String)> = ids
        .iter()
        .map(|id| network_and_address(&server, id))
        .collect();
    let on: Vec<&str> = placed.iter().map(|(network, _)| network.as_str()).collect();
    assert_eq!(on, [shard(0), shard(0), shard(1), shard(1), shard(2)]);
    for index in 0..3 {
        let network = docker(&["network", "inspect", &shard(index)]).unwrap();
        assert!(
            network.contains(r#""com.docker.network.bridge.enable_icc": "false""#),
            "{network}"
        );
        let bridge = format!(
            r#""com.docker.network.bridge.name": "{}""#,
            open.shard(index).bridge
        );
        assert!(network.contains(&bridge), "{network}");
    }

    // The third shard's session: no other session's agent, on any shard, answers it; the
    // internet does, through the rules made before its network existed.
    let agent = |i: usize| format!("{}:7681", placed[i].1);
    let targets = [agent(0), agent(2), reachable.clone()];
    let results = probe(&server, &ids[4], &targets).await;
    assert_dropped(&results, &agent(0));
    assert_dropped(&results, &agent(2));
    assert_reached(&results, &reachable, "internet");
    // Nor does it answer the first shard's.
    let results = probe(&server, &ids[0], &[agent(4), agent(3)]).await;
    assert_dropped(&results, &agent(4));
    assert_dropped(&results, &agent(3));

    // A place freed on the first shard is the next one taken.
    server.client.delete_session(&ids[0]).await.unwrap();
    let refill = session(&server, "open").await;
    assert_eq!(network_and_address(&server, &refill).0, shard(0));

    // A restarted control plane counts what each shard holds: the third has the only room.
    let (network, instance) = (
        server.config.docker.network.clone(),
        server.config.docker.instance.clone(),
    );
    server.stop().await;
    let (server, _cleanup_again) = start(|c| {
        c.docker.sessions_per_network = 2;
        c.data_dir = data_dir.clone();
        c.docker.network = network;
        c.docker.instance = instance;
    })
    .await;
    let after_restart = session(&server, "open").await;
    assert_eq!(network_and_address(&server, &after_restart).0, shard(2));
    let full = session(&server, "open").await;
    assert_eq!(network_and_address(&server, &full).0, shard(3));
    server.stop().await;
}
