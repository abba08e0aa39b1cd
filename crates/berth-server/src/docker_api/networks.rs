//! A session's Docker networks: where its containers run. Each is a bridge of its own
//! (`berth-k…`, covered by the firewall's child-network rules), internal (nothing is routed in
//! or out), on a /27 of `docker.child_network_pool`, and joined by the session's own container:
//! its containers reach each other and the session, and nothing else. `default` is made on
//! first use; `docker network create` (and `docker-compose`, one per project) makes more, up to
//! `docker.max_networks`.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    policy::{self, DEFAULT_NETWORK, DockerApiError},
    serve::SessionApi,
};
use crate::networks::Cidr;

/// Subnets tried before a create gives up: another control plane on the same engine may take
/// the one this one chose, and a subnet the engine is still making a network on is reserved
/// before the network is listed, so each refused subnet is passed over rather than re-chosen.
const SUBNET_ATTEMPTS: usize = 32;

impl SessionApi {
    /// The engine's name of a network the session names, and the network: its own only.
    pub(super) async fn own_network(&self, name: &str) -> Result<(String, Value), DockerApiError> {
        for candidate in [self.scope.scoped_name(name), name.to_owned()] {
            if let Some(network) = self
                .engine
                .get_json(&format!("/networks/{candidate}"))
                .await?
                && self.scope.owns(&network["Labels"])
            {
                let engine_name = network["Name"].as_str().unwrap_or(&candidate).to_owned();
                return Ok((engine_name, network));
            }
        }
        Err(DockerApiError::NotFound {
            kind: "network",
            name: name.to_owned(),
        })
    }

    /// The engine's name of a network a create joins: the default one is made on first use.
    pub(super) async fn network_for_create(&self, name: &str) -> Result<String, DockerApiError> {
        match self.own_network(name).await {
            Err(DockerApiError::NotFound { .. }) if name == DEFAULT_NETWORK => {
                match self
                    .create_network(json!({ "Name": DEFAULT_NETWORK }))
                    .await
                {
                    Ok(_) => Ok(self.scope.default_network()),
                    // Made by a create running beside this one.
                    Err(DockerApiError::Conflict(_)) => Ok(self.own_network(name).await?.0),
                    Err(err) => Err(err),
                }
            }
            found => Ok(found?.0),
        }
    }

    /// Makes a network as the session's on the next free subnet, and joins the session to it.
    /// The engine's answer to the create.
    pub(super) async fn create_network(&self, asked: Value) -> Result<Value, DockerApiError> {
        // One create at a time on this control plane: two at once could pass the count below
        // together, or choose one subnet; the engine refuses an overlapping subnet from
        // anywhere else, and the next is tried.
        let _choosing = self.network_lock.lock().await;
        let count = self.list_own("networks", false).await?.len();
        if count >= self.scope.max_networks as usize {
            return Err(DockerApiError::Quota(format!(
                "this session has {count} networks, its most (docker.max_networks); remove one \
                 with `docker network rm` first"
            )));
        }
        let mut refused = Vec::new();
        for _ in 0..SUBNET_ATTEMPTS {
            let subnet = self.free_subnet(&refused).await?;
            let mut body = asked.clone();
            policy::check_network_create(&mut body, &self.scope, &subnet.to_string())?;
            let (status, answer) = self
                .engine
                .call(Method::POST, "/networks/create", Some(&body))
                .await?;
            match status {
                status if status.is_success() => {
                    let name = body["Name"].as_str().unwrap_or_default();
                    self.join_session(name).await?;
                    return Ok(answer);
                }
                StatusCode::CONFLICT => {
                    return Err(DockerApiError::Conflict(format!(
                        "network with name {} already exists",
                        asked["Name"].as_str().unwrap_or_default()
                    )));
                }
                _ if engine_message(&answer).contains("overlaps") => refused.push(subnet),
                status => {
                    return Err(DockerApiError::Engine(format!(
                        "creating network: {status} {}",
                        engine_message(&answer)
                    )));
                }
            }
        }
        Err(DockerApiError::Engine(
            "no free subnet for a network (docker.child_network_pool is taken)".into(),
        ))
    }

    /// Connects the session's own container to one of its networks, unless it is already.
    pub(super) async fn join_session(&self, network: &str) -> Result<(), DockerApiError> {
        let body = json!({ "Container": self.scope.session_container() });
        let (status, answer) = self
            .engine
            .call(
                Method::POST,
                &format!("/networks/{network}/connect"),
                Some(&body),
            )
            .await?;
        if status.is_success() || engine_message(&answer).contains("already exists") {
            return Ok(());
        }
        Err(DockerApiError::Engine(format!(
            "joining the session to network {network}: {status} {}",
            engine_message(&answer)
        )))
    }

    /// Removes one of the session's networks once none of its containers is on it; the
    /// session's own container leaves it first.
    pub(super) async fn remove_network(&self, name: &str) -> Result<(), DockerApiError> {
        let (engine_name, network) = self.own_network(name).await?;
        let session = self.scope.session_container();
        let others = network["Containers"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, c)| c["Name"] != session.as_str())
            .count();
        if others > 0 {
            return Err(DockerApiError::Conflict(format!(
                "error while removing network: network {name} has active endpoints; remove \
                 its containers or `docker network disconnect` them first"
            )));
        }
        let body = json!({ "Container": session, "Force": true });
        self.engine
            .call(
                Method::POST,
                &format!("/networks/{engine_name}/disconnect"),
                Some(&body),
            )
            .await?;
        let (status, answer) = self
            .engine
            .call(Method::DELETE, &format!("/networks/{engine_name}"), None)
            .await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        // Still in use after all (a container joined in between): the session stays on it.
        self.join_session(&engine_name).await?;
        Err(DockerApiError::Conflict(engine_message(&answer).to_owned()))
    }

    /// The first subnet of the pool no network on the engine overlaps, and the engine has not
    /// `refused` this create.
    async fn free_subnet(&self, refused: &[Cidr]) -> Result<Cidr, DockerApiError> {
        let networks = self.engine.get_json("/networks").await?.unwrap_or_default();
        let taken: Vec<Cidr> = networks
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["IPAM"]["Config"].as_array().cloned().unwrap_or_default())
            .filter_map(|config| config["Subnet"].as_str()?.parse().ok())
            .chain(refused.iter().copied())
            .collect();
        crate::networks::child_subnets(&self.network_pool)
            .find(|subnet| !taken.iter().any(|t| t.overlaps(subnet)))
            .ok_or_else(|| {
                DockerApiError::Quota(
                    "every subnet of docker.child_network_pool is in use; remove a network, or \
                     ask the operator for a larger pool"
                        .into(),
                )
            })
    }
}

/// The engine's `{"message": ...}`, or nothing.
fn engine_message(answer: &Value) -> &str {
    answer["message"].as_str().unwrap_or_default()
}
