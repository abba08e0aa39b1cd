//! Hibernation on the real engine: `docker commit` of the session's writable layer, the
//! container removed, any access restoring it with every byte, mode and link in place.

mod common;

use berth_proto::{CreateSession, SessionState};
use common::{Registry, Server, docker, sh};

/// What the session's home holds, in enough detail that any loss shows: names, types,
/// modes, owners, link targets and contents.
const MANIFEST: &str = r#"cd /home/user && find . -path ./.berth -prune -o -print | sort | while read -r f; do
  stat -c '%n %F %a %u' "$f"
  if [ -L "$f" ]; then readlink "$f"; elif [ -f "$f" ]; then sha256sum "$f"; fi
done"#;

/// Files of every kind a user makes: a large random one, an executable, a symlink, an empty
/// directory, a name with spaces and non-ASCII letters.
const POPULATE: &str = r#"cd /home/user && mkdir -p work/empty 'odd dir' &&
  head -c 10485760 /dev/urandom > work/big.bin &&
  printf '#!/bin/sh\necho hi\n' > work/run.sh && chmod 750 work/run.sh &&
  ln -s work/run.sh link-to-run && echo 'ünïcödé' > 'odd dir/naïve file.txt' &&
  chmod 600 'odd dir/naïve file.txt'"#;

/// A session of the `base` template (whose image has files in the home) with `POPULATE`'s
/// files, and one of the template's own files deleted: a deletion a snapshot must keep.
async fn populated_base_session(client: &berth_client::Client) -> berth_proto::Session {
    let request = CreateSession {
        template: "base".into(),
        ..CreateSession::default()
    };
    let session = client.create_session(&request).await.unwrap();
    let script = format!("{POPULATE} && rm /home/user/.bash_logout");
    let populated = client.exec(&session.id, &sh(&script)).await.unwrap();
    assert_eq!(populated.exit_code, Some(0), "{}", populated.stderr);
    session
}

/// A session of the default template in which `script` ran and succeeded.
async fn default_session_with(client: &berth_client::Client, script: &str) -> berth_proto::Session {
    let session = client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    let ran = client.exec(&session.id, &sh(script)).await.unwrap();
    assert_eq!(ran.exit_code, Some(0), "{script}: {}", ran.stderr);
    session
}

/// `MANIFEST` of a session's home.
async fn manifest_of(client: &berth_client::Client, id: &str) -> String {
    client.exec(id, &sh(MANIFEST)).await.unwrap().stdout
}

fn snapshot_images(session_id: &str) -> Vec<String> {
    docker(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        &format!("berth-snapshot/{session_id}"),
    ])
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect()
}

#[tokio::test]
async fn hibernate_and_restore_keep_every_file_and_leave_no_container_or_stale_image() {
    let server = Server::start().await;
    let client = &server.client;
    let session = default_session_with(client, POPULATE).await;
    let manifest = manifest_of(client, &session.id).await;
    assert!(
        manifest.contains("big.bin") && manifest.contains("naïve"),
        "{manifest}"
    );

    let asleep = client.hibernate_session(&session.id).await.unwrap();
    assert_eq!(asleep.state, SessionState::Hibernated);
    assert!(server.containers().is_empty(), "no container while asleep");
    let images = snapshot_images(&session.id);
    assert_eq!(images.len(), 1, "{images:?}");
    let env = docker(&["image", "inspect", "-f", "{{json .Config.Env}}", &images[0]]).unwrap();
    assert!(
        env.contains("\"BERTH_AGENT_SECRET=\"") && !env.contains("BERTH_AGENT_SECRET=b"),
        "the agent's secret is not kept in the image: {env}"
    );

    // An exec wakes it, and then finds every file as it was.
    let woken = manifest_of(client, &session.id).await;
    assert_eq!(woken, manifest);
    assert_eq!(
        client.get_session(&session.id).await.unwrap().state,
        SessionState::Running
    );

    // Twice more, through `resume`: each hibernation replaces the previous image.
    for _ in 0..2 {
        client.hibernate_session(&session.id).await.unwrap();
        let resumed = client.resume_session(&session.id).await.unwrap();
        assert_eq!(resumed.state, SessionState::Running);
        let again = manifest_of(client, &session.id).await;
        assert_eq!(again, manifest);
    }
    assert_eq!(snapshot_images(&session.id).len(), 1);

    // Hibernating what is not running says so; deleting removes the image with the session.
    // Asleep after restores, it says how long waking takes here.
    client.hibernate_session(&session.id).await.unwrap();
    let asleep = client.get_session(&session.id).await.unwrap();
    let estimate = asleep
        .wake_estimate_ms
        .expect("an estimate after three restores");
    assert!((1..60_000).contains(&estimate), "{estimate} ms");
    client.delete_session(&session.id).await.unwrap();
    assert!(
        snapshot_images(&session.id).is_empty(),
        "the image went with the session"
    );
    let err = client.hibernate_session(&session.id).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn a_session_woken_and_left_alone_sleeps_again_on_the_same_image() {
    let server = Server::start().await;
    let client = &server.client;
    let session = default_session_with(client, "echo kept > /home/user/notes").await;
    client.hibernate_session(&session.id).await.unwrap();
    let first = snapshot_images(&session.id);
    assert_eq!(first.len(), 1, "{first:?}");

    // Woken (the agent started, a fresh secret and address) but nothing written: the engine
    // sees no change, and the same image goes on holding the files.
    client.resume_session(&session.id).await.unwrap();
    client.hibernate_session(&session.id).await.unwrap();
    assert_eq!(snapshot_images(&session.id), first);

    // Worked in: a new image replaces it.
    client
        .exec(&session.id, &sh("echo more >> /home/user/notes"))
        .await
        .unwrap();
    client.hibernate_session(&session.id).await.unwrap();
    // The replaced image is removed right after the answer.
    let mut second = snapshot_images(&session.id);
    for _ in 0..50 {
        if second.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        second = snapshot_images(&session.id);
    }
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    let notes = client
        .exec(&session.id, &sh("cat /home/user/notes"))
        .await
        .unwrap();
    assert_eq!(notes.stdout, "kept\nmore\n");
    server.stop().await;
}

#[tokio::test]
async fn a_fork_of_a_named_snapshot_has_every_file_of_the_moment_it_was_taken() {
    let server = Server::start().await;
    let client = &server.client;
    let session = default_session_with(client, POPULATE).await;
    let manifest = manifest_of(client, &session.id).await;

    let snapshot = client
        .create_snapshot(&session.id, "before-refactor")
        .await
        .unwrap();
    assert!(snapshot.pause_ms.is_some());
    // Its own bytes: the 10 MiB written, give or take the small files; not the template's.
    let size = snapshot
        .size_bytes
        .expect("the engine tells a local image's size");
    assert!(
        (10_485_760..12_000_000).contains(&size),
        "{size} bytes for 10 MiB of changes"
    );
    // Later changes to the original are not in the fork.
    client
        .exec(
            &session.id,
            &sh("rm -r /home/user/work && echo later > /home/user/late.txt"),
        )
        .await
        .unwrap();
    let fork = CreateSession {
        from_snapshot: Some(snapshot.id.clone()),
        ..CreateSession::default()
    };
    let forked = client.create_session(&fork).await.unwrap();
    let forked_manifest = manifest_of(client, &forked.id).await;
    assert_eq!(forked_manifest, manifest);

    let listed = client.list_snapshots(&session.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size_bytes, Some(size));
    client.delete_snapshot(&snapshot.id).await.unwrap();
    assert!(client.list_snapshots(&session.id).await.unwrap().is_empty());
    assert_eq!(
        docker(&[
            "images",
            "-q",
            &format!("berth-snapshot/{}:{}", session.id, snapshot.id)
        ])
        .unwrap()
        .trim(),
        "",
        "the image went with the snapshot"
    );
    // The fork still has its files.
    let again = manifest_of(client, &forked.id).await;
    assert_eq!(again, manifest);
    server.stop().await;
}

#[tokio::test]
async fn a_container_removed_by_hand_comes_back_from_its_last_checkpoint() {
    let server = Server::start_with(|c| {
        c.templates
            .get_mut("default")
            .unwrap()
            .checkpoint_interval_seconds = 1;
    })
    .await;
    let client = &server.client;
    let session = default_session_with(client, "echo checkpointed > /home/user/kept.txt").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while snapshot_images(&session.id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    docker(&["rm", "-f", &common::container_of(&server, &session.id)]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let kept = loop {
        if let Ok(out) = client
            .exec(&session.id, &sh("cat /home/user/kept.txt"))
            .await
        {
            break out.stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session was not recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(kept, "checkpointed\n");
    let timeline = client.timeline(&session.id).await.unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == "recovered"),
        "{timeline:?}"
    );
    server.stop().await;
}

/// Past `compact_after_layers` a snapshot's own layers become one on the template's image:
/// the same files (deletions across layers included), the template's layers still shared.
#[tokio::test]
async fn compaction_folds_a_deep_snapshot_into_one_layer_with_every_file_intact() {
    let server = Server::start_with(|config| config.snapshots.compact_after_layers = 3).await;
    let client = &server.client;
    let session = populated_base_session(client).await;
    // Each cycle changes what another layer holds: a file rewritten, a file and a directory of
    // earlier layers deleted, a directory replaced by a file and that file by a directory.
    let changes = [
        "echo 1 > /home/user/cycle && mkdir -p /home/user/dir && echo a > /home/user/dir/a",
        "echo 2 > /home/user/cycle && rm -r /home/user/work/empty && rm /home/user/dir/a",
        "echo 3 > /home/user/cycle && rm -r /home/user/dir && echo file > /home/user/dir",
        "echo 4 > /home/user/cycle && rm /home/user/dir && mkdir /home/user/dir && echo b > /home/user/dir/b",
    ];
    for change in changes {
        let changed = client.exec(&session.id, &sh(change)).await.unwrap();
        assert_eq!(changed.exit_code, Some(0), "{}", changed.stderr);
        client.hibernate_session(&session.id).await.unwrap();
        client.resume_session(&session.id).await.unwrap();
    }
    let manifest = manifest_of(client, &session.id).await;
    let template = client.get_session(&session.id).await.unwrap().template;
    let base = server.config.templates[&template].image.clone();
    let layers_of = |image: &str| {
        docker(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", image])
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let base_layers = layers_of(&base);

    // The fifth hibernation makes a fifth layer, past the threshold: compacted while asleep.
    client.hibernate_session(&session.id).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let compacted = loop {
        let images = snapshot_images(&session.id);
        if let [image] = images.as_slice()
            && layers_of(image) == base_layers + 1
        {
            break image.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never compacted: {images:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let shared = docker(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", &base]).unwrap();
    let own = docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .RootFS.Layers}}",
        &compacted,
    ])
    .unwrap();
    assert!(
        own.starts_with(shared.trim().trim_end_matches(']')),
        "the template's layers are shared: {shared} / {own}"
    );
    let woken = manifest_of(client, &session.id).await;
    assert_eq!(woken, manifest);
    for gone in [
        "/home/user/work/empty",
        "/home/user/dir/a",
        "/home/user/.bash_logout",
    ] {
        let test = client
            .exec(&session.id, &sh(&format!("test ! -e {gone}")))
            .await
            .unwrap();
        assert_eq!(test.exit_code, Some(0), "{gone} stays deleted");
    }
    let timeline = client.timeline(&session.id).await.unwrap();
    assert!(
        timeline.iter().any(|event| event.kind == "compacted"),
        "{timeline:?}"
    );
    server.stop().await;
}

/// With `keep_local = false` a sleeping session's files are only in the registry: the restore
/// pulls them, every byte intact, and deleting the session deletes them there too.
#[tokio::test]
async fn snapshots_go_to_a_registry_and_come_back_from_it() {
    let registry = Registry::start().await;
    let address = registry.address.clone();
    let server = Server::start_with(|config| {
        config.snapshots.registry = Some(address);
        config.snapshots.keep_local = false;
    })
    .await;
    let client = &server.client;
    let session = populated_base_session(client).await;
    let manifest = manifest_of(client, &session.id).await;
    client.hibernate_session(&session.id).await.unwrap();

    // Pushed in the background, then the engine's copy dropped.
    let repository = format!("{}/berth-snapshot/{}", registry.address, session.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let tag = loop {
        let local = docker(&["images", "-q", &repository]).unwrap();
        let tags = reqwest::get(format!(
            "http://{}/v2/berth-snapshot/{}/tags/list",
            registry.address, session.id
        ))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_or_default();
        if let (true, Some(tag)) = (local.trim().is_empty(), tags["tags"][0].as_str()) {
            break tag.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never pushed and dropped: local {local:?}, registry {tags}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };

    let woken = manifest_of(client, &session.id).await;
    assert_eq!(woken, manifest, "the restore pulled every byte back");
    assert!(
        !manifest.contains(".bash_logout") && manifest.contains(".bashrc"),
        "the template's deleted file stays deleted: {manifest}"
    );

    client.delete_session(&session.id).await.unwrap();
    let path = format!("/v2/berth-snapshot/{}/manifests/{tag}", session.id);
    assert_eq!(
        registry.get(&path).await,
        Some(404),
        "deleting the session deleted its manifest"
    );
    server.stop().await;
}

/// A commit's time grows with the bytes a session changed: a hibernation whose commit takes
/// longer than `docker.timeout_seconds` (the bound of every other engine call) still succeeds.
#[tokio::test]
async fn a_commit_longer_than_the_engine_timeout_still_hibernates() {
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
    let server =
        Server::start_with(|config| config.docker.timeout_seconds = TIMEOUT.as_secs()).await;
    let client = &server.client;
    let session = default_session_with(
        client,
        "head -c 600000000 /dev/urandom > /home/user/large.bin && sha256sum /home/user/large.bin > /home/user/large.sum",
    )
    .await;
    let started = std::time::Instant::now();
    let asleep = client.hibernate_session(&session.id).await.unwrap();
    assert_eq!(asleep.state, SessionState::Hibernated);
    assert!(
        started.elapsed() > TIMEOUT,
        "the commit took {:?}, within the engine timeout: this test needs a longer one",
        started.elapsed()
    );
    let checked = client
        .exec(&session.id, &sh("sha256sum -c /home/user/large.sum"))
        .await
        .unwrap();
    assert_eq!(checked.exit_code, Some(0), "{}", checked.stderr);
    client.delete_session(&session.id).await.unwrap();
    server.stop().await;
}

/// Every image on the engine, tagged or not, that was committed from `session_id`.
fn images_of_session(session_id: &str) -> Vec<String> {
    let filter = format!("label=berth.session={session_id}");
    docker(&["images", "--all", "--quiet", "--filter", &filter])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A server whose reconcile looks at the engine every second.
async fn eagerly_reconciling_server() -> Server {
    Server::start_with(|config| config.lifecycle.reconcile_interval_seconds = 1).await
}

/// Deleting a named snapshot a fork still runs on only takes its tag; the untagged image is
/// left alone while the fork uses it and swept once the fork is gone, not kept forever.
#[tokio::test]
async fn an_untagged_snapshot_is_swept_once_no_session_runs_on_it() {
    let server = eagerly_reconciling_server().await;
    let client = &server.client;
    let origin = default_session_with(client, "echo forked > /home/user/notes").await;
    let snapshot = client.create_snapshot(&origin.id, "before").await.unwrap();
    let fork = client
        .create_session(&CreateSession {
            from_snapshot: Some(snapshot.id.clone()),
            ..CreateSession::default()
        })
        .await
        .unwrap();
    client.delete_snapshot(&snapshot.id).await.unwrap();
    client.delete_session(&origin.id).await.unwrap();
    assert_eq!(
        images_of_session(&origin.id).len(),
        1,
        "the fork runs on it"
    );

    // Reconciles come and go: the fork keeps its image and its files.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let notes = client
        .exec(&fork.id, &sh("cat /home/user/notes"))
        .await
        .unwrap();
    assert_eq!(notes.stdout, "forked\n");
    assert_eq!(images_of_session(&origin.id).len(), 1);

    client.delete_session(&fork.id).await.unwrap();
    let mut left = images_of_session(&origin.id);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = images_of_session(&origin.id);
    }
    assert!(left.is_empty(), "the untagged snapshot stays: {left:?}");
    server.stop().await;
}

/// A commit pauses the session's container; a reconcile that looks meanwhile must see it
/// alive, not start it again (which the engine refuses: the session used to fail).
#[tokio::test]
async fn a_paused_container_is_alive_to_reconcile() {
    let server = eagerly_reconciling_server().await;
    let client = &server.client;
    let session = default_session_with(client, "echo kept > /home/user/notes").await;
    let container = common::container_of(&server, &session.id);
    docker(&["pause", &container]).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let state = client.get_session(&session.id).await.unwrap();
    docker(&["unpause", &container]).unwrap();
    assert_eq!(state.state, SessionState::Running, "{state:?}");
    let notes = client
        .exec(&session.id, &sh("cat /home/user/notes"))
        .await
        .unwrap();
    assert_eq!(notes.stdout, "kept\n");
    client.delete_session(&session.id).await.unwrap();
    server.stop().await;
}
