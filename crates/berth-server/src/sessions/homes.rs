//! Persistent homes (`home = "persistent"`): a volume per user and template, kept between
//! that user's sessions of the template. The engine holds them (their labels say whose), the
//! store says which session has one; nothing of them is session state, so they are listed and
//! deleted outside the actor, as named snapshots are. Which session may mount one is decided
//! at admission (`actor/admission.rs`), and the container spec names it (`actor/create.rs`).

use std::collections::HashMap;

use berth_proto::home::Home;

use super::{SessionError, SessionManager};
use crate::{
    auth::Principal,
    runtime::{ManagedHome, RuntimeError},
    store::SessionFilter,
};

impl SessionManager {
    /// The persistent homes `caller` may see: their own; the admin's, everyone's, or `user`'s
    /// only. Sorted by user, then template.
    pub async fn list_homes(
        &self,
        caller: &Principal,
        user: Option<&str>,
    ) -> Result<Vec<Home>, SessionError> {
        let owner = match (caller.admin, user) {
            (true, user) => user,
            (false, _) => Some(caller.name.as_str()),
        };
        // The engine first, then the store: a home made while this runs shows with no user
        // rather than a session shown beside no home.
        let mut homes: Vec<ManagedHome> = self.runtime.homes().await?;
        homes.retain(|home| owner.is_none_or(|owner| home.owner == owner));
        let holders = self.home_holders(owner).await?;
        let mut listed: Vec<Home> = homes
            .into_iter()
            .map(|home| Home {
                used_by: holders
                    .get(&(home.owner.clone(), home.template.clone()))
                    .cloned(),
                name: home.volume,
                user: home.owner,
                template: home.template,
                size_mb: home.size_mb,
                created_at: home.created_at,
            })
            .collect();
        listed.sort_by(|a, b| (&a.user, &a.template).cmp(&(&b.user, &b.template)));
        Ok(listed)
    }

    /// Deletes one of `caller`'s homes (the admin: anyone's) and every file in it. Someone
    /// else's is not found, as a missing one is; one a session holds (running, hibernated or
    /// on its way) is refused.
    pub async fn delete_home(&self, caller: &Principal, volume: &str) -> Result<(), SessionError> {
        self.engine.check()?;
        let home = self
            .runtime
            .homes()
            .await?
            .into_iter()
            .find(|home| home.volume == volume && caller.may_access(&home.owner))
            .ok_or_else(|| SessionError::HomeNotFound(volume.to_owned()))?;
        self.remove_unheld_home(&home).await
    }

    /// Deletes every persistent home of `user`, with their files, for the user's own deletion
    /// (after their sessions: a home a session still holds is refused, the others go all the
    /// same). How many went.
    pub async fn delete_user_homes(&self, user: &str) -> Result<usize, SessionError> {
        self.engine.check()?;
        let mut removed = 0;
        let mut first_error = None;
        for home in self.runtime.homes().await? {
            if home.owner != user {
                continue;
            }
            match self.remove_unheld_home(&home).await {
                Ok(()) => removed += 1,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(removed), Err)
    }

    /// Removes `home` unless a session of its owner and template is kept (it has the home
    /// mounted, or mounts it as it wakes). A create that slips in between the look and the
    /// removal gets a new, empty home: the engine makes a mount's missing volume with the
    /// labels it names.
    async fn remove_unheld_home(&self, home: &ManagedHome) -> Result<(), SessionError> {
        let holders = self.home_holders(Some(&home.owner)).await?;
        if let Some(session) = holders.get(&(home.owner.clone(), home.template.clone())) {
            return Err(SessionError::HomeInUse {
                owner: home.owner.clone(),
                template: home.template.clone(),
                holder: format!("session {session}"),
            });
        }
        match self.runtime.remove_home(&home.volume).await {
            Err(RuntimeError::InUse(_)) => Err(SessionError::HomeInUse {
                owner: home.owner.clone(),
                template: home.template.clone(),
                holder: "a container of a session that is ending".to_owned(),
            }),
            removed => removed.map_err(SessionError::from),
        }
    }

    /// The kept session of each (owner, template) of `owner` (everyone's when `None`): the
    /// one that holds that home. Whatever the template's home is now: one that stopped being
    /// persistent may have older sessions that still mount theirs.
    async fn home_holders(
        &self,
        owner: Option<&str>,
    ) -> Result<HashMap<(String, String), String>, SessionError> {
        let kept = SessionFilter {
            owner: owner.map(str::to_owned),
            ..SessionFilter::kept()
        };
        Ok(self
            .store
            .list_sessions(&kept)
            .await?
            .into_iter()
            .map(|session| ((session.owner, session.template), session.id))
            .collect())
    }
}
