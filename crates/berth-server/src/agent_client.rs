//! The control plane's side of the agent protocol.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::body::Body;
use berth_proto::{
    agent::{Health, PROTOCOL_VERSION, SECRET_HEADER},
    process::ProcessList,
};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::reach::ContainerConnector;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent did not answer within {0:?}")]
    NotReady(Duration),
    #[error(
        "the agent speaks protocol {found}, this control plane {expected}; rebuild the session image"
    )]
    Version { found: u32, expected: u32 },
    #[error("the agent refused the request: HTTP {0}")]
    Refused(u16),
    #[error("the session's agent does not answer: {0}")]
    Unreachable(String),
    #[error(
        "the session is not reachable: its container has stopped, and its address answers for another session"
    )]
    NotThisSession,
}

#[derive(Debug, Clone)]
pub struct AgentClient {
    http: Client<ContainerConnector, Body>,
}

/// A pooled HTTP/1 client for containers' addresses, on this host or any node
/// ([`crate::reach`]): no Nagle delay (terminal keystrokes are single bytes), and a bound on
/// connecting so a dead address fails fast.
pub fn container_network_client(connect_timeout: Duration) -> Client<ContainerConnector, Body> {
    Client::builder(TokioExecutor::new()).build(ContainerConnector {
        timeout: connect_timeout,
    })
}

/// A pooled HTTP/1 client for other services by name or address (a registry, another
/// instance), without Nagle's delay and with a bound on connecting.
pub fn http_client(connect_timeout: Duration) -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new()).build(connector)
}

impl Default for AgentClient {
    fn default() -> Self {
        Self {
            http: container_network_client(Duration::from_secs(1)),
        }
    }
}

impl AgentClient {
    /// Polls the agent's health until it answers with our protocol version or `timeout` passes.
    /// A fresh container's agent is usually up within milliseconds, so the first retries are
    /// quick and later ones back off.
    pub async fn wait_ready(
        &self,
        addr: SocketAddr,
        secret: &str,
        timeout: Duration,
    ) -> Result<Health, AgentError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.health(addr, secret).await {
                Ok(Some(health)) if health.protocol == PROTOCOL_VERSION => return Ok(health),
                Ok(Some(health)) => {
                    return Err(AgentError::Version {
                        found: health.protocol,
                        expected: PROTOCOL_VERSION,
                    });
                }
                Err(err @ AgentError::Refused(_)) => return Err(err),
                Ok(None) | Err(_) => {}
            }
            if Instant::now() + pause > deadline {
                return Err(AgentError::NotReady(timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Confirms that the container at `addr` is still the session's: its agent answers with the
    /// session's secret. A stopped container's address may be handed to another session, whose
    /// agent refuses this secret, so whatever is forwarded to that address after this check
    /// reaches the session it was meant for. On a kept-alive connection it costs one round trip.
    pub async fn confirm(&self, addr: SocketAddr, secret: &str) -> Result<(), AgentError> {
        match self.health(addr, secret).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(AgentError::Unreachable(
                "no answer to its health check".into(),
            )),
            Err(AgentError::Refused(401)) => Err(AgentError::NotThisSession),
            Err(err) => Err(err),
        }
    }

    /// Whether a background process started with `keepalive` still runs in the session.
    pub async fn runs_keepalive_process(
        &self,
        addr: SocketAddr,
        secret: &str,
    ) -> Result<bool, AgentError> {
        let listed = self.get_json::<ProcessList>(addr, secret, "/processes");
        let list = tokio::time::timeout(Duration::from_secs(2), listed)
            .await
            .map_err(|_| AgentError::Unreachable("no answer within 2 s".into()))??;
        Ok(list
            .processes
            .iter()
            .any(|process| process.keepalive && process.running))
    }

    /// What the agent's journal keeps (`berth-agent`'s `journal.rs`), until
    /// [`ack_journal`](Self::ack_journal). The agent of an older image hands its journal over
    /// once instead (`POST /journal/take`: no `boot`); one older still has none to give.
    pub async fn read_journal(
        &self,
        addr: SocketAddr,
        secret: &str,
    ) -> Result<berth_proto::agent::Journal, AgentError> {
        let read = async {
            for (method, path) in [("GET", "/journal"), ("POST", "/journal/take")] {
                let request = hyper::Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .map_err(|e| AgentError::Unreachable(e.to_string()))?;
                let response = self.send(addr, secret, request).await?;
                if response.status() != hyper::StatusCode::NOT_FOUND {
                    return json_answer(response).await;
                }
            }
            Ok(berth_proto::agent::Journal {
                boot: String::new(),
                acked: 0,
                entries: Vec::new(),
                dropped: 0,
            })
        };
        tokio::time::timeout(Duration::from_secs(2), read)
            .await
            .map_err(|_| AgentError::Unreachable("no answer within 2 s".into()))?
    }

    /// Tells the agent its journal's entries up to `ack.seq` are in the timeline.
    pub async fn ack_journal(
        &self,
        addr: SocketAddr,
        secret: &str,
        ack: &berth_proto::agent::JournalAck,
    ) -> Result<(), AgentError> {
        let request = json_request(hyper::Method::POST, "/journal/ack", ack)?;
        let acked = self.send_expecting_success(addr, secret, request);
        tokio::time::timeout(Duration::from_secs(2), acked)
            .await
            .map_err(|_| AgentError::Unreachable("no answer within 2 s".into()))?
    }

    /// `Ok(None)` while the agent cannot be reached yet.
    async fn health(&self, addr: SocketAddr, secret: &str) -> Result<Option<Health>, AgentError> {
        let request = hyper::Request::get(format!("http://{addr}/health"))
            .header(SECRET_HEADER, secret)
            .body(Body::empty())
            .map_err(|_| AgentError::Refused(0))?;
        let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(2), self.http.request(request)).await
        else {
            return Ok(None);
        };
        if !response.status().is_success() {
            return Err(AgentError::Refused(response.status().as_u16()));
        }
        let Ok(body) = response.into_body().collect().await else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&body.to_bytes()).ok())
    }

    /// Sends one request to the agent with the session secret and hands back its answer as it
    /// streams, status and body untouched (the agent's errors are already Berth's JSON errors).
    pub async fn send(
        &self,
        addr: SocketAddr,
        secret: &str,
        mut request: hyper::Request<Body>,
    ) -> Result<hyper::Response<Body>, AgentError> {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| AgentError::Unreachable(e.to_string()))?;
        *request.uri_mut() = uri;
        request.headers_mut().insert(
            SECRET_HEADER,
            secret
                .parse()
                .map_err(|_| AgentError::Unreachable("invalid secret".into()))?,
        );
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| AgentError::Unreachable(e.to_string()))?;
        Ok(response.map(Body::new))
    }

    /// The TCP ports servers in the session listen on.
    pub async fn ports(
        &self,
        addr: SocketAddr,
        secret: &str,
    ) -> Result<berth_proto::ports::PortList, AgentError> {
        self.get_json(addr, secret, "/ports").await
    }

    /// A `GET` of the agent's that answers JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        addr: SocketAddr,
        secret: &str,
        path: &str,
    ) -> Result<T, AgentError> {
        let request = hyper::Request::get(path)
            .body(Body::empty())
            .map_err(|e| AgentError::Unreachable(e.to_string()))?;
        json_answer(self.send(addr, secret, request).await?).await
    }

    /// Unpacks a tar into `dir` inside the session.
    pub async fn upload_archive(
        &self,
        addr: SocketAddr,
        secret: &str,
        dir: &str,
        tar: Vec<u8>,
    ) -> Result<(), AgentError> {
        let request = hyper::Request::put(format!(
            "/files/archive?path={}",
            crate::proxy::encode_query(dir)
        ))
        .body(Body::from(tar))
        .map_err(|e| AgentError::Unreachable(e.to_string()))?;
        self.send_expecting_success(addr, secret, request).await
    }

    /// Sets the variables every process the agent starts from now on gets.
    pub async fn set_env(
        &self,
        addr: SocketAddr,
        secret: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), AgentError> {
        let request = json_request(hyper::Method::PUT, "/env", env)?;
        self.send_expecting_success(addr, secret, request).await
    }

    async fn send_expecting_success(
        &self,
        addr: SocketAddr,
        secret: &str,
        request: hyper::Request<Body>,
    ) -> Result<(), AgentError> {
        let response = self.send(addr, secret, request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(AgentError::Refused(response.status().as_u16()))
        }
    }
}

/// A workspace seed or a lab's starter files as a tar: a `.tar` file as it is, or a
/// directory's contents at the archive's root. They are small, so the archive is held in
/// memory.
pub fn directory_archive(seed: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if seed.is_file() {
        return std::fs::read(seed);
    }
    let dir = seed;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

/// A request to the agent with `value` as its JSON body.
fn json_request(
    method: hyper::Method,
    path: &str,
    value: &impl serde::Serialize,
) -> Result<hyper::Request<Body>, AgentError> {
    let body = serde_json::to_vec(value).map_err(|e| AgentError::Unreachable(e.to_string()))?;
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .map_err(|e| AgentError::Unreachable(e.to_string()))
}

/// A successful answer's JSON body.
async fn json_answer<T: serde::de::DeserializeOwned>(
    response: hyper::Response<Body>,
) -> Result<T, AgentError> {
    if !response.status().is_success() {
        return Err(AgentError::Refused(response.status().as_u16()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| AgentError::Unreachable(e.to_string()))?;
    serde_json::from_slice(&body.to_bytes()).map_err(|e| AgentError::Unreachable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::directory_archive;

    #[test]
    fn a_seed_is_a_directory_packed_or_a_tar_passed_through() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("case")).unwrap();
        std::fs::write(dir.path().join("case/brief.txt"), "facts").unwrap();
        let packed = directory_archive(dir.path()).unwrap();
        let mut archive = tar::Archive::new(packed.as_slice());
        let mut found = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().ends_with("case/brief.txt") {
                entry.read_to_string(&mut found).unwrap();
            }
        }
        assert_eq!(found, "facts");

        let file = dir.path().join("seed.tar");
        std::fs::write(&file, &packed).unwrap();
        assert_eq!(directory_archive(&file).unwrap(), packed);
    }
}
