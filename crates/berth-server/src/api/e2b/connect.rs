//! Connect RPC's JSON encoding, as envd speaks it: a unary call is a JSON body answered by a
//! JSON body; a server-streaming call sends one enveloped message (a flags byte, a big-endian
//! length, the JSON) and is answered by enveloped messages, the last one flagged end-of-stream
//! and carrying the error, if any; a client-streaming call is the reverse.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use berth_proto::ErrorCode;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;

use crate::api::error::{ApiError, ConnectError};

/// Requests are small (a command line, a path, a chunk of stdin); this bounds what one may make
/// the control plane hold.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

const END_OF_STREAM: u8 = 0x02;
const COMPRESSED: u8 = 0x01;

/// The JSON of a unary request.
pub async fn unary<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ConnectError> {
    expect_json(headers, "application/json")?;
    let bytes = read(body).await?;
    // An empty body is the empty message.
    let bytes = if bytes.is_empty() {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    parse(bytes)
}

/// The one message of a server-streaming request.
pub async fn stream_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ConnectError> {
    expect_json(headers, "application/connect+json")?;
    let bytes = read(body).await?;
    let (flags, message) = match bytes.split_first_chunk::<5>() {
        Some(([flags, len @ ..], rest)) if rest.len() == u32::from_be_bytes(*len) as usize => {
            (*flags, rest)
        }
        _ => {
            return Err(invalid(
                "the body must be exactly one Connect envelope (flags, length, message)",
            ));
        }
    };
    if flags & COMPRESSED != 0 {
        return Err(invalid("compressed messages are not accepted"));
    }
    parse(message)
}

fn expect_json(headers: &HeaderMap, wanted: &str) -> Result<(), ConnectError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(wanted) {
        Ok(())
    } else {
        Err(invalid(format!(
            "Content-Type must be {wanted}: Berth serves Connect's JSON encoding, not {content_type:?}"
        )))
    }
}

async fn read(body: Body) -> Result<Bytes, ConnectError> {
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| {
            ConnectError::from(ApiError::coded(
                ErrorCode::PayloadTooLarge,
                format!("a request message may hold at most {MAX_REQUEST_BYTES} bytes"),
            ))
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConnectError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid request message: {e}")))
}

pub fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::from(ApiError::invalid_request(message))
}

/// A unary answer.
pub fn reply(message: impl Serialize) -> Response {
    Json(message).into_response()
}

/// The messages of a client-streaming request, read as they arrive.
pub struct Incoming {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
}

pub fn incoming(headers: &HeaderMap, body: Body) -> Result<Incoming, ConnectError> {
    expect_json(headers, "application/connect+json")?;
    Ok(Incoming {
        body: body.into_data_stream(),
        buffer: Vec::new(),
    })
}

impl Incoming {
    /// The next message; `None` once the client has ended its stream.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ConnectError> {
        use futures_util::StreamExt;
        loop {
            if let Some(([flags, len @ ..], rest)) = self.buffer.split_first_chunk::<5>() {
                let len = u32::from_be_bytes(*len) as usize;
                if len > MAX_REQUEST_BYTES {
                    return Err(invalid(format!(
                        "a request message may hold at most {MAX_REQUEST_BYTES} bytes"
                    )));
                }
                if flags & COMPRESSED != 0 {
                    return Err(invalid("compressed messages are not accepted"));
                }
                if rest.len() >= len {
                    let message = parse(&rest[..len]);
                    self.buffer.drain(..5 + len);
                    return message.map(Some);
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(err)) => return Err(invalid(format!("reading the request: {err}"))),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(invalid("the request ended inside a message")),
            }
        }
    }
}

/// The answer of a client-streaming call: its one message and the end of the stream, or the
/// end of the stream with the error.
pub fn client_stream_reply(result: Result<serde_json::Value, ConnectError>) -> Response {
    let mut body = Vec::new();
    match result {
        Ok(message) => {
            body.extend_from_slice(&envelope(0, &message));
            body.extend_from_slice(&envelope(END_OF_STREAM, &serde_json::json!({})));
        }
        Err(error) => body.extend_from_slice(&envelope(END_OF_STREAM, &error.end_of_stream())),
    }
    ([(header::CONTENT_TYPE, "application/connect+json")], body).into_response()
}

/// `Connect-Timeout-Ms`: how long the caller gives the call.
pub fn timeout(headers: &HeaderMap) -> Result<Option<Duration>, ConnectError> {
    headers
        .get("connect-timeout-ms")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
                .ok_or_else(|| invalid("Connect-Timeout-Ms must be a number of milliseconds"))
        })
        .transpose()
}

/// `Keepalive-Ping-Interval` (seconds): how often a stream should show it is alive when it has
/// nothing else to say, so proxies do not drop it.
pub fn keepalive(headers: &HeaderMap) -> Duration {
    let seconds = headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(50);
    Duration::from_secs(seconds.clamp(1, 3600))
}

/// The sending half of a streamed answer. Sends fail once the client has gone, which ends the
/// producer; what the stream watched (a process) goes on.
pub struct Stream {
    tx: mpsc::Sender<Bytes>,
}

/// Opens a streamed answer: the response to hand back now, and the sender to fill it.
pub fn stream() -> (Response, Stream) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/connect+json"),
    );
    (response, Stream { tx })
}

fn envelope(flags: u8, message: &serde_json::Value) -> Bytes {
    let json = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    let mut frame = Vec::with_capacity(json.len() + 5);
    frame.push(flags);
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    Bytes::from(frame)
}

impl Stream {
    /// Sends one message; false once the client has gone.
    pub async fn send(&self, message: serde_json::Value) -> bool {
        self.tx.send(envelope(0, &message)).await.is_ok()
    }

    /// Ends the stream, with an error or without.
    pub async fn end(self, error: Option<ConnectError>) {
        let message = match error {
            Some(error) => error.end_of_stream(),
            None => serde_json::json!({}),
        };
        let _ = self.tx.send(envelope(END_OF_STREAM, &message)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_flags_and_a_big_endian_length() {
        let frame = envelope(END_OF_STREAM, &serde_json::json!({}));
        assert_eq!(&frame[..], b"\x02\x00\x00\x00\x02{}");
    }

    #[tokio::test]
    async fn a_stream_request_is_one_whole_envelope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/connect+json"),
        );
        let ok: serde_json::Value =
            stream_request(&headers, Body::from(&b"\x00\x00\x00\x00\x07{\"a\":1}"[..]))
                .await
                .unwrap();
        assert_eq!(ok, serde_json::json!({"a": 1}));
        for bad in [
            &b"\x00\x00\x00\x00\x09{\"a\":1}"[..],
            b"{}",
            b"\x01\x00\x00\x00\x02{}",
        ] {
            let err = stream_request::<serde_json::Value>(&headers, Body::from(bad))
                .await
                .unwrap_err();
            assert_eq!(err.code(), "invalid_argument");
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/connect+proto"),
        );
        let err = stream_request::<serde_json::Value>(
            &headers,
            Body::from(&b"\x00\x00\x00\x00\x02{}"[..]),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
    }
}
