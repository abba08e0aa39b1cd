//! Relays work to a session's agent over the container network: HTTP requests with their bodies
//! streaming both ways, and WebSockets frame by frame. Nothing here buffers a whole body, so a
//! 1 GB upload passes with bounded memory.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::ws::{self, WebSocket},
    http::{HeaderMap, Method, header},
    response::{IntoResponse, Response},
};
use berth_proto::{ErrorBody, ErrorCode, agent::SECRET_HEADER};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::{agent_client::AgentClient, api::ApiError, sessions::Tap};

/// The largest message (and frame) a client may send on a relayed WebSocket: keystrokes,
/// pastes and stdin come in far smaller pieces, and the relay reads a whole message before
/// passing it on, so without a bound every connection could hold axum's default of 64 MiB
/// (and the session's agent as much again). Past it the connection is closed.
const MAX_CLIENT_MESSAGE: usize = 1 << 20;

/// A session's agent answers at once or is not there: its container has stopped.
const AGENT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Headers that describe a body and pass through the relay; everything else stays behind
/// (above all the caller's `Authorization`).
const BODY_HEADERS: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_DISPOSITION,
];

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s[2..].to_owned())
        .unwrap_or_default()
}

/// Sends `method path_and_query` with `body` to the agent and streams its answer back.
pub async fn http(
    agent: &AgentClient,
    (addr, secret): (SocketAddr, String),
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut request = hyper::Request::builder().method(method).uri(path_and_query);
    for name in BODY_HEADERS {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request.body(body).map_err(ApiError::internal)?;
    let response = agent.send(addr, &secret, request).await?;
    let (parts, body) = response.into_parts();
    // A session's files are served on Berth's own origin: the browser must take them as the
    // type said (bytes, JSON), never sniff one into a page or a script that runs there.
    let mut relayed = Response::builder()
        .status(parts.status)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    for name in BODY_HEADERS {
        if let Some(value) = parts.headers.get(&name) {
            relayed = relayed.header(name, value);
        }
    }
    relayed.body(body).map_err(ApiError::internal)
}

fn unreachable(err: impl std::fmt::Display) -> ApiError {
    ApiError::coded(
        ErrorCode::SessionFailed,
        format!("the session's agent does not answer: {err}"),
    )
}

/// A WebSocket route's upgrade, taken without judging it: the handler authenticates the caller
/// first, so a request without a token hears 401 whatever else is wrong with it, and an
/// upgrade that is not one becomes a JSON error only then ([`websocket`]).
pub type WebSocketRequest =
    Result<axum::extract::WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection>;

/// Opens the WebSocket at `path_and_query` on the agent first, so that an agent refusal (an
/// unknown terminal, say) reaches the client as a normal error; then upgrades the client and
/// relays frames both ways until either side closes.
pub async fn websocket(
    endpoint: (SocketAddr, String),
    path_and_query: &str,
    upgrade: WebSocketRequest,
    tap: Tap,
) -> Result<Response, ApiError> {
    websocket_then(
        endpoint,
        path_and_query,
        upgrade,
        tap,
        std::future::ready(()),
    )
    .await
}

/// [`websocket`], then `after` once the relay has ended (a terminal's commands collected).
pub async fn websocket_then(
    endpoint: (SocketAddr, String),
    path_and_query: &str,
    upgrade: WebSocketRequest,
    tap: Tap,
    after: impl Future<Output = ()> + Send + 'static,
) -> Result<Response, ApiError> {
    let upgrade = upgrade?
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    let agent = agent_websocket(endpoint, path_and_query).await?;
    Ok(upgrade
        .on_upgrade(move |client| async move {
            relay(client, agent, tap).await;
            after.await;
        })
        .into_response())
}

/// Opens the WebSocket at `path_and_query` on the agent; its refusals come back as its errors.
pub async fn agent_websocket(
    (addr, secret): (SocketAddr, String),
    path_and_query: &str,
) -> Result<AgentSocket, ApiError> {
    let mut request = format!("ws://{addr}{path_and_query}")
        .into_client_request()
        .map_err(unreachable)?;
    request.headers_mut().insert(
        SECRET_HEADER,
        secret.parse().map_err(|_| unreachable("invalid secret"))?,
    );
    let stream = crate::reach::dial(addr, AGENT_CONNECT_TIMEOUT)
        .await
        .map_err(unreachable)?;
    match tokio_tungstenite::client_async_with_config(request, stream, None).await {
        Ok((agent, _)) => Ok(agent),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response.body().as_deref().unwrap_or_default();
            Err(match serde_json::from_slice::<ErrorBody>(body) {
                Ok(error) => ApiError::coded(error.error.code, error.error.message),
                Err(_) => unreachable(format!("HTTP {status}")),
            })
        }
        Err(err) => Err(unreachable(err)),
    }
}

pub type AgentSocket = tokio_tungstenite::WebSocketStream<crate::reach::Stream>;

async fn relay(client: WebSocket, agent: AgentSocket, tap: Tap) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_agent, mut from_agent) = agent.split();
    let Tap { input, mut notices } = tap;
    let upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            // Pings and closes are the connection's, not the user's.
            if matches!(message, ws::Message::Text(_) | ws::Message::Binary(_)) {
                input.seen();
            }
            let Some(message) = to_tungstenite(message) else {
                continue;
            };
            let closing = message.is_close();
            if to_agent.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = to_agent.close().await;
    };
    let downstream = async {
        loop {
            let message = tokio::select! {
                message = from_agent.next() => match message {
                    Some(Ok(message)) => message,
                    _ => break,
                },
                notice = notices.next() => {
                    let text = serde_json::to_string(&notice).unwrap_or_default();
                    tungstenite::Message::text(text)
                }
            };
            let Some(message) = to_axum(message) else {
                continue;
            };
            let closing = matches!(message, ws::Message::Close(_));
            if to_client.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = to_client.close().await;
    };
    // When one direction ends, the other still gets to finish: a client's last frame may hit an
    // agent that has just closed, while the agent's final frames (a process's `end`) are still
    // on their way to the client. Each side has closed its peer by then, so the other ends soon;
    // the grace period only bounds a peer that never answers the close.
    tokio::pin!(upstream, downstream);
    tokio::select! {
        () = &mut upstream => { let _ = tokio::time::timeout(CLOSE_GRACE, downstream).await; }
        () = &mut downstream => { let _ = tokio::time::timeout(CLOSE_GRACE, upstream).await; }
    }
}

/// How long the second direction of a relay may take to finish once the first has.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn to_tungstenite(message: ws::Message) -> Option<tungstenite::Message> {
    Some(match message {
        ws::Message::Text(text) => tungstenite::Message::text(text.as_str()),
        ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        ws::Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
        ws::Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
        ws::Message::Close(_) => tungstenite::Message::Close(None),
    })
}

fn to_axum(message: tungstenite::Message) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
        tungstenite::Message::Ping(bytes) => ws::Message::Ping(bytes),
        tungstenite::Message::Pong(bytes) => ws::Message::Pong(bytes),
        tungstenite::Message::Close(_) => ws::Message::Close(None),
        tungstenite::Message::Frame(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            super::encode_query("/home/user/a b&c.txt"),
            "%2Fhome%2Fuser%2Fa+b%26c.txt"
        );
    }
}
