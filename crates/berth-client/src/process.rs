//! Buffered commands and terminals inside a session; streamed processes are in `processes.rs`.

use berth_proto::process::{
    ExecRequest, ExecResult, TerminalClientMessage, TerminalQuery, TerminalServerMessage,
};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use reqwest::Method;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};

use crate::{Client, ClientError, api_error};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What a terminal sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalEvent {
    Output(Vec<u8>),
    Exit(Option<i32>),
}

/// An attached terminal. `split` it to read and write from separate tasks.
#[derive(Debug)]
pub struct Terminal {
    /// Reattach with this id to get the scrollback back.
    pub id: String,
    socket: Socket,
}

/// The writing half of a terminal.
#[derive(Debug)]
pub struct TerminalInput(SplitSink<Socket, Message>);

/// The reading half of a terminal.
#[derive(Debug)]
pub struct TerminalOutput(SplitStream<Socket>);

impl Terminal {
    pub fn split(self) -> (TerminalInput, TerminalOutput) {
        let (sink, stream) = self.socket.split();
        (TerminalInput(sink), TerminalOutput(stream))
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.socket
            .send(Message::binary(bytes.to_vec()))
            .await
            .map_err(ws_error)
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), ClientError> {
        self.socket
            .send(resize_message(cols, rows))
            .await
            .map_err(ws_error)
    }

    /// The next output or the exit; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<TerminalEvent> {
        next_terminal_event(&mut self.socket).await
    }
}

impl TerminalInput {
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.0
            .send(Message::binary(bytes.to_vec()))
            .await
            .map_err(ws_error)
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), ClientError> {
        self.0
            .send(resize_message(cols, rows))
            .await
            .map_err(ws_error)
    }

    pub async fn close(&mut self) {
        let _ = self.0.close().await;
    }
}

impl TerminalOutput {
    pub async fn next(&mut self) -> Option<TerminalEvent> {
        next_terminal_event(&mut self.0).await
    }
}

fn resize_message(cols: u16, rows: u16) -> Message {
    Message::text(
        serde_json::to_string(&TerminalClientMessage::Resize { cols, rows }).unwrap_or_default(),
    )
}

async fn next_terminal_event<S>(socket: &mut S) -> Option<TerminalEvent>
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await? {
            Ok(Message::Binary(bytes)) => return Some(TerminalEvent::Output(bytes.to_vec())),
            Ok(Message::Text(text)) => {
                if let Ok(TerminalServerMessage::Exit { code }) = serde_json::from_str(&text) {
                    return Some(TerminalEvent::Exit(code));
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

pub(crate) fn ws_error(err: tungstenite::Error) -> ClientError {
    ClientError::WebSocket(err.to_string())
}

impl Client {
    /// Runs a command to its end and returns its exit code and output.
    pub async fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecResult, ClientError> {
        self.expect(
            Method::POST,
            &Self::session_path(id, "exec"),
            &[],
            Some(request),
        )
        .await
    }

    /// A single-use ticket for this session's WebSockets (what browsers use instead of a header).
    pub async fn ticket(&self, id: &str) -> Result<String, ClientError> {
        let issued: serde_json::Value = self
            .expect(
                Method::POST,
                &Self::session_path(id, "tickets"),
                &[],
                None::<&()>,
            )
            .await?;
        Ok(issued["ticket"].as_str().unwrap_or_default().to_owned())
    }

    pub(crate) async fn websocket(&self, route: &str) -> Result<Socket, ClientError> {
        let url = format!("{}{route}", self.base_url().replacen("http", "ws", 1));
        let mut request = url.as_str().into_client_request().map_err(ws_error)?;
        let auth = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| ClientError::InvalidUrl(url.clone()))?;
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, auth);
        match tokio_tungstenite::connect_async_with_config(request, None, true).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                Err(api_error(response.status(), true, &body))
            }
            Err(err) => Err(ws_error(err)),
        }
    }

    /// Opens a new terminal, or reattaches to `query.terminal_id` (its scrollback comes first).
    pub async fn terminal(&self, id: &str, query: &TerminalQuery) -> Result<Terminal, ClientError> {
        let query = terminal_query_string(query);
        let mut socket = self
            .websocket(&format!("{}?{query}", Self::session_path(id, "terminal")))
            .await?;
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message
                && let Ok(TerminalServerMessage::Ready { terminal_id }) =
                    serde_json::from_str(&text)
            {
                return Ok(Terminal {
                    id: terminal_id,
                    socket,
                });
            }
        }
        Err(ClientError::WebSocket(
            "the terminal closed before it was ready".into(),
        ))
    }
}

fn terminal_query_string(query: &TerminalQuery) -> String {
    let mut pairs = Vec::new();
    if let Some(id) = &query.terminal_id {
        pairs.push(format!("terminal_id={}", crate::encode(id)));
    }
    if query.readonly {
        pairs.push("readonly=true".to_owned());
    }
    if let Some(cols) = query.cols {
        pairs.push(format!("cols={cols}"));
    }
    if let Some(rows) = query.rows {
        pairs.push(format!("rows={rows}"));
    }
    pairs.join("&")
}
