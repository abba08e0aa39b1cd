//! Terminals saved by a stopping agent for the next one in the same home:
//! `~/.berth/terminals/<id>/{scrollback,meta.json}`.
//!
//! The home is what survives a container's stop, and a `docker commit` of it, so the state lives
//! there, in a directory of its own the user has no reason to open. It is the user's to change,
//! so everything read back is bounded and checked, and anything wrong with it only costs that
//! terminal, with a line in the log.

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::SCROLLBACK_BYTES;

const META: &str = "meta.json";
const SCROLLBACK: &str = "scrollback";
/// A real `meta.json` is a hundred bytes or so.
const MAX_META_BYTES: u64 = 16 * 1024;

/// What a restore needs of a terminal.
#[derive(Debug)]
pub struct SavedTerminal {
    /// The shell's working directory; `None` when it could not be read.
    pub cwd: Option<PathBuf>,
    pub cols: u16,
    pub rows: u16,
    pub scrollback: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    id: String,
    cwd: Option<PathBuf>,
    cols: u16,
    rows: u16,
}

/// Where the agent serving `home` saves terminals.
pub fn dir(home: &Path) -> PathBuf {
    home.join(".berth/terminals")
}

/// The names in `dir`: the ids of the terminals saved there.
pub fn ids(dir: &Path) -> impl Iterator<Item = String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => {
            eprintln!(
                "berth-agent: cannot list saved terminals in {}: {err}",
                dir.display()
            );
            None
        }
    };
    entries
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
}

/// Saves terminal `id`, each file written aside and renamed into place. `meta.json` goes last:
/// a terminal is saved once it is there.
pub fn write(dir: &Path, id: &str, terminal: &SavedTerminal) -> io::Result<()> {
    let dir = dir.join(id);
    DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    write_atomically(&dir.join(SCROLLBACK), &terminal.scrollback)?;
    let meta = Meta {
        id: id.to_owned(),
        cwd: terminal.cwd.clone(),
        cols: terminal.cols,
        rows: terminal.rows,
    };
    write_atomically(&dir.join(META), &serde_json::to_vec(&meta)?)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = path.with_extension("tmp");
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?
        .write_all(bytes)?;
    std::fs::rename(&temp, path)
}

/// Terminal `id` as saved in `dir`; `None` when nothing is, or what is cannot be used (logged).
/// A missing scrollback is only a loss of output: the terminal comes back without it.
pub fn read(dir: &Path, id: &str) -> Option<SavedTerminal> {
    let dir = dir.join(id);
    let meta = match read_bounded(&dir.join(META), MAX_META_BYTES) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            eprintln!("berth-agent: ignoring saved terminal {id}: {META}: {err}");
            return None;
        }
    };
    let meta = match serde_json::from_slice::<Meta>(&meta) {
        Ok(meta) if meta.id == id => meta,
        Ok(meta) => {
            eprintln!(
                "berth-agent: ignoring saved terminal {id}: its {META} is {}'s",
                meta.id
            );
            return None;
        }
        Err(err) => {
            eprintln!("berth-agent: ignoring saved terminal {id}: {META}: {err}");
            return None;
        }
    };
    let scrollback =
        read_bounded(&dir.join(SCROLLBACK), SCROLLBACK_BYTES as u64).unwrap_or_else(|err| {
            eprintln!(
                "berth-agent: saved terminal {id} comes back without its {SCROLLBACK}: {err}"
            );
            Vec::new()
        });
    Some(SavedTerminal {
        cwd: meta.cwd,
        cols: meta.cols,
        rows: meta.rows,
        scrollback,
    })
}

/// At most `limit` bytes of `path`: a file the user made larger costs no more memory.
fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Forgets terminal `id`: it has been restored, and is saved anew when this agent stops.
pub fn remove(dir: &Path, id: &str) {
    match std::fs::remove_dir_all(dir.join(id)) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => eprintln!("berth-agent: cannot remove saved terminal {id}: {err}"),
    }
}
