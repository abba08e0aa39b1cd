//! Ports a session's Docker containers publish into it (`-p 8080:80`): for every running
//! container with the `berth.ports` label, a relay its session's agent serves
//! ([`berth_proto::docker::PortRelay`]), written to the relays file in the session's
//! directory, which its container mounts. Written at once after a call that starts or stops a
//! container, and every [`super::PUBLISH_PERIOD`] for the containers that stop by themselves.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use berth_proto::docker::{PORT_RELAYS_FILE, PortRelay};
use serde_json::{Value, json};

use super::{
    Engine,
    policy::{DockerApiError, PublishedPort},
    session_dir,
};
use crate::runtime::labels;

/// Rewrites the relays file of `session`, or of every session with a directory under `dir`,
/// from what runs now. A file only changes when its relays do.
pub async fn publish(
    engine: &Engine,
    dir: &Path,
    instance: &str,
    session: Option<&str>,
) -> Result<(), DockerApiError> {
    let mut wanted = vec![
        format!("{}={instance}", labels::PARENT_INSTANCE),
        labels::PUBLISHED_PORTS.to_owned(),
    ];
    if let Some(session) = session {
        wanted.push(format!("{}={session}", labels::PARENT));
    }
    let filters = json!({ "label": wanted, "status": ["running"] }).to_string();
    let query = serde_urlencoded::to_string([("filters", filters.as_str())])
        .map_err(|e| DockerApiError::Invalid(e.to_string()))?;
    let running = engine
        .get_json(&format!("/containers/json?{query}"))
        .await?
        .unwrap_or_default();
    let mut relays = relays_by_session(&running);
    let sessions: Vec<String> = match session {
        Some(session) => vec![session.to_owned()],
        None => std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect(),
    };
    for session in sessions {
        let list = relays.remove(&session).unwrap_or_default();
        write_if_changed(&session_dir(dir, &session), &list);
    }
    Ok(())
}

/// The relays each session's running containers ask for, in a `GET /containers/json` answer.
fn relays_by_session(containers: &Value) -> BTreeMap<String, Vec<PortRelay>> {
    let mut relays: BTreeMap<String, Vec<PortRelay>> = BTreeMap::new();
    for container in containers.as_array().into_iter().flatten() {
        let labels = &container["Labels"];
        let Some(session) = labels[labels::PARENT].as_str() else {
            continue;
        };
        // On any of the session's networks: the session is on each of them.
        let own = format!("{session}_");
        let address = container["NetworkSettings"]["Networks"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| name.starts_with(&own))
            .find_map(|(_, endpoint)| endpoint["IPAddress"].as_str()?.parse::<IpAddr>().ok());
        let Some(address) = address else {
            continue;
        };
        let ports = PublishedPort::parse_label(
            labels[labels::PUBLISHED_PORTS].as_str().unwrap_or_default(),
        );
        relays
            .entry(session.to_owned())
            .or_default()
            .extend(ports.into_iter().map(|p| PortRelay {
                port: p.session_port,
                target: SocketAddr::new(address, p.container_port),
            }));
    }
    for list in relays.values_mut() {
        list.sort();
    }
    relays
}

/// Replaces the file whole (a rename), so the agent never reads half of it; only in a
/// directory that exists, which an ended session's does not.
fn write_if_changed(session_dir: &Path, relays: &[PortRelay]) {
    if !session_dir.is_dir() {
        return;
    }
    let path = session_dir.join(PORT_RELAYS_FILE);
    let Ok(text) = serde_json::to_vec(relays) else {
        return;
    };
    let current = std::fs::read(&path).unwrap_or_else(|_| b"[]".to_vec());
    if current == text {
        return;
    }
    let staged = session_dir.join(format!(".{PORT_RELAYS_FILE}.new"));
    let written = std::fs::write(&staged, &text).and_then(|()| std::fs::rename(&staged, &path));
    if let Err(err) = written {
        tracing::warn!(dir = %session_dir.display(), %err, "docker api: cannot write the published ports");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_containers_become_relays_to_their_address_on_the_sessions_network() {
        let listed = json!([
            {
                "Labels": {"berth.parent": "s1", "berth.ports": "8080:80,9000:9000"},
                "NetworkSettings": {"Networks": {"s1_default": {"IPAddress": "10.213.0.2"}}}
            },
            {
                "Labels": {"berth.parent": "s2", "berth.ports": "8080:80"},
                "NetworkSettings": {"Networks": {
                    "bridge": {"IPAddress": "172.17.0.5"},
                    "s2_app_default": {"IPAddress": "10.213.0.34"}
                }}
            },
            // Not on a network of its session's (`--network none`): nothing to relay to.
            {
                "Labels": {"berth.parent": "s3", "berth.ports": "8080:80"},
                "NetworkSettings": {"Networks": {}}
            }
        ]);
        let relays = relays_by_session(&listed);
        let relay = |port, target: &str| PortRelay {
            port,
            target: target.parse().unwrap(),
        };
        assert_eq!(
            relays["s1"],
            [relay(8080, "10.213.0.2:80"), relay(9000, "10.213.0.2:9000")]
        );
        assert_eq!(relays["s2"], [relay(8080, "10.213.0.34:80")]);
        assert!(!relays.contains_key("s3"));
    }

    #[test]
    fn the_file_is_written_when_its_relays_change_and_never_for_an_ended_session() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("s1");
        std::fs::create_dir(&session).unwrap();
        let relay = PortRelay {
            port: 8080,
            target: "10.213.0.2:80".parse().unwrap(),
        };
        write_if_changed(&session, std::slice::from_ref(&relay));
        let file = session.join(PORT_RELAYS_FILE);
        let read: Vec<PortRelay> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(read, [relay]);
        write_if_changed(&session, &[]);
        assert_eq!(std::fs::read(&file).unwrap(), b"[]");
        write_if_changed(&dir.path().join("ended"), &[]);
        assert!(!dir.path().join("ended").exists());
    }
}
