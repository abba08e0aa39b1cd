//! The callback API's way into sessions (seed 001: "container sends HTTP request to main app").
//!
//! Nothing from a session reaches the host by the network (the firewall drops it), so the
//! way back is a unix socket per session, in a host directory mounted read-only into its
//! container at [`DIR_IN_SESSION`], as Docker in a session has one. The socket serves only
//! the `/api/v1/self` routes (`api::callback`), and the session it arrives on must be the
//! session its token names. The session's agent relays its loopback port
//! ([`berth_proto::callback::RELAY_PORT`]) to the socket, so `BERTH_API_URL` is plain HTTP.
//!
//! Beside the socket is the token file: the platform writes a fresh token there every half of
//! a token's life, so it always holds one good for at least half an hour more (an
//! environment, `BERTH_SESSION_TOKEN`, cannot change).
//!
//! A session's socket opens as its container is made ([`CallbackSockets::ensure_open`], by the
//! runtime) and [`CallbackSockets::spawn`] keeps the set matched with the store: a restarted
//! control plane opens them again, an ended session's closes and its directory goes.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::Router;
use berth_proto::callback::{SOCKET_NAME, TOKEN_FILE_NAME};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    cluster::Serving,
    session_socket::{self, still_bound},
    signing::Signer,
    store::{SessionFilter, Store},
};

pub use berth_proto::callback::DIR_IN_SESSION;

/// How often the sockets are matched with the sessions and the tokens renewed.
const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// The sessions' callback sockets; cheap to clone, every clone the same set.
#[derive(Debug, Clone)]
pub struct CallbackSockets(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    signer: Signer,
    token_ttl: Duration,
    /// The routes a socket serves, set once the API is built (after the runtime that opens
    /// the first sockets); connections wait for it.
    router: watch::Sender<Option<Router>>,
    open: Mutex<HashMap<String, Listener>>,
}

#[derive(Debug)]
struct Listener {
    task: JoinHandle<()>,
    opened: Instant,
    /// The socket file's, to tell whether the path is still this socket.
    inode: u64,
    /// When the token file was last written.
    token_written: Instant,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which session a request came in on, for the routes to check against its token.
#[derive(Debug, Clone)]
pub struct ArrivedOn(pub String);

impl CallbackSockets {
    pub fn new(dir: PathBuf, signer: Signer, token_ttl: Duration) -> Self {
        Self(Arc::new(Shared {
            dir,
            signer,
            token_ttl,
            router: watch::Sender::new(None),
            open: Mutex::default(),
        }))
    }

    /// A token for `session_id`, good for the configured time from now.
    pub fn token(&self, session_id: &str) -> String {
        let expires = chrono::Utc::now().timestamp() + self.0.token_ttl.as_secs() as i64;
        self.0.signer.session_token(session_id, expires)
    }

    /// Serves `router` on every socket, open and to come.
    pub fn serve(&self, router: Router) {
        self.0.router.send_replace(Some(router));
    }

    /// Serves `session_id`'s socket unless it already is, with a fresh token beside it; the
    /// directory that holds both, which the session's container mounts.
    pub fn ensure_open(&self, session_id: &str) -> std::io::Result<PathBuf> {
        let mut open = self.lock();
        let path = self.session_dir(session_id).join(SOCKET_NAME);
        match open.get(session_id) {
            Some(listener)
                if !listener.task.is_finished() && still_bound(&path, listener.inode) => {}
            _ => {
                let (task, inode) = self.open(session_id)?;
                let now = Instant::now();
                open.insert(
                    session_id.to_owned(),
                    Listener {
                        task,
                        opened: now,
                        inode,
                        token_written: now,
                    },
                );
            }
        }
        Ok(self.session_dir(session_id))
    }

    /// Keeps the sockets matched with the store's sessions and their tokens fresh while this
    /// instance is `serving` (see `docker_api::DockerApi::spawn`), until the task is aborted.
    pub fn spawn(self, store: Arc<dyn Store>, serving: Serving) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SYNC_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if serving.now() {
                    self.sync(store.as_ref()).await;
                } else {
                    // The files stay, for the leader.
                    self.lock().clear();
                }
            }
        })
    }

    async fn sync(&self, store: &dyn Store) {
        let listed = Instant::now();
        let sessions = match store.list_sessions(&SessionFilter::kept()).await {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::warn!(%err, "callback: cannot list sessions; sockets unchanged");
                return;
            }
        };
        let wanted: BTreeSet<String> = sessions.into_iter().map(|s| s.id).collect();
        self.close_all_but(&wanted, listed);
        for id in &wanted {
            if let Err(err) = self.ensure_open(id) {
                tracing::warn!(session = %id, %err, "callback: cannot open the socket");
            }
        }
        self.renew_tokens();
        self.remove_strays(&wanted, listed);
    }

    /// Closes the sockets of sessions not in `wanted` and removes their directories, except
    /// those opened after `listed`: their sessions were made after the listing was taken.
    fn close_all_but(&self, wanted: &BTreeSet<String>, listed: Instant) {
        self.lock().retain(|id, listener| {
            let keep =
                listener.opened > listed || (wanted.contains(id) && !listener.task.is_finished());
            if !keep && !wanted.contains(id) {
                let _ = std::fs::remove_dir_all(self.session_dir(id));
            }
            keep
        });
    }

    /// Directories of sessions that ended while no control plane ran.
    fn remove_strays(&self, wanted: &BTreeSet<String>, listed: Instant) {
        let Ok(entries) = std::fs::read_dir(&self.0.dir) else {
            return;
        };
        let open = self.lock();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let fresh = open.get(&name).is_some_and(|l| l.opened > listed);
            if !wanted.contains(&name) && !fresh {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// A new token in every file older than half a token's life.
    fn renew_tokens(&self) {
        let half = self.0.token_ttl / 2;
        let mut open = self.lock();
        for (id, listener) in open.iter_mut() {
            if listener.token_written.elapsed() < half {
                continue;
            }
            match self.write_token(id) {
                Ok(()) => listener.token_written = Instant::now(),
                Err(err) => tracing::warn!(session = %id, %err, "callback: token not renewed"),
            }
        }
    }

    /// Replaces the token file whole (a reader never sees half a token).
    fn write_token(&self, session_id: &str) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.session_dir(session_id);
        let partial = dir.join(".token.new");
        std::fs::write(&partial, self.token(session_id))?;
        // The session's user is uid 1000; the data dir (0700) keeps everyone else on the host
        // out.
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(partial, dir.join(TOKEN_FILE_NAME))
    }

    fn session_dir(&self, session_id: &str) -> PathBuf {
        self.0.dir.join(session_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Listener>> {
        // A panic while holding it leaves the map whole: every change is one insert or retain.
        self.0.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, session_id: &str) -> std::io::Result<(JoinHandle<()>, u64)> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.session_dir(session_id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let (listener, inode) = session_socket::bind(&dir.join(SOCKET_NAME))?;
        self.write_token(session_id)?;
        let mut router = self.0.router.subscribe();
        let session = session_id.to_owned();
        let task = tokio::spawn(async move {
            let Ok(router) = router.wait_for(Option::is_some).await.map(|r| r.clone()) else {
                return;
            };
            let router = router
                .unwrap_or_default()
                .layer(axum::Extension(ArrivedOn(session.clone())));
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!(%session, %err, "callback: socket closed");
            }
        });
        Ok((task, inode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_opens_with_a_token_and_closes_with_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::from_secret("admin");
        let sockets = CallbackSockets::new(
            dir.path().to_owned(),
            signer.clone(),
            Duration::from_secs(60),
        );
        let listed = Instant::now();
        let session_dir = sockets.ensure_open("s1").unwrap();
        assert!(session_dir.join(SOCKET_NAME).exists());
        let token = std::fs::read_to_string(session_dir.join(TOKEN_FILE_NAME)).unwrap();
        let now = chrono::Utc::now().timestamp();
        let (session, expires) = signer.check_session_token(&token, now).unwrap();
        assert_eq!(session, "s1");
        assert!((now + 55..=now + 61).contains(&expires), "{expires}");

        // A listing from before the session does not close it; a later one without it does.
        sockets.close_all_but(&BTreeSet::new(), listed);
        assert!(session_dir.exists());
        sockets.close_all_but(&BTreeSet::new(), Instant::now());
        assert!(!session_dir.exists());

        // A directory no session owns (left while no control plane ran) goes too.
        std::fs::create_dir_all(dir.path().join("s-gone")).unwrap();
        sockets.remove_strays(&BTreeSet::new(), Instant::now());
        assert!(!dir.path().join("s-gone").exists());
    }
}
