//! Persistent homes on the real engine (seed 001's per-user workspace): a named volume per
//! user and template on `/home/user`, kept across sessions, hibernation included, used by one
//! session at a time, listed and deleted by its owner, invisible to everyone else.

mod common;

use berth_client::Client;
use berth_proto::{CreateSession, SessionState, home::Home};
use berth_server::config::{HomeMode, TemplateConfig};
use common::{BASE, Server, TINY, docker, sh};

/// A server with `dev` (a persistent home on `berth/base`, seeded with `hello.txt`, limited to
/// 64 MiB where the engine can) and `scratch` (the same on `berth/tiny`, unseeded).
async fn server() -> (Server, tempfile::TempDir) {
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("hello.txt"), "from the seed\n").unwrap();
    let seed_dir = seed.path().to_owned();
    let server = Server::start_with(move |config| {
        config.templates.insert(
            "dev".into(),
            TemplateConfig {
                image: BASE.into(),
                home: HomeMode::Persistent,
                home_size_mb: 64,
                workspace_seed: Some(seed_dir),
                ..TemplateConfig::default()
            },
        );
        config.templates.insert(
            "scratch".into(),
            TemplateConfig {
                image: TINY.into(),
                memory_mb: 64,
                home: HomeMode::Persistent,
                ..TemplateConfig::default()
            },
        );
    })
    .await;
    (server, seed)
}

/// Removes the server's containers, then its home volumes (which outlive containers by
/// design), however a test ends.
struct Volumes(String);

impl Drop for Volumes {
    fn drop(&mut self) {
        let filter = format!("label=berth.instance={}", self.0);
        let containers = docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        for container in containers.lines() {
            let _ = docker(&["rm", "-f", container]);
        }
        for volume in volumes(&self.0) {
            let _ = docker(&["volume", "rm", "-f", &volume]);
        }
    }
}

/// The home volumes the engine holds for `instance`.
fn volumes(instance: &str) -> Vec<String> {
    let filter = format!("label=berth.instance={instance}");
    docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "label=berth.home",
    ])
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect()
}

/// A client acting as a new user `name`.
async fn user(server: &Server, name: &str) -> Client {
    let token = server.client.create_user(name).await.unwrap().token;
    Client::new(server.client.base_url(), &token).unwrap()
}

async fn session(client: &Client, template: &str) -> String {
    let request = CreateSession {
        template: template.into(),
        ..CreateSession::default()
    };
    client.create_session(&request).await.unwrap().id
}

/// `script`'s output in the session; it must succeed.
async fn run(client: &Client, id: &str, script: &str) -> String {
    let ran = client.exec(id, &sh(script)).await.unwrap();
    assert_eq!(ran.exit_code, Some(0), "{script}: {}", ran.stderr);
    ran.stdout
}

#[tokio::test]
async fn a_persistent_home_is_kept_across_two_sessions_and_seeded_once() {
    let (server, _seed) = server().await;
    let _volumes = Volumes(server.instance.clone());
    let alice = user(&server, "alice").await;
    let templates = alice.templates().await.unwrap();
    let says = |name: &str| {
        templates
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .persistent_home
    };
    assert!(
        says("dev") && !says("default"),
        "the listing tells which keep homes"
    );
    let first = session(&alice, "dev").await;

    // A new home: the image's home (owners kept) and the seed.
    let listing = run(
        &alice,
        &first,
        "cd && stat -c '%n %U' .profile hello.txt . && pwd",
    )
    .await;
    assert_eq!(
        listing, ".profile user\nhello.txt user\n. user\n/home/user\n",
        "{listing}"
    );
    run(
        &alice,
        &first,
        "echo mine > ~/hello.txt && mkdir -p ~/work && echo kept > ~/work/notes",
    )
    .await;
    let homes = alice.homes(None).await.unwrap();
    assert_eq!(homes.len(), 1, "{homes:?}");
    let home = &homes[0];
    assert_eq!(
        (home.user.as_str(), home.template.as_str()),
        ("alice", "dev")
    );
    assert_eq!(home.used_by.as_deref(), Some(first.as_str()));
    // 64 where the engine can limit a volume (XFS with project quotas), none elsewhere.
    assert!(matches!(home.size_mb, None | Some(64)), "{home:?}");
    let container = common::container_of(&server, &first);
    let mounts = docker(&["inspect", "-f", "{{json .Mounts}}", &container]).unwrap();
    assert!(
        mounts.contains(&format!("\"Name\":\"{}\"", home.name))
            && mounts.contains("\"Destination\":\"/home/user\""),
        "{mounts}"
    );

    alice.delete_session(&first).await.unwrap();
    assert_eq!(volumes(&server.instance), vec![home.name.clone()]);
    assert_eq!(alice.homes(None).await.unwrap()[0].used_by, None);

    // The next session finds the user's files, not the seed's again.
    let second = session(&alice, "dev").await;
    assert_eq!(
        run(&alice, &second, "cat ~/work/notes ~/hello.txt").await,
        "kept\nmine\n"
    );
    alice.delete_session(&second).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn one_session_at_a_time_has_the_home_and_hibernation_keeps_it() {
    let (server, _seed) = server().await;
    let _volumes = Volumes(server.instance.clone());
    let alice = user(&server, "alice").await;
    let first = session(&alice, "scratch").await;
    run(&alice, &first, "echo before > ~/notes").await;

    let request = CreateSession {
        template: "scratch".into(),
        ..CreateSession::default()
    };
    let err = alice.create_session(&request).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains(&first), "names the holder: {err}");
    // Another template's home, and another user's, are theirs.
    session(&alice, "dev").await;
    let bob = user(&server, "bob").await;
    let bobs = session(&bob, "scratch").await;
    run(&bob, &bobs, "test ! -e ~/notes").await;

    // Asleep it still holds the home; awake it finds it as it left it, and what was written
    // after the snapshot's files too: the home is not in the snapshot.
    alice.hibernate_session(&first).await.unwrap();
    let err = alice.create_session(&request).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("hibernated"), "{err}");
    let woken = alice.resume_session(&first).await.unwrap();
    assert_eq!(woken.state, SessionState::Running);
    assert_eq!(run(&alice, &first, "cat ~/notes").await, "before\n");
    run(&alice, &first, "echo after >> ~/notes").await;
    alice.hibernate_session(&first).await.unwrap();
    assert_eq!(run(&alice, &first, "cat ~/notes").await, "before\nafter\n");
    server.stop().await;
}

#[tokio::test]
async fn homes_are_listed_and_deleted_by_their_owner_only_once_unused() {
    let (server, _seed) = server().await;
    let _volumes = Volumes(server.instance.clone());
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let first = session(&alice, "scratch").await;
    session(&bob, "scratch").await;
    let mine: Vec<Home> = alice.homes(None).await.unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let name = mine[0].name.clone();

    // Someone else's home does not exist for them, listed or named.
    let theirs = bob.homes(None).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs[0].name, name);
    assert_eq!(bob.homes(Some("alice")).await.unwrap(), theirs);
    let err = bob.delete_home(&name).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = bob.delete_home("berth-home-nobody").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    // The admin sees everyone's, or one user's.
    assert_eq!(server.client.homes(None).await.unwrap().len(), 2);
    let alices = server.client.homes(Some("alice")).await.unwrap();
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].name, name);

    // In use: refused, naming the session; once it ended, deleted with its files.
    let err = alice.delete_home(&name).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains(&first), "{err}");
    alice.delete_session(&first).await.unwrap();
    alice.delete_home(&name).await.unwrap();
    assert!(alice.homes(None).await.unwrap().is_empty());
    assert!(!volumes(&server.instance).contains(&name));
    let err = alice.delete_home(&name).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    server.stop().await;
}
