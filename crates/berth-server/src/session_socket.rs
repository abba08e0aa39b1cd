//! A session's unix socket on the host, as Docker in sessions and the callback API serve it:
//! in a directory its container mounts, bound by whichever instance serves it now.

use std::{io, os::unix::fs::MetadataExt, path::Path};

use tokio::net::UnixListener;

/// Binds a socket at `path`, replacing what is there (left by a control plane that stopped,
/// or by the instance that served it before), open to the session's user (uid 1000: the
/// socket's directory keeps everyone else on the host out). Answers the listener and the
/// socket file's inode, for [`still_bound`]. Bound under a name of its own and renamed over
/// `path`, so the path is never missing and the inode is surely this socket's.
pub fn bind(path: &Path) -> io::Result<(UnixListener, u64)> {
    use std::os::unix::fs::PermissionsExt;
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(format!(".{}", std::process::id()));
    let fresh = std::path::PathBuf::from(fresh);
    match std::fs::remove_file(&fresh) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o666))?;
    let inode = std::fs::metadata(&fresh)?.ino();
    std::fs::rename(&fresh, path)?;
    Ok((listener, inode))
}

/// Whether `path` is still the socket [`bind`] made with `inode`: an instance that served it
/// until a change of leader may have bound it again since, leaving this listener unreachable.
/// A socket taken over is logged: once is a change of leader, again and again instances that
/// share a data dir without `cluster.host_dir`, taking it from each other at every sync.
pub fn still_bound(path: &Path, inode: u64) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.ino() == inode => true,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "a session's socket was bound by another \
                process; binding it again (repeated, it means instances share a data dir \
                without cluster.host_dir)");
            false
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_bound_again_elsewhere_is_no_longer_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (_first, inode) = bind(&path).unwrap();
        assert!(still_bound(&path, inode));
        let (_second, again) = bind(&path).unwrap();
        assert!(!still_bound(&path, inode) && still_bound(&path, again));
        std::fs::remove_file(&path).unwrap();
        assert!(!still_bound(&path, again));
    }
}
