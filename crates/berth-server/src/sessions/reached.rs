//! The running sessions this instance has relayed work to, and where their agents listen: what
//! keeps terminals, files and previews working while the store does not answer. An address
//! stays right for as long as its container runs; a request to a stale one is refused by the
//! agent there (it checks the session's secret), never served by another session.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use crate::auth::Principal;

#[derive(Debug, Clone, Default)]
pub struct Reached(Arc<Mutex<HashMap<String, Endpoint>>>);

#[derive(Debug, Clone)]
struct Endpoint {
    owner: String,
    addr: SocketAddr,
    secret: String,
}

impl Reached {
    pub fn remember(&self, id: &str, owner: &str, addr: SocketAddr, secret: &str) {
        let mut reached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let known = reached
            .get(id)
            .is_some_and(|known| known.addr == addr && known.secret == secret);
        if !known {
            reached.insert(
                id.to_owned(),
                Endpoint {
                    owner: owner.to_owned(),
                    addr,
                    secret: secret.to_owned(),
                },
            );
        }
    }

    /// The session no longer runs: nothing of it is kept.
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Where the session's agent was last reached, for a caller allowed in it.
    pub fn get(&self, caller: &Principal, id: &str) -> Option<(SocketAddr, String)> {
        let reached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        reached
            .get(id)
            .filter(|endpoint| caller.may_access(&endpoint.owner))
            .map(|endpoint| (endpoint.addr, endpoint.secret.clone()))
    }
}
