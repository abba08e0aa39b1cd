//! Which TCP ports servers in the session listen on, read from `/proc/net/tcp{,6}` (the
//! container's own network namespace), and a WebSocket of changes for previews.

use std::{collections::BTreeSet, time::Duration};

use axum::{
    Json,
    extract::{
        WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    response::Response,
};
use berth_proto::{
    agent::AGENT_PORT,
    ports::{ListeningPort, PortList, SessionEvent},
};

/// How often the watch looks again: a server that just started shows up within this.
const POLL: Duration = Duration::from_millis(250);

/// The kernel's TCP state number for a listening socket.
const TCP_LISTEN: &str = "0A";

/// Ports listening on an address the control plane can reach, in a `/proc/net/tcp`-format
/// table. Left out: the agent's own port, and loopback listeners, which the proxy cannot reach
/// (Docker's embedded DNS server among them, on 127.0.0.11).
pub fn parse_listening(table: &str) -> BTreeSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (address, port) = fields.nth(1)?.split_once(':')?;
            let state = fields.nth(1)?;
            let port = u16::from_str_radix(port, 16).ok()?;
            (state == TCP_LISTEN && port != AGENT_PORT && !is_loopback(address)).then_some(port)
        })
        .collect()
}

/// Whether a `/proc/net/tcp{,6}` address (hex, in the kernel's byte order) is loopback:
/// 127.0.0.0/8, `::1`, or 127.x mapped into IPv6.
fn is_loopback(hex: &str) -> bool {
    const V6_LOOPBACK: &str = "00000000000000000000000001000000";
    const V4_MAPPED: &str = "0000000000000000FFFF0000";
    match hex.len() {
        8 => hex.ends_with("7F"),
        32 => hex == V6_LOOPBACK || (hex.starts_with(V4_MAPPED) && hex.ends_with("7F")),
        _ => false,
    }
}

pub fn listening() -> BTreeSet<u16> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| parse_listening(&table))
        .collect()
}

/// `GET /ports`
pub async fn list() -> Json<PortList> {
    let ports = tokio::task::spawn_blocking(listening)
        .await
        .unwrap_or_default();
    Json(PortList {
        ports: ports
            .into_iter()
            .map(|port| ListeningPort {
                port,
                preview_path: None,
            })
            .collect(),
    })
}

/// `GET /ports/watch`: a `port-open` for each port listening now, then one event per change.
pub async fn watch(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(stream_changes)
}

async fn stream_changes(mut socket: WebSocket) {
    let mut known = BTreeSet::new();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = tokio::task::spawn_blocking(listening).await.unwrap_or_default();
                let opened = now.difference(&known).map(|&port| SessionEvent::PortOpen { port });
                let closed = known.difference(&now).map(|&port| SessionEvent::PortClosed { port });
                for event in opened.chain(closed).collect::<Vec<_>>() {
                    let text = serde_json::to_string(&event).unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                known = now;
            }
            message = socket.recv() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reachable_listening_sockets_count_and_the_agent_is_left_out() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1
   1: 00000000:1E01 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1
   2: 0100007F:0BB8 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 3 1
   3: 00000000000000000000000000000000:0BB9 00000000000000000000000000000000:0000 0A 0 0 0 1000 0 4 1
   4: 0B00007F:87D1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1
   5: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6 1
   6: 00000000000000000000000001000000:1F42 00000000000000000000000000000000:0000 0A 0 0 0 1000 0 7 1
   7: AC120005:1F43 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 8 1";
        assert_eq!(
            parse_listening(table).into_iter().collect::<Vec<_>>(),
            vec![3001, 8000, 8003]
        );
    }
}
