//! Docker inside a session: the real `docker` CLI in a real session (`berth/docker`), talking to
//! the session's Docker API, which forwards to the real engine. Needs the engine and the session
//! images (`scripts/build-images` makes `berth/docker` and `berth/busybox`).

mod common;

use berth_client::ClientError;
use berth_proto::{
    SessionState,
    docker::{DockerExec, DockerRun},
    process::{ExecResult, TerminalQuery},
};
use berth_server::config::{IdleConfig, TemplateConfig, TemplateDockerConfig};
use std::time::Duration;

use common::{ADMIN, Registry, Server, docker, inspect, read_until, session, sh};

const DOCKER_IMAGE: &str = "berth/docker:latest";

async fn docker_server() -> Server {
    docker_server_with(|_| {}).await
}

/// A server with template `docker` (Docker in its sessions), then `customise`d.
async fn docker_server_with(customise: impl FnOnce(&mut berth_server::config::Config)) -> Server {
    Server::start_with(|config| {
        config.templates.insert(
            "docker".into(),
            TemplateConfig {
                image: DOCKER_IMAGE.into(),
                memory_mb: 256,
                cpus: 1.0,
                pids: 256,
                docker: TemplateDockerConfig {
                    enabled: true,
                    base_images: vec!["berth/busybox:latest".into(), "python:3.11-slim".into()],
                    max_containers: 3,
                    max_images: 5,
                    max_networks: 3,
                    allow_pull: false,
                },
                ..TemplateConfig::default()
            },
        );
        customise(config);
    })
    .await
}

/// Runs a shell script in the session; its result.
async fn run(server: &Server, id: &str, script: &str) -> ExecResult {
    let mut request = sh(script);
    request.timeout_ms = Some(120_000);
    server.client.exec(id, &request).await.unwrap()
}

/// Runs a script that must succeed; its stdout.
async fn ok(server: &Server, id: &str, script: &str) -> String {
    let result = run(server, id, script).await;
    assert_eq!(
        result.exit_code,
        Some(0),
        "{script}\nstdout: {}\nstderr: {}",
        result.stdout,
        result.stderr
    );
    result.stdout
}

/// Runs a script that must fail; its stderr.
async fn fails(server: &Server, id: &str, script: &str) -> String {
    let result = run(server, id, script).await;
    assert_ne!(
        result.exit_code,
        Some(0),
        "{script} succeeded: {}",
        result.stdout
    );
    result.stderr
}

/// A session's children on the engine: containers, images, volumes and networks.
fn children(session_id: &str) -> (String, String, String, String) {
    let filter = format!("label=berth.parent={session_id}");
    (
        docker(&["ps", "-aq", "--filter", &filter]).unwrap(),
        docker(&["images", "-q", "--filter", &filter]).unwrap(),
        docker(&["volume", "ls", "-q", "--filter", &filter]).unwrap(),
        docker(&["network", "ls", "-q", "--filter", &filter]).unwrap(),
    )
}

/// A busybox web server answering `text` on port 80, as `docker run` arguments.
fn web_server(text: &str) -> String {
    format!(
        "berth/busybox sh -c 'mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www'"
    )
}

/// Fetches `url` from inside the session until it answers (a server just started), or fails
/// after 20 tries; the body, or curl's complaint.
async fn fetch_in_session(server: &Server, id: &str, url: &str) -> ExecResult {
    run(
        server,
        id,
        &format!(
            "for i in $(seq 20); do curl -sS --max-time 2 {url} && exit 0; sleep 0.5; done; exit 1"
        ),
    )
    .await
}

#[tokio::test]
async fn the_docker_cli_builds_runs_lists_logs_and_removes_inside_a_session() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;

    let version = ok(
        &server,
        &id,
        "docker version --format '{{.Server.APIVersion}}'",
    )
    .await;
    assert!(version.trim().starts_with("1."), "{version}");

    // A two-stage build on the base image, with RUN steps (run on the session's network and
    // within its limits).
    ok(
        &server,
        &id,
        "mkdir -p app && cd app && echo built-in-a-session > message && \
         printf 'FROM berth/busybox AS build\\nCOPY message /m\\nRUN cp /m /built\\n\
         FROM berth/busybox\\nCOPY --from=build /built /built\\nCMD [\"cat\", \"/built\"]\\n' > Dockerfile && \
         docker build -t hello .",
    )
    .await;
    let out = ok(&server, &id, "docker run --rm hello").await;
    assert_eq!(out.trim(), "built-in-a-session");
    let images = ok(&server, &id, "docker images --format '{{.Repository}}'").await;
    assert_eq!(
        images.trim(),
        format!("{id}/hello"),
        "tags live in the session's namespace"
    );

    let name = format!("web-{id}");
    ok(
        &server,
        &id,
        &format!("docker run -d --name {name} berth/busybox sh -c 'echo started; sleep 300'"),
    )
    .await;
    let listed = ok(&server, &id, "docker ps --format '{{.Names}}'").await;
    assert_eq!(
        listed.trim(),
        name,
        "the session sees its own container only"
    );
    let logs = ok(&server, &id, &format!("docker logs {name}")).await;
    assert!(logs.contains("started"), "{logs}");
    let exec = ok(&server, &id, &format!("docker exec {name} echo from-exec")).await;
    assert_eq!(exec.trim(), "from-exec");
    let copied = ok(
        &server,
        &id,
        &format!("echo copied-in > f && docker cp f {name}:/f && docker exec {name} cat /f"),
    )
    .await;
    assert_eq!(copied.trim(), "copied-in");
    let state = ok(
        &server,
        &id,
        &format!("docker stop -t 1 {name} >/dev/null && docker inspect -f '{{{{.State.Running}}}}' {name}"),
    )
    .await;
    assert_eq!(state.trim(), "false");
    // Tags and removals stay in the namespace.
    let tagged = ok(
        &server,
        &id,
        "docker tag hello hello:v2 && docker images --format '{{.Repository}}:{{.Tag}}' | sort",
    )
    .await;
    assert_eq!(tagged.trim(), format!("{id}/hello:latest\n{id}/hello:v2"));
    ok(&server, &id, "docker rmi hello:v2").await;

    // What the engine made of it: the session's, on its network, within its limits, hardened.
    let child = inspect(&name);
    let labels = &child["Config"]["Labels"];
    assert_eq!(labels["berth.parent"], id.as_str());
    assert_eq!(labels["berth.parent-instance"], server.instance.as_str());
    assert!(
        labels.get("berth.session").is_none(),
        "not taken for a session"
    );
    let host = &child["HostConfig"];
    assert_eq!(
        host["NetworkMode"],
        format!("{id}_default"),
        "its own network"
    );
    assert_eq!(host["Memory"], 256 * 1024 * 1024);
    assert_eq!(host["Privileged"], false);
    assert!(
        host["SecurityOpt"]
            .to_string()
            .contains("no-new-privileges")
    );
    assert!(host["Binds"].is_null(), "{}", host["Binds"]);

    // Volumes by name are the session's own, made on first use.
    ok(
        &server,
        &id,
        "docker run --rm -v data:/data berth/busybox sh -c 'echo kept > /data/f'",
    )
    .await;
    let out = ok(
        &server,
        &id,
        "docker run --rm -v data:/data berth/busybox cat /data/f",
    )
    .await;
    assert_eq!(out.trim(), "kept");
    let volumes = ok(&server, &id, "docker volume ls -q").await;
    assert_eq!(volumes.trim(), format!("{id}_data"));

    ok(&server, &id, &format!("docker rm -f {name}")).await;
    let listed = ok(&server, &id, "docker ps -a --format '{{.Names}}'").await;
    assert_eq!(listed.trim(), "");

    // Limits count against the session: three containers at most here.
    for n in 0..3 {
        ok(
            &server,
            &id,
            &format!("docker create --name c{n}-{id} berth/busybox true"),
        )
        .await;
    }
    let err = fails(&server, &id, "docker create berth/busybox true").await;
    assert!(err.contains("docker.max_containers"), "{err}");

    // Deleting the session removes what it made.
    let (containers, images, volumes, networks) = children(&id);
    assert_eq!(containers.lines().count(), 3, "{containers}");
    assert_eq!(images.lines().count(), 1, "{images}");
    assert_eq!(volumes.lines().count(), 1, "{volumes}");
    assert_eq!(
        networks.lines().count(),
        1,
        "its default network: {networks}"
    );
    server.client.delete_session(&id).await.unwrap();
    assert_eq!(children(&id), Default::default());
    server.stop().await;
}

#[tokio::test]
async fn every_escape_is_refused_with_the_rule_it_breaks() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    for (args, rule) in [
        ("--privileged", "privileged"),
        ("-v /:/host", "mounts"),
        ("--mount type=bind,source=/etc,target=/h", "mounts"),
        ("--network host", "network"),
        ("--pid host", "namespaces"),
        ("--ipc host", "namespaces"),
        ("--cap-add SYS_ADMIN", "capabilities"),
        ("--security-opt seccomp=unconfined", "security_opt"),
        ("--device /dev/null", "devices"),
        ("--sysctl net.ipv4.ip_forward=1", "sysctls"),
        ("-p 8080:80/udp", "ports"),
        ("-p 80", "ports"),
        ("-P", "ports"),
        ("--network container:x", "network"),
        ("--cgroup-parent /", "runtime"),
        ("--label berth.parent=someone", "labels"),
        ("--name berth-snext", "names"),
    ] {
        let err = fails(
            &server,
            &id,
            &format!("docker run --rm {args} berth/busybox true"),
        )
        .await;
        assert!(
            err.contains(&format!("refused by Berth's Docker policy (rule `{rule}`)")),
            "{args}: {err}"
        );
    }
    for (script, rule) in [
        ("docker pull busybox", "pull"),
        ("docker network create -d macvlan mine", "network"),
        (
            "docker network create --subnet 10.99.0.0/24 mine",
            "network",
        ),
        (
            "docker network create -o com.docker.network.bridge.name=eth9 mine",
            "network",
        ),
        (
            "docker volume create --opt device=/ --opt o=bind --opt type=none v",
            "mounts",
        ),
        ("docker system df", "scope"),
    ] {
        let err = fails(&server, &id, script).await;
        assert!(err.contains(&format!("(rule `{rule}`)")), "{script}: {err}");
    }
    // Builds use base images and the session's own, and fetch nothing from the host.
    for (dockerfile, rule) in [
        ("FROM berth/tiny:latest", "images"),
        (
            "FROM berth/busybox\\nCOPY --from=berth/base:latest /etc/passwd /p",
            "images",
        ),
        ("FROM berth/busybox\\nADD http://127.0.0.1:1/x /x", "remote"),
    ] {
        let err = fails(
            &server,
            &id,
            &format!(
                "mkdir -p b && cd b && printf '{dockerfile}\\n' > Dockerfile && docker build ."
            ),
        )
        .await;
        assert!(
            err.contains(&format!("(rule `{rule}`)")),
            "{dockerfile}: {err}"
        );
    }
    // The policy speaks first, whatever the image.
    let err = fails(&server, &id, "docker run --privileged no-such-image true").await;
    assert!(err.contains("(rule `privileged`)"), "{err}");
    // An image that is neither the session's nor a base image does not exist for it.
    let err = fails(&server, &id, "docker run --rm berth/tiny:latest true").await;
    assert!(err.contains("(rule `pull`)"), "{err}");
    assert!(
        server.containers().len() == 1,
        "nothing refused left a container"
    );
    assert_eq!(
        children(&id),
        Default::default(),
        "nothing refused left a child"
    );
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_session_cannot_see_or_touch_another_sessions_containers_or_images() {
    let server = docker_server().await;
    let a = session(&server, "docker").await;
    let b = session(&server, "docker").await;
    let container = ok(
        &server,
        &a,
        &format!("docker run -d --name secret-{a} berth/busybox sleep 300"),
    )
    .await;
    let container = container.trim();
    ok(
        &server,
        &a,
        "printf 'FROM berth/busybox\\nCMD [\"true\"]\\n' > Dockerfile && docker build -q -t mine .",
    )
    .await;

    assert_eq!(ok(&server, &b, "docker ps -aq").await.trim(), "");
    assert_eq!(ok(&server, &b, "docker images -q").await.trim(), "");
    let err = fails(
        &server,
        &b,
        &format!("printf 'FROM {a}/mine\\n' > Dockerfile && docker build ."),
    )
    .await;
    assert!(err.contains("(rule `images`)"), "{err}");
    for (script, says) in [
        (format!("docker logs {container}"), "No such container"),
        (format!("docker logs secret-{a}"), "No such container"),
        (format!("docker inspect {container}"), "No such object"),
        (format!("docker exec {container} true"), "No such container"),
        (format!("docker stop {container}"), "No such container"),
        (format!("docker rm secret-{a}"), "No such container"),
    ] {
        let err = fails(&server, &b, &script).await;
        assert!(err.contains(says), "{script}: {err}");
    }
    for script in [
        format!("docker rmi {a}/mine"),
        format!("docker image inspect {a}/mine"),
        format!("docker tag {a}/mine stolen"),
    ] {
        let err = fails(&server, &b, &script).await;
        assert!(err.contains("No such image"), "{script}: {err}");
    }
    ok(
        &server,
        &a,
        "docker volume create secrets && \
         docker run --rm -v secrets:/s berth/busybox sh -c 'echo a-only > /s/f'",
    )
    .await;
    let err = fails(&server, &b, &format!("docker volume inspect {a}_secrets")).await;
    assert!(err.contains("No such volume"), "{err}");
    let err = fails(&server, &b, &format!("docker volume rm {a}_secrets")).await;
    assert!(err.contains("No such volume"), "{err}");
    // B naming A's volume gets a volume of its own, empty.
    let err = fails(
        &server,
        &b,
        &format!("docker run --rm -v {a}_secrets:/s berth/busybox cat /s/f"),
    )
    .await;
    assert!(err.contains("No such file"), "{err}");
    // A's container still runs, untouched.
    assert_eq!(inspect(container)["State"]["Running"], true);
    for id in [&a, &b] {
        server.client.delete_session(id).await.unwrap();
    }
    assert!(docker(&["inspect", container]).is_err(), "removed with A");
    server.stop().await;
}

#[tokio::test]
async fn control_planes_sharing_an_engine_create_networks_at_once_on_subnets_of_their_own() {
    // Two control planes choose from one pool; a subnet the engine is still making a network
    // on is reserved before it is listed, so both see it free. CI once met exactly that.
    let servers = [docker_server().await, docker_server().await];
    let mut sessions = Vec::new();
    for server in &servers {
        for _ in 0..2 {
            sessions.push((server, session(server, "docker").await));
        }
    }
    let creates = sessions.iter().map(|(server, id)| {
        ok(
            server,
            id,
            "docker network create one >/dev/null & docker network create two >/dev/null & \
             docker network create three >/dev/null & wait; docker network ls -q | wc -l",
        )
    });
    for listed in futures_util::future::join_all(creates).await {
        assert_eq!(listed.trim(), "3", "each session has its three networks");
    }
    let mut subnets: Vec<String> = sessions
        .iter()
        .flat_map(|(_, id)| {
            children(id)
                .3
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|network| inspect(&network)["IPAM"]["Config"][0]["Subnet"].to_string())
        .collect();
    assert_eq!(subnets.len(), 12);
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 12, "no two networks share a subnet");
    for (server, id) in &sessions {
        server.client.delete_session(id).await.unwrap();
    }
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn children_of_sessions_that_ended_are_removed_after_a_crash() {
    let instance = format!("test-{}", berth_server::ids::user_id());
    // What a control plane that died between a session's end and its children's removal
    // leaves: a child whose session the store no longer keeps.
    let orphan = docker(&[
        "run",
        "-d",
        "--label",
        "berth.parent=sgone",
        "--label",
        &format!("berth.parent-instance={instance}"),
        "berth/busybox:latest",
        "sleep",
        "300",
    ])
    .unwrap();
    let orphan = orphan.trim();
    let server = docker_server_with(|config| config.docker.instance = instance.clone()).await;
    let mut gone = false;
    for _ in 0..100 {
        if docker(&["inspect", orphan]).is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !gone {
        let _ = docker(&["rm", "-f", orphan]);
    }
    assert!(
        gone,
        "the startup sweep removes an ended session's children"
    );
    server.stop().await;
}

#[tokio::test]
async fn interactive_runs_exec_and_followed_logs_pass_through() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    let query = TerminalQuery {
        cols: Some(100),
        rows: Some(30),
        ..Default::default()
    };
    let mut terminal = server.client.terminal(&id, &query).await.unwrap();

    // `run -it`: a TTY through the hijacked attach, both ways.
    terminal
        .send(b"docker run -it --rm berth/busybox sh\n")
        .await
        .unwrap();
    terminal.send(b"echo inner-$((6*7))\n").await.unwrap();
    read_until(&mut terminal, "inner-42").await;
    terminal.send(b"exit\n").await.unwrap();
    // Back at the session's prompt: keys typed before would go to the ending container.
    let prompt = format!("user@{id}");
    read_until(&mut terminal, &prompt).await;

    // `logs -f` follows until the container ends.
    let name = format!("counter-{id}");
    terminal
        .send(
            format!(
                "docker run -d --name {name} berth/busybox sh -c \
                 'sleep 1; for i in 1 2 3; do echo line-$i; sleep 0.2; done; sleep 300' \
                 && docker logs -f {name}\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    read_until(&mut terminal, "line-3").await;
    terminal.send(b"\x03").await.unwrap();
    read_until(&mut terminal, &prompt).await;

    // `exec -it` into it.
    terminal
        .send(format!("docker exec -it {name} sh\n").as_bytes())
        .await
        .unwrap();
    terminal
        .send(b"echo exec-$((7*6))-tty-$(tty)\n")
        .await
        .unwrap();
    read_until(&mut terminal, "exec-42-tty-/dev/pts").await;
    terminal.send(b"exit\n").await.unwrap();

    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn children_sleep_while_their_session_hibernates_and_wake_with_it() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    let name = format!("sleeper-{id}");
    ok(
        &server,
        &id,
        &format!("docker run -d --name {name} berth/busybox sleep 300"),
    )
    .await;
    let stopped = format!("stopped-{id}");
    ok(
        &server,
        &id,
        &format!("docker create --name {stopped} berth/busybox true"),
    )
    .await;
    let web = format!("web-{id}");
    ok(
        &server,
        &id,
        &format!(
            "docker run -d --name {web} -p 8080:80 {}",
            web_server("before-sleep")
        ),
    )
    .await;
    assert_eq!(
        fetch_in_session(&server, &id, "localhost:8080")
            .await
            .stdout
            .trim(),
        "before-sleep"
    );
    server.client.hibernate_session(&id).await.unwrap();
    assert_eq!(inspect(&name)["State"]["Running"], false, "stopped with it");

    // Any access wakes the session, and its running children with it; the stopped one stays.
    let listed = ok(&server, &id, "docker ps --format '{{.Names}}' | sort").await;
    let mut expected = [name.as_str(), web.as_str()];
    expected.sort();
    assert_eq!(listed.trim(), expected.join("\n"));
    assert_eq!(inspect(&stopped)["State"]["Running"], false);
    // The new container joined the session's network again: the published port answers.
    let answer = fetch_in_session(&server, &id, "localhost:8080").await;
    assert_eq!(answer.stdout.trim(), "before-sleep", "{answer:?}");
    server.client.delete_session(&id).await.unwrap();
    assert_eq!(children(&id), Default::default());
    server.stop().await;
}

#[tokio::test]
async fn published_ports_reach_into_the_session_and_its_preview_and_nothing_reaches_out() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    let other = session(&server, "docker").await;
    let web = format!("web-{id}");
    ok(
        &server,
        &id,
        &format!(
            "docker run -d --name {web} -p 8080:80 {}",
            web_server("hello-from-a-child")
        ),
    )
    .await;
    // Nothing is published on the host.
    let bindings = &inspect(&web)["HostConfig"]["PortBindings"];
    assert!(
        bindings.as_object().is_none_or(|b| b.is_empty()),
        "{bindings}"
    );
    let answer = fetch_in_session(&server, &id, "localhost:8080").await;
    assert_eq!(answer.stdout.trim(), "hello-from-a-child", "{answer:?}");

    // The preview finds the port listening, as any server of the session.
    let base = server.client.base_url().to_owned();
    let url = format!("{base}/api/v1/sessions/{id}/ports/8080/");
    let mut body = String::new();
    for _ in 0..40 {
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            body = response.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(body.trim(), "hello-from-a-child");

    // One container per port; the error says which holds it.
    let err = fails(
        &server,
        &id,
        "docker run -d -p 8080:80 berth/busybox sleep 60",
    )
    .await;
    assert!(
        err.contains(&format!("published by container {web}")),
        "{err}"
    );

    // The child's network holds the session and its own containers, nothing else: the session
    // reaches the child by its address; another session, the host and the outside do not.
    let address =
        inspect(&web)["NetworkSettings"]["Networks"][format!("{id}_default")]["IPAddress"]
            .as_str()
            .unwrap()
            .to_owned();
    // The engine gives a network's first address to its bridge, the host's side.
    let subnet = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        &format!("{id}_default"),
    ])
    .unwrap();
    let network: std::net::Ipv4Addr = subnet.trim().split('/').next().unwrap().parse().unwrap();
    let gateway = std::net::Ipv4Addr::from(u32::from(network) + 1).to_string();
    let direct = fetch_in_session(&server, &id, &format!("{address}:80")).await;
    assert_eq!(direct.stdout.trim(), "hello-from-a-child", "{direct:?}");
    let sibling = ok(
        &server,
        &id,
        &format!("docker run --rm berth/busybox wget -q -O- http://{address}/"),
    )
    .await;
    assert_eq!(
        sibling.trim(),
        "hello-from-a-child",
        "siblings reach each other"
    );
    let from_other = run(
        &server,
        &other,
        &format!("curl -sS --max-time 2 {address}:80"),
    )
    .await;
    assert_eq!(
        from_other.exit_code,
        Some(28),
        "dropped on the way: {from_other:?}"
    );
    // A server on every address of the host: neither the child bridge's gateway nor (routed
    // out of the child network) the session network's reaches it.
    let host = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    let session_gateway = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}",
        &format!("berth-{id}"),
    ])
    .unwrap();
    for target in [gateway]
        .into_iter()
        .chain(session_gateway.split_whitespace().map(str::to_owned))
    {
        let reached = run(
            &server,
            &id,
            &format!("docker exec {web} timeout 2 wget -q -O- http://{target}:{host_port}/"),
        )
        .await;
        // Dropped, not refused: a refusal would be the host answering.
        assert_eq!(reached.exit_code, Some(143), "{target}: {reached:?}");
    }
    drop(host);

    // Stopped, it is no longer published; removed with the session, so is its network.
    ok(&server, &id, &format!("docker stop -t 0 {web}")).await;
    let gone = run(&server, &id, "curl -sS --max-time 2 localhost:8080").await;
    assert_ne!(gone.exit_code, Some(0), "{gone:?}");
    server.client.delete_session(&id).await.unwrap();
    assert_eq!(children(&id), Default::default());
    server.client.delete_session(&other).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn compose_brings_up_services_that_find_each_other_and_takes_them_down() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    // `web` is built from a Dockerfile on the offline stand-in for python:3.11-slim.
    let dockerfile = "FROM python:3.11-slim\n\
        RUN mkdir /www && echo served-by-web > /www/index.html\n\
        CMD [\"python\", \"-m\", \"http.server\", \"80\", \"-d\", \"/www\"]\n";
    let compose = r#"
services:
  web:
    build: .
    ports: ["8081:80"]
  client:
    image: berth/busybox
    command: sh -c 'until wget -qO- http://web/; do sleep 0.5; done; exec sleep 3600'
"#;
    ok(
        &server,
        &id,
        &format!(
            "mkdir -p app && cd app && printf '{dockerfile}' > Dockerfile && \
             cat > docker-compose.yml <<'EOF'\n{compose}\nEOF\ndocker compose up -d 2>&1"
        ),
    )
    .await;
    let mut logs = String::new();
    for _ in 0..40 {
        logs = ok(&server, &id, "cd app && docker compose logs client 2>&1").await;
        if logs.contains("served-by-web") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        logs.contains("served-by-web"),
        "the client found web by its name: {logs}"
    );
    let answer = fetch_in_session(&server, &id, "localhost:8081").await;
    assert_eq!(answer.stdout.trim(), "served-by-web", "{answer:?}");
    // A second `up` finds the network as it left it: nothing to recreate.
    let again = ok(&server, &id, "cd app && docker compose up -d 2>&1").await;
    assert!(!again.contains("needs to be recreated"), "{again}");
    let networks = ok(
        &server,
        &id,
        "docker network ls --format '{{.Name}}' | sort",
    )
    .await;
    assert_eq!(networks.trim(), format!("{id}_app_default"));

    ok(&server, &id, "cd app && docker compose down 2>&1").await;
    let (containers, _, _, networks) = children(&id);
    assert_eq!(
        (containers.as_str(), networks.as_str()),
        ("", ""),
        "down removed what up made"
    );
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_session_and_its_children_share_its_memory_limit_and_its_cores() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    // The session's container and its children run under one cgroup with the template's limits.
    let parent = format!("/berth/{}/{id}", server.instance);
    assert_eq!(
        inspect(&format!("berth-{id}"))["HostConfig"]["CgroupParent"],
        parent.as_str()
    );
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{parent}/memory.limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(limit.trim(), (256u64 << 20).to_string());

    // One child holding 150 MB fits in the session's 256 MB; a second one does not: the
    // kernel kills one of them, where each with limits of its own would have fitted.
    let hold = "import time; held = b'a' * (150 << 20); print('held', flush=True); time.sleep(600)";
    ok(
        &server,
        &id,
        &format!("docker run -d --name hog-a-{id} python:3.11-slim python3 -c \"{hold}\""),
    )
    .await;
    let mut logs = String::new();
    for _ in 0..60 {
        logs = ok(&server, &id, &format!("docker logs hog-a-{id}")).await;
        if logs.contains("held") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(logs.contains("held"), "one child alone fits: {logs}");
    assert_eq!(
        inspect(&format!("hog-a-{id}"))["HostConfig"]["CgroupParent"],
        parent.as_str()
    );
    // And its cores (`docker.pin_cpus`): its `cpus = 1` is one core of this machine's two.
    let session = inspect(&format!("berth-{id}"));
    let cores = session["HostConfig"]["CpusetCpus"].as_str().unwrap();
    assert!(matches!(cores, "0" | "1"), "pinned to one core: {cores:?}");
    assert_eq!(session["Config"]["Labels"]["berth.cpuset"], cores);
    assert_eq!(
        inspect(&format!("hog-a-{id}"))["HostConfig"]["CpusetCpus"],
        cores
    );
    let err = fails(
        &server,
        &id,
        "docker run --rm --cpuset-cpus 0-63 berth/busybox true",
    )
    .await;
    assert!(err.contains("(rule `cpuset`)"), "{err}");
    let second = run(
        &server,
        &id,
        &format!("docker run --name hog-b-{id} python:3.11-slim python3 -c \"held = b'a' * (150 << 20); print('held')\""),
    )
    .await;
    let first = &inspect(&format!("hog-a-{id}"))["State"];
    assert!(
        second.exit_code == Some(137) || first["OOMKilled"] == true,
        "both fitted: {second:?}, {first}"
    );
    server.client.delete_session(&id).await.unwrap();
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory{parent}")).exists(),
        "its cgroup goes with it"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_runner_builds_a_sessions_directory_under_the_same_policy() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    ok(
        &server,
        &id,
        "mkdir -p lab && printf 'FROM berth/busybox\\nRUN echo judged > /j\\n' > lab/Dockerfile && \
         mkdir -p bad && printf 'FROM berth/tiny:latest\\n' > bad/Dockerfile",
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/sessions/{id}/docker/build",
        server.client.base_url()
    );
    let build = |body: serde_json::Value| http.post(&url).bearer_auth(ADMIN).json(&body).send();
    let answer = build(serde_json::json!({"context_path": "lab", "tag": "lab:1"}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let log = answer.text().await.unwrap();
    assert!(log.contains(r#""aux":{"ID":"sha256:"#), "{log}");
    // The last line says what was built, so a program needs no second call.
    let result: serde_json::Value =
        serde_json::from_str(log.lines().last().unwrap_or_default()).unwrap();
    assert!(
        result["result"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:")),
        "{log}"
    );
    assert_eq!(result["result"]["tag"], format!("{id}/lab:1"));
    assert!(
        result["result"]["size_bytes"].as_u64().unwrap() > 0,
        "{log}"
    );
    let images = ok(
        &server,
        &id,
        "docker images --format '{{.Repository}}:{{.Tag}}'",
    )
    .await;
    assert_eq!(images.trim(), format!("{id}/lab:1"));

    let refused = build(serde_json::json!({"context_path": "bad", "tag": "bad"}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(rule `images`)"),
        "{body}"
    );
    let invalid = build(serde_json::json!({"context_path": "lab", "tag": "no spaces"}))
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    // A session of a template without Docker has none to build with.
    let plain = session(&server, "default").await;
    let url = format!(
        "{}/api/v1/sessions/{plain}/docker/build",
        server.client.base_url()
    );
    let answer = http
        .post(&url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"context_path": ".", "tag": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);
    for id in [&id, &plain] {
        server.client.delete_session(id).await.unwrap();
    }
    server.stop().await;
}

/// Seed 004's runner without a shell: a container run to its end with its output and exit
/// code, `--rm`, one started and then exec'd into, a timeout, and the policy as for the CLI.
#[tokio::test]
async fn the_runner_runs_containers_and_execs_in_them_under_the_same_policy() {
    let server = docker_server().await;
    let id = session(&server, "docker").await;
    let client = &server.client;
    let busybox = |script: &str| DockerRun {
        image: "berth/busybox".into(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..DockerRun::default()
    };
    let all = "docker ps -aq --no-trunc";

    let ran = client
        .docker_run(
            &id,
            &DockerRun {
                env: [("WHO".to_owned(), "judge".to_owned())].into(),
                ..busybox("echo out $WHO; echo err >&2; exit 3")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (ran.exit_code, ran.stdout.as_str(), ran.stderr.as_str()),
        (Some(3), "out judge\n", "err\n")
    );
    assert!(!ran.timed_out && !ran.truncated);
    // Kept, as `docker run` keeps it: the session sees it.
    assert!(ok(&server, &id, all).await.contains(&ran.container));
    let removed = client
        .docker_run(
            &id,
            &DockerRun {
                rm: true,
                ..busybox("true")
            },
        )
        .await
        .unwrap();
    assert_eq!(removed.exit_code, Some(0));
    assert!(!ok(&server, &id, all).await.contains(&removed.container));

    let started = client
        .docker_run(
            &id,
            &DockerRun {
                detach: true,
                ..busybox("sleep 300")
            },
        )
        .await
        .unwrap();
    assert_eq!(started.exit_code, None);
    let inside = client
        .docker_exec(
            &id,
            &DockerExec {
                container: started.container.clone(),
                cmd: vec!["sh".into(), "-c".into(), "echo inside; exit 4".into()],
                ..DockerExec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (inside.exit_code, inside.stdout.as_str()),
        (Some(4), "inside\n")
    );

    let slow = client
        .docker_run(
            &id,
            &DockerRun {
                timeout_seconds: Some(1),
                ..busybox("sleep 30")
            },
        )
        .await
        .unwrap();
    assert!(slow.timed_out, "{slow:?}");
    assert_eq!(slow.exit_code, Some(137), "killed");

    // The policy is the CLI's, and its refusals say the rule.
    let id = id.as_str();
    let refused =
        |request: DockerRun| async move { client.docker_run(id, &request).await.unwrap_err() };
    let published = refused(DockerRun {
        ports: vec!["8080:80/udp".into()],
        ..busybox("true")
    })
    .await;
    assert!(
        matches!(&published, ClientError::Api { status: 403, message, .. } if message.contains("(rule `ports`)")),
        "{published}"
    );
    // An image its template does not list does not exist for the session, as for its CLI.
    let unlisted = refused(DockerRun {
        image: "berth/tiny:latest".into(),
        ..DockerRun::default()
    })
    .await;
    assert!(
        matches!(&unlisted, ClientError::Api { status: 404, .. }),
        "{unlisted}"
    );
    let bad = refused(DockerRun {
        timeout_seconds: Some(0),
        ..busybox("true")
    })
    .await;
    assert!(
        matches!(&bad, ClientError::Api { status: 400, message, .. } if message.contains("timeout_seconds")),
        "{bad}"
    );
    // Another session's container does not exist for this one.
    let other = session(&server, "docker").await;
    let foreign = client
        .docker_exec(
            &other,
            &DockerExec {
                container: started.container.clone(),
                cmd: vec!["true".into()],
                ..DockerExec::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(foreign, ClientError::Api { status: 404, .. }),
        "{foreign}"
    );

    for id in [id, other.as_str()] {
        server.client.delete_session(id).await.unwrap();
    }
    server.stop().await;
}

/// `docker.allow_pull`: a session pulls one of its template's base images from a registry (a
/// real one on loopback), and nothing else; a template without it pulls nothing.
#[tokio::test]
async fn a_template_that_allows_pulls_pulls_its_base_images_and_nothing_else() {
    let registry = Registry::start().await;
    let listed = format!("{}/lab/busybox:1", registry.address);
    let unlisted = format!("{}/lab/other:1", registry.address);
    for image in [&listed, &unlisted] {
        docker(&["tag", "berth/busybox:latest", image]).unwrap();
        docker(&["push", image]).unwrap();
        docker(&["rmi", image]).unwrap();
    }
    let base = listed.clone();
    let server = docker_server_with(|config| {
        let docker = &mut config.templates.get_mut("docker").unwrap().docker;
        docker.base_images.push(base);
        docker.allow_pull = true;
    })
    .await;
    let id = session(&server, "docker").await;
    ok(&server, &id, &format!("docker pull -q {listed}")).await;
    let ran = ok(
        &server,
        &id,
        &format!("docker run --rm {listed} echo pulled"),
    )
    .await;
    assert_eq!(ran.trim(), "pulled");
    let refused = fails(&server, &id, &format!("docker pull {unlisted}")).await;
    assert!(refused.contains("(rule `pull`)"), "{refused}");
    assert!(
        docker(&["image", "inspect", &unlisted]).is_err(),
        "never pulled"
    );
    let imported = fails(
        &server,
        &id,
        "docker import http://127.0.0.1:1/x.tar imported",
    )
    .await;
    assert!(imported.contains("(rule `import`)"), "{imported}");
    server.client.delete_session(&id).await.unwrap();
    server.stop().await;
    // A pulled base image is the engine's, like any base image: the session's end leaves it.
    docker(&["rmi", &listed]).unwrap();
}

/// The idle policy counts a session's CPU use as work (`idle.busy_cpu_percent`), read from its
/// cgroup: a session with Docker has one of its own (its containers' parent), the others
/// their container's.
#[tokio::test]
async fn sessions_busy_with_their_cpu_are_kept_awake_and_an_idle_one_hibernates() {
    let drowsy = |template: &TemplateConfig| TemplateConfig {
        idle: IdleConfig {
            timeout_seconds: 5,
            warning_seconds: 1,
            busy_cpu_percent: 10,
            ..IdleConfig::default()
        },
        ..template.clone()
    };
    let server = docker_server_with(|config| {
        let with_docker = drowsy(&config.templates["docker"]);
        let plain = drowsy(&config.templates["default"]);
        config.templates.insert("drowsy-docker".into(), with_docker);
        config.templates.insert("drowsy".into(), plain);
    })
    .await;
    let client = &server.client;
    // Busy from their first moment (idleness counts from creation), and older than the idle
    // one: had they been idle, they would sleep first.
    let mut busy = Vec::new();
    for template in ["drowsy-docker", "drowsy"] {
        let id = session(&server, template).await;
        client
            .start_process(&id, &sh("while :; do :; done"))
            .await
            .unwrap();
        busy.push(id);
    }
    let idle = session(&server, "drowsy").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.get_session(&idle).await.unwrap().state != SessionState::Hibernated {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session was not hibernated within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past the idle one's moment, theirs came earlier still.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &busy {
        let state = client.get_session(id).await.unwrap().state;
        assert_eq!(state, SessionState::Running, "{id}");
    }
    for id in busy.iter().chain([&idle]) {
        client.delete_session(id).await.unwrap();
    }
    server.stop().await;
}
