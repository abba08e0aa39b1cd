//! What the agent saw happen in the session, kept for the session's timeline until the control
//! plane says the timeline has it: command lines run in terminals with their exit codes,
//! background processes ending, ports opening and closing.
//!
//! The agent cannot call the control plane (nothing in a session reaches the host by the
//! network), so the control plane collects: it reads the journal (`GET /journal`), keeps the
//! entries, then acknowledges them (`POST /journal/ack`), and only then are they forgotten. An
//! answer lost on the way (a busy host, a timeout) loses nothing: the next collection reads
//! the same entries again. What the journal holds when a container dies unexpectedly is lost;
//! it keeps at most [`CAPACITY`] entries, the newest.

use std::{
    collections::{BTreeSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, extract::State, http::StatusCode};
use berth_proto::agent::{COMMAND_MARK, Journal as Kept, JournalAck, JournalEntry};
use serde_json::{Value, json};

use crate::AgentState;

pub const CAPACITY: usize = 500;
/// How often listening ports are looked at for the journal.
const PORT_POLL: Duration = Duration::from_secs(1);
/// A mark longer than this is not one: the output is passed on as it was.
const MAX_MARK: usize = 8192;

#[derive(Debug, Clone)]
pub struct Journal(Arc<Mutex<Entries>>);

#[derive(Debug)]
struct Entries {
    /// This run's name: an acknowledgement meant for an earlier run forgets nothing.
    boot: String,
    entries: VecDeque<JournalEntry>,
    /// The last entry's sequence number.
    last_seq: u64,
    /// The last sequence number acknowledged: what lies between it and the first entry kept
    /// was pushed out unread.
    acked: u64,
}

impl Default for Journal {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Entries {
            boot: mark_key(),
            entries: VecDeque::new(),
            last_seq: 0,
            acked: 0,
        })))
    }
}

impl Journal {
    pub fn push(&self, kind: &str, message: String, data: Value) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.entries.len() == CAPACITY {
            kept.entries.pop_front();
        }
        kept.last_seq += 1;
        let seq = kept.last_seq;
        kept.entries.push_back(JournalEntry {
            seq,
            at: chrono::Utc::now(),
            kind: kind.to_owned(),
            message,
            data,
        });
    }

    fn read(&self) -> Kept {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Kept {
            boot: kept.boot.clone(),
            acked: kept.acked,
            entries: kept.entries.iter().cloned().collect(),
            dropped: 0,
        }
    }

    /// Forgets what the timeline now has. Answers whether `ack` was for this run.
    fn forget(&self, ack: &JournalAck) -> bool {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ack.boot != kept.boot {
            return false;
        }
        while kept
            .entries
            .front()
            .is_some_and(|entry| entry.seq <= ack.seq)
        {
            kept.entries.pop_front();
        }
        kept.acked = kept.acked.max(ack.seq);
        true
    }

    /// Notes ports as they start and stop listening, until the agent ends.
    pub fn watch_ports(&self) {
        let journal = self.clone();
        tokio::spawn(async move {
            // Nothing of the session's runs before its agent, so whatever listens at the first
            // look is news. Starting from what listened then instead lost a server started
            // while the task waited for its first turn (a busy host's first hundred ms).
            let mut known = BTreeSet::new();
            loop {
                tokio::time::sleep(PORT_POLL).await;
                let now = crate::ports::listening();
                for port in now.difference(&known) {
                    let message = format!("a server listens on port {port}");
                    journal.push("port_opened", message, json!({ "port": port }));
                }
                for port in known.difference(&now) {
                    let message = format!("port {port} closed");
                    journal.push("port_closed", message, json!({ "port": port }));
                }
                known = now;
            }
        });
    }
}

/// `GET /journal`: what the journal holds, oldest first, until it is acknowledged.
pub async fn read(State(state): State<AgentState>) -> Json<Kept> {
    Json(state.journal.read())
}

/// `POST /journal/ack`: forgets the entries the timeline has. 409 when the acknowledgement is
/// for an earlier run of the agent (its entries went with it).
pub async fn ack(State(state): State<AgentState>, Json(ack): Json<JournalAck>) -> StatusCode {
    if state.journal.forget(&ack) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CONFLICT
    }
}

/// The prompt hook bash runs before each prompt: the last history entry, when it is new, as a
/// [`COMMAND_MARK`] with the terminal's mark key and the exit status. Given to terminal shells
/// in their environment, with the key in [`MARK_KEY_ENV`].
pub const PROMPT_HOOK: &str = r#"() { local status=$? entry line
  entry=$(HISTTIMEFORMAT= builtin history 1)
  if [[ -n ${__berth_last+set} && -n $entry && $entry != "$__berth_last" ]]; then
    line=${entry//[[:cntrl:]]/ }
    [[ $line =~ ^[[:space:]]*[0-9]+[*]?[[:space:]]+(.*)$ ]] &&
      printf '\033]6973;%s;%s;%s\007' "$__BERTH_MARK_KEY" "$status" "${BASH_REMATCH[1]}"
  fi
  __berth_last=$entry
  return $status
}"#;

/// Where a terminal's shell finds its mark key.
pub const MARK_KEY_ENV: &str = "__BERTH_MARK_KEY";

/// A new terminal's mark key: 128 random bits in hex. Output that merely contains a mark (a
/// file shown with `cat`, a program's escape codes) does not know it, so it is not taken for
/// a command. A process of the session's own can read it from the environment: the journal
/// tells what the shell reported, not proof of what ran.
pub fn mark_key() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the key is empty and still works, only guessable.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Finds [`COMMAND_MARK`]s carrying its key in a terminal's output as it streams by, marks
/// split across reads included, and takes them out. Marks with another key are output as
/// they came.
#[derive(Debug)]
pub struct CommandScanner {
    key: String,
    /// The start of a mark the last chunk ended in.
    pending: Vec<u8>,
}

/// A command line a shell reported, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub status: Option<i32>,
    pub line: String,
}

impl CommandScanner {
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            pending: Vec::new(),
        }
    }

    /// `chunk` without the marks in it (and without a mark's start it ends in, held for the
    /// next), and the commands the marks told of.
    pub fn scan(&mut self, chunk: &[u8]) -> (Vec<u8>, Vec<Ran>) {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(data.len());
        let mut ran = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let Some(start) = find(&data[at..], COMMAND_MARK).map(|i| at + i) else {
                // A mark may begin at the very end: hold the bytes that could be its start.
                let held = (1..COMMAND_MARK.len())
                    .rev()
                    .find(|&n| data.len() - at >= n && data.ends_with(&COMMAND_MARK[..n]))
                    .unwrap_or(0);
                out.extend_from_slice(&data[at..data.len() - held]);
                self.pending = data[data.len() - held..].to_vec();
                return (out, ran);
            };
            out.extend_from_slice(&data[at..start]);
            let body = start + COMMAND_MARK.len();
            // A mark's body holds no control characters: an escape before the bell means this
            // was not one.
            let end = data[body..]
                .iter()
                .position(|&b| b == 0x07 || b == 0x1b)
                .filter(|&end| data[body + end] == 0x07 && end <= MAX_MARK);
            let unfinished = !data[body..].contains(&0x1b);
            match end {
                Some(end) => {
                    let text = String::from_utf8_lossy(&data[body..body + end]);
                    match self.parse(&text) {
                        Some(found) => ran.push(found),
                        None => out.extend_from_slice(&data[start..=body + end]),
                    }
                    at = body + end + 1;
                }
                None if unfinished && data.len() - start <= MAX_MARK => {
                    self.pending = data[start..].to_vec();
                    return (out, ran);
                }
                // Not a mark, or too long to be one: its first byte is output, the rest
                // scanned again.
                None => {
                    out.push(data[start]);
                    at = start + 1;
                }
            }
        }
        (out, ran)
    }

    /// What is held when the terminal's output ends: output after all.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// `key;status;line`, when the key is this terminal's.
    fn parse(&self, text: &str) -> Option<Ran> {
        let (key, rest) = text.split_once(';')?;
        if key != self.key {
            return None;
        }
        let (status, line) = rest.split_once(';').unwrap_or((rest, ""));
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Some(Ran {
            status: status.parse().ok(),
            line: line.trim().to_owned(),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use berth_proto::agent::COMMAND_MARK;

    use berth_proto::agent::JournalAck;

    use super::{CommandScanner, Journal, Ran};

    fn ran(status: i32, line: &str) -> Ran {
        Ran {
            status: Some(status),
            line: line.into(),
        }
    }

    #[test]
    fn marks_are_taken_out_of_the_output_whole_or_split_across_reads() {
        let mut scanner = CommandScanner::new("k1");
        let (out, found) = scanner.scan(b"hi\r\n\x1b]6973;k1;0;echo hi\x07$ ");
        assert_eq!(
            (out.as_slice(), found),
            (&b"hi\r\n$ "[..], vec![ran(0, "echo hi")])
        );

        let (out, found) = scanner.scan(b"oops\r\n\x1b]69");
        assert_eq!((out.as_slice(), found.len()), (&b"oops\r\n"[..], 0));
        let (out, found) = scanner.scan(b"73;k1;127;nope --x;y\tz\x07");
        assert_eq!(out, b"");
        assert_eq!(
            found,
            vec![ran(127, "nope --x;y z")],
            "control characters go"
        );

        // An escape that is not a mark is passed on, even when it looked like one's start.
        let (out, found) = scanner.scan(b"\x1b]0;title\x07\x1b");
        assert_eq!((out.as_slice(), found.len()), (&b"\x1b]0;title\x07"[..], 0));
        let (out, _) = scanner.scan(b"[1m");
        assert_eq!(out, b"\x1b[1m");
    }

    #[test]
    fn marks_without_the_key_are_output_not_commands() {
        let mut scanner = CommandScanner::new("k1");
        let forged = b"\x1b]6973;guess;0;rm -rf /\x07";
        let (out, found) = scanner.scan(forged);
        assert_eq!((out.as_slice(), found.len()), (&forged[..], 0));
    }

    #[test]
    fn held_bytes_come_out_at_the_end_and_overlong_marks_are_scanned_past() {
        let mut scanner = CommandScanner::new("k1");
        let (out, _) = scanner.scan(b"bye\x1b]6973;k1;0;unfinished");
        assert_eq!(out, b"bye");
        assert_eq!(scanner.finish(), b"\x1b]6973;k1;0;unfinished");

        let mut scanner = CommandScanner::new("k1");
        let mut flood = b"\x1b]6973;".to_vec();
        flood.extend(std::iter::repeat_n(b'x', super::MAX_MARK + 10));
        flood.extend_from_slice(b"\x1b]6973;k1;0;ls\x07");
        let (out, found) = scanner.scan(&flood);
        assert_eq!(
            found,
            vec![ran(0, "ls")],
            "a real mark after an overlong one"
        );
        assert_eq!(out.len(), COMMAND_MARK.len() + super::MAX_MARK + 10);
    }

    #[test]
    fn mark_keys_differ() {
        assert_ne!(super::mark_key(), super::mark_key());
        assert_eq!(super::mark_key().len(), 32);
    }

    #[test]
    fn the_journal_keeps_the_newest_and_its_numbers_show_what_it_dropped() {
        let journal = Journal::default();
        for i in 0..super::CAPACITY + 3 {
            journal.push("command", format!("{i}"), serde_json::Value::Null);
        }
        let kept = journal.read();
        assert_eq!((kept.entries.len(), kept.acked), (super::CAPACITY, 0));
        assert_eq!(
            (kept.entries[0].message.as_str(), kept.entries[0].seq),
            ("3", 4)
        );
    }

    #[tokio::test]
    async fn a_server_started_before_the_watchs_first_look_is_told_of() {
        let journal = Journal::default();
        journal.watch_ports();
        // Before the watch's task first runs (this test's runtime has one thread).
        let server = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let mut told = false;
        for _ in 0..30 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            told = journal
                .read()
                .entries
                .iter()
                .any(|entry| entry.kind == "port_opened" && entry.data["port"] == port);
            if told {
                break;
            }
        }
        assert!(told, "{:?}", journal.read().entries);
    }

    #[test]
    fn entries_are_kept_until_acknowledged_by_this_run() {
        let journal = Journal::default();
        for kind in ["command", "port_opened", "port_closed"] {
            journal.push(kind, String::new(), serde_json::Value::Null);
        }
        let first = journal.read();
        assert_eq!(journal.read(), first, "a read forgets nothing");

        let earlier_run = JournalAck {
            boot: "another run".into(),
            seq: 3,
        };
        assert!(!journal.forget(&earlier_run));
        assert_eq!(journal.read().entries.len(), 3);

        journal.push("command", String::new(), serde_json::Value::Null);
        let ack = JournalAck {
            boot: first.boot,
            seq: 2,
        };
        assert!(journal.forget(&ack));
        let rest = journal.read();
        let seqs: Vec<u64> = rest.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4], "what came after the read stays too");
        assert_eq!(rest.acked, 2);
    }
}
