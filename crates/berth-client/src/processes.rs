//! Processes with an identity, streamed as they run: foreground (`exec_stream`, ended when the
//! stream is dropped, like `docker exec`) or background (`start_process`, attached by id).

use berth_proto::process::{
    ExecRequest, ProcessEvent, ProcessInfo, ProcessInput, ProcessList, STDERR_TAG, STDOUT_TAG,
    SignalRequest,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Client, ClientError, encode,
    process::{Socket, ws_error},
};

/// What a streamed process sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    End {
        exit_code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
}

/// A process whose output arrives as it is written.
#[derive(Debug)]
pub struct ExecStream {
    /// The process's id in the session: attach, signal and write stdin with it.
    pub id: String,
    pub pid: u32,
    socket: Socket,
}

fn input(message: ProcessInput) -> Message {
    Message::text(serde_json::to_string(&message).unwrap_or_default())
}

impl ExecStream {
    /// Waits for the stream's `start` event.
    async fn started(mut socket: Socket) -> Result<Self, ClientError> {
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            match serde_json::from_str(&text) {
                Ok(ProcessEvent::Start { id, pid, .. }) => return Ok(Self { id, pid, socket }),
                Ok(ProcessEvent::Error { message }) => {
                    let code = berth_proto::ErrorCode::InvalidRequest;
                    return Err(ClientError::Api {
                        status: 400,
                        code,
                        message,
                    });
                }
                _ => {}
            }
        }
        Err(ClientError::WebSocket(
            "the process stream closed before it started".into(),
        ))
    }

    pub async fn write_stdin(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.socket
            .send(Message::binary(bytes.to_vec()))
            .await
            .map_err(ws_error)
    }

    pub async fn close_stdin(&mut self) -> Result<(), ClientError> {
        self.socket
            .send(input(ProcessInput::CloseStdin))
            .await
            .map_err(ws_error)
    }

    /// Resizes the terminal of a process started with `pty`.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), ClientError> {
        self.socket
            .send(input(ProcessInput::Resize { cols, rows }))
            .await
            .map_err(ws_error)
    }

    /// Sends a signal (e.g. 15 for SIGTERM) to the process's whole group.
    pub async fn signal(&mut self, signal: i32) -> Result<(), ClientError> {
        self.socket
            .send(input(ProcessInput::Signal { signal }))
            .await
            .map_err(ws_error)
    }

    /// The next output or the end; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<ExecEvent> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Binary(bytes)) => match bytes.split_first() {
                    Some((&STDOUT_TAG, rest)) => return Some(ExecEvent::Stdout(rest.to_vec())),
                    Some((&STDERR_TAG, rest)) => return Some(ExecEvent::Stderr(rest.to_vec())),
                    _ => {}
                },
                Ok(Message::Text(text)) => {
                    if let Ok(ProcessEvent::End {
                        exit_code,
                        signal,
                        timed_out,
                    }) = serde_json::from_str(&text)
                    {
                        return Some(ExecEvent::End {
                            exit_code,
                            signal,
                            timed_out,
                        });
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

impl Client {
    fn process_path(id: &str, process: &str, rest: &str) -> String {
        Self::session_path(id, &format!("processes/{}{rest}", encode(process)))
    }

    /// Starts a process whose output streams back as it is written; it is killed when the
    /// stream is dropped, like `docker exec`.
    pub async fn exec_stream(
        &self,
        id: &str,
        request: &ExecRequest,
    ) -> Result<ExecStream, ClientError> {
        let mut socket = self
            .websocket(&Self::session_path(id, "exec/stream"))
            .await?;
        let first = serde_json::to_string(request).unwrap_or_default();
        socket.send(Message::text(first)).await.map_err(ws_error)?;
        ExecStream::started(socket).await
    }

    /// Starts a background process: it outlives every client and is listed, attached to,
    /// written to and signalled by its id.
    pub async fn start_process(
        &self,
        id: &str,
        request: &ExecRequest,
    ) -> Result<ProcessInfo, ClientError> {
        self.expect(
            Method::POST,
            &Self::session_path(id, "processes"),
            &[],
            Some(request),
        )
        .await
    }

    pub async fn list_processes(&self, id: &str) -> Result<Vec<ProcessInfo>, ClientError> {
        let route = Self::session_path(id, "processes");
        let list: ProcessList = self.expect(Method::GET, &route, &[], None::<&()>).await?;
        Ok(list.processes)
    }

    /// Attaches to a process by id: its recent output first, then live output and its end.
    pub async fn attach_process(&self, id: &str, process: &str) -> Result<ExecStream, ClientError> {
        ExecStream::started(
            self.websocket(&Self::process_path(id, process, "/attach"))
                .await?,
        )
        .await
    }

    pub async fn write_process_stdin(
        &self,
        id: &str,
        process: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ClientError> {
        let route = Self::process_path(id, process, "/stdin");
        self.checked(&route, self.request(Method::POST, &route).body(bytes))
            .await
            .map(drop)
    }

    pub async fn close_process_stdin(&self, id: &str, process: &str) -> Result<(), ClientError> {
        let route = Self::process_path(id, process, "/stdin/close");
        self.checked(&route, self.request(Method::POST, &route))
            .await
            .map(drop)
    }

    /// Sends a signal to the process's whole group.
    pub async fn signal_process(
        &self,
        id: &str,
        process: &str,
        signal: i32,
    ) -> Result<(), ClientError> {
        let route = Self::process_path(id, process, "/signal");
        let request = self
            .request(Method::POST, &route)
            .json(&SignalRequest { signal });
        self.checked(&route, request).await.map(drop)
    }
}
