//! Relayed requests that the session's timeline tells of: a command run and how it ended, a
//! process started, a file written, deleted or moved, with who did it. Only what the agent
//! did (a success) is noted, after it answered; the entry is written off the request's path.

use axum::{
    body::Body,
    http::{HeaderMap, Method, header},
    response::Response,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{AppState, error::ApiError, files::relay};
use crate::{auth::Principal, store::SessionEvent};

/// Request bodies up to this size are read to tell what was asked; larger ones (an exec with
/// a big stdin) pass untouched and their entry says less.
const READ_REQUEST_BYTES: u64 = 64 << 10;
/// Commands are told up to this many characters.
const COMMAND_CHARS: usize = 500;

/// What a relayed request does, as the timeline tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Note {
    Exec,
    ProcessStarted,
    FileWritten,
    FileDeleted,
    DirectoryCreated,
    FileMoved,
    FilesUploaded,
}

impl Note {
    fn reads_request(self) -> bool {
        matches!(
            self,
            Self::Exec | Self::ProcessStarted | Self::DirectoryCreated | Self::FileMoved
        )
    }

    fn entry(self, id: &str, query: Option<&str>, asked: &Value, answer: &Value) -> SessionEvent {
        let path = || {
            query
                .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "path"))
                .map(|(_, path)| path)
                .unwrap_or_default()
        };
        let command = command_line(&asked["cmd"]);
        let (kind, message, data) = match self {
            Self::Exec => {
                let code = &answer["exit_code"];
                let ended = match code.as_i64() {
                    Some(code) => format!("exit {code}"),
                    None => format!("signal {}", answer["signal"]),
                };
                let message = format!("ran `{command}`: {ended}");
                (
                    "exec",
                    message,
                    json!({"command": command, "exit_code": code}),
                )
            }
            Self::ProcessStarted => (
                "process_started",
                format!(
                    "started `{command}` in the background (pid {})",
                    answer["pid"]
                ),
                json!({"command": command, "pid": answer["pid"]}),
            ),
            Self::FileWritten => {
                let path = path();
                (
                    "file_written",
                    format!("wrote {path}"),
                    json!({ "path": path }),
                )
            }
            Self::FileDeleted => {
                let path = path();
                (
                    "file_deleted",
                    format!("deleted {path}"),
                    json!({ "path": path }),
                )
            }
            Self::FilesUploaded => {
                let path = path();
                (
                    "files_uploaded",
                    format!("unpacked an archive into {path}"),
                    json!({ "path": path }),
                )
            }
            Self::DirectoryCreated => (
                "directory_created",
                format!("made the directory {}", text(&asked["path"])),
                json!({"path": asked["path"]}),
            ),
            Self::FileMoved => (
                "file_moved",
                format!("moved {} to {}", text(&asked["from"]), text(&asked["to"])),
                json!({"from": asked["from"], "to": asked["to"]}),
            ),
        };
        SessionEvent::now(id, kind, &message).with_data(data)
    }
}

/// Relays as `files::relay` does, then notes what was done on the session's timeline.
pub(super) async fn relay_noted(
    state: &AppState,
    caller: &Principal,
    id: &str,
    agent_path: &str,
    (method, query, headers, body): (Method, Option<String>, &HeaderMap, Body),
    note: Note,
) -> Result<Response, ApiError> {
    let small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length <= READ_REQUEST_BYTES);
    let (body, asked) = if note.reads_request() && small {
        let bytes = body
            .collect()
            .await
            .map_err(|err| ApiError::invalid_request(format!("reading the body: {err}")))?
            .to_bytes();
        let asked = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (Body::from(bytes), asked)
    } else {
        (body, Value::Null)
    };
    let parts = (method, query.clone(), headers, body);
    let response = relay(state, caller, id, agent_path, parts).await?;
    if !response.status().is_success() {
        return Ok(response);
    }
    // The answer is read for what it tells (an exit code, a pid), then passed on whole; these
    // answers are JSON the agent bounds (1 MiB per output stream).
    let (response, answer) = if matches!(note, Note::Exec | Note::ProcessStarted) {
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|err| ApiError::internal(format!("reading the agent's answer: {err}")))?
            .to_bytes();
        let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (Response::from_parts(parts, Body::from(bytes)), answer)
    } else {
        (response, Value::Null)
    };
    let entry = note.entry(id, query.as_deref(), &asked, &answer);
    state.timeline.add(entry.by(&caller.name));
    Ok(response)
}

/// `["sh", "-c", "echo hi"]` as a person reads it: `sh -c 'echo hi'`, shortened.
fn command_line(cmd: &Value) -> String {
    let words: Vec<String> = cmd
        .as_array()
        .map(|words| words.iter().map(text).collect())
        .unwrap_or_default();
    let line = words
        .iter()
        .map(|word| {
            if word.is_empty()
                || word.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c))
            {
                format!("'{}'", word.replace('\'', r"'\''"))
            } else {
                word.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() > COMMAND_CHARS {
        let mut short: String = line.chars().take(COMMAND_CHARS).collect();
        short.push('…');
        short
    } else {
        line
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::command_line;

    #[test]
    fn commands_read_as_a_shell_would_take_them() {
        assert_eq!(
            command_line(&json!(["sh", "-c", "echo hi"])),
            "sh -c 'echo hi'"
        );
        assert_eq!(command_line(&json!(["ls", "-la"])), "ls -la");
        assert_eq!(command_line(&json!(["echo", "it's"])), r"echo 'it'\''s'");
        assert!(command_line(&json!(["x".repeat(600)])).ends_with('…'));
    }
}
