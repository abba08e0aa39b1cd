//! A session's unix socket on the host, as Docker in sessions and the callback API serve it:
//! in a directory its container mounts, bound by whichever instance serves it now.

use std::{io, os::unix::fs::MetadataExt, path::Path};

use tokio::net::UnixListener;

/// Binds a socket at `path`, replacing what is there (left by a control plane that stopped,
/// or by the instance that served it before), open to the session's user (uid 1000: the
/// socket's directory keeps everyone else on the host out). Answers the listener and the
/// socket file's inode, for [`still_bound`].
pub fn bind(path: &Path) -> io::Result<(UnixListener, u64)> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok((listener, std::fs::metadata(path)?.ino()))
}

/// Whether `path` is still the socket [`bind`] made with `inode`: an instance that served it
/// until a change of leader may have bound it again since, leaving this listener unreachable.
pub fn still_bound(path: &Path, inode: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.ino() == inode)
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
