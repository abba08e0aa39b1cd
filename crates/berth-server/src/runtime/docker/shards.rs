//! Which of a policy's networks (its shards, [`crate::networks::Shard`]) a new container joins.
//!
//! The first shard with room takes it, so sessions fill shard 1 before shard 2 is made. The
//! counts live here rather than being asked of the engine per create, since listing 2,000
//! containers costs more than the create. They are seeded from the engine's listing once,
//! follow every create and remove, and each periodic listing corrects them: it drops
//! containers that went without this runtime removing them (by hand, or with their engine's
//! data) and counts those another control plane made (one that led lifecycle before).

use std::collections::{HashMap, HashSet};

use bollard::models::ContainerSummary;

use super::{DockerRuntime, RuntimeError};
use crate::networks::{Cidr, MAX_SHARDS, Shard};

/// A policy (its position in [`crate::networks::SessionNetworks::iter`]) and one of its shards.
pub(super) type ShardKey = (usize, usize);

#[derive(Debug, Default)]
pub(super) struct ShardBook {
    /// Containers on each shard: placed here, or found there by the first listing.
    load: HashMap<ShardKey, usize>,
    /// The most each shard holds; known once its network is known to exist.
    capacity: HashMap<ShardKey, usize>,
    /// Each container's shard, and the listing generation it was recorded in.
    placed: HashMap<String, (ShardKey, u64)>,
    /// Listings begun so far.
    listings: u64,
}

/// What [`ShardBook::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// A place on this shard is held for the container about to be made.
    Place,
    Full,
    /// Whether the shard's network exists is not known yet.
    Unknown,
}

impl ShardBook {
    /// Holds a place on `key` for a container about to be made, when there is room.
    pub fn take(&mut self, key: ShardKey) -> Taken {
        let Some(&capacity) = self.capacity.get(&key) else {
            return Taken::Unknown;
        };
        let load = self.load.entry(key).or_default();
        if *load >= capacity {
            return Taken::Full;
        }
        *load += 1;
        Taken::Place
    }

    /// Gives back a place [`Self::take`] held, the create having failed.
    pub fn give_back(&mut self, key: ShardKey) {
        if let Some(load) = self.load.get_mut(&key) {
            *load = load.saturating_sub(1);
        }
    }

    /// The container made on the place [`Self::take`] held.
    pub fn placed(&mut self, container_id: String, key: ShardKey) {
        self.placed.insert(container_id, (key, self.listings));
    }

    pub fn known(&mut self, key: ShardKey, capacity: usize) {
        self.capacity.insert(key, capacity);
    }

    /// The shard's network went (removed by hand): it is checked, and made, again.
    pub fn unknown(&mut self, key: ShardKey) {
        self.capacity.remove(&key);
    }

    pub fn removed(&mut self, container_id: &str) {
        if let Some((key, _)) = self.placed.remove(container_id) {
            self.give_back(key);
        }
    }

    /// Counts what a listing found that is not counted yet.
    pub fn seed(&mut self, found: impl IntoIterator<Item = (String, ShardKey)>) {
        for (id, key) in found {
            if !self.placed.contains_key(&id) {
                *self.load.entry(key).or_default() += 1;
                self.placed.insert(id, (key, self.listings));
            }
        }
    }

    /// Starts a listing; [`Self::listed`] takes its generation with what it found.
    pub fn begin_listing(&mut self) -> u64 {
        self.listings += 1;
        self.listings
    }

    /// Forgets containers recorded before the listing `generation` began that it did not find.
    /// Those recorded since may have been made after the engine answered, so they stay.
    pub fn listed(&mut self, generation: u64, found: &HashSet<&str>) {
        let gone: Vec<String> = self
            .placed
            .iter()
            .filter(|(id, (_, at))| *at < generation && !found.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.removed(&id);
        }
    }

    #[cfg(test)]
    fn load(&self, key: ShardKey) -> usize {
        self.load.get(&key).copied().unwrap_or(0)
    }
}

/// The sessions a network holds: `sessions_per_network`, or fewer when its IPv4 subnet has
/// fewer addresses (less its network, broadcast and gateway addresses).
pub(super) fn capacity(configured: u32, subnets: &[Cidr]) -> usize {
    let configured = configured as usize;
    subnets
        .iter()
        .filter(|net| net.is_ipv4())
        .map(|net| (1usize << (32 - u32::from(net.prefix()))).saturating_sub(3))
        .min()
        .map_or(configured, |addresses| addresses.min(configured))
}

impl DockerRuntime {
    /// Holds a place for a new container of `policy` on the first of its shards with room,
    /// making that shard's network when it is the next one.
    pub(super) async fn take_shard(&self, policy: usize) -> Result<Shard, RuntimeError> {
        let network = self
            .networks
            .get(policy)
            .ok_or_else(|| RuntimeError::Engine(format!("no session network {policy}")))?;
        for index in 0..MAX_SHARDS {
            let key = (policy, index);
            let mut taken = self.shards().take(key);
            if taken == Taken::Unknown {
                let subnets = self.ensure_network(network, index).await?;
                let mut book = self.shards();
                book.known(key, capacity(self.config.sessions_per_network, &subnets));
                taken = book.take(key);
            }
            if taken == Taken::Place {
                return Ok(network.shard(index));
            }
        }
        Err(RuntimeError::Engine(format!(
            "all {MAX_SHARDS} networks of {} hold the most sessions they may \
             (docker.sessions_per_network, or their subnets' size); this engine takes no more \
             sessions of that egress policy",
            network.name
        )))
    }

    pub(super) fn shards(&self) -> std::sync::MutexGuard<'_, ShardBook> {
        // Every change is a few map updates; a panic midway leaves counts off by one at most.
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session network (policy and shard) each summary is on.
    pub(super) fn shards_of<'a>(
        &'a self,
        summaries: &'a [ContainerSummary],
    ) -> impl Iterator<Item = (String, ShardKey)> + 'a {
        summaries.iter().filter_map(|summary| {
            let networks = summary.network_settings.as_ref()?.networks.as_ref()?;
            let key = networks
                .keys()
                .find_map(|name| self.networks.shard_of(name))?;
            Some((summary.id.clone()?, key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_takes_up_to_its_capacity_and_places_come_back() {
        let mut book = ShardBook::default();
        assert_eq!(book.take((0, 0)), Taken::Unknown);
        book.known((0, 0), 2);
        assert_eq!(book.take((0, 0)), Taken::Place);
        assert_eq!(book.take((0, 0)), Taken::Place);
        assert_eq!(book.take((0, 0)), Taken::Full);
        book.placed("a".into(), (0, 0));
        book.give_back((0, 0));
        assert_eq!(book.take((0, 0)), Taken::Place);
        book.placed("b".into(), (0, 0));
        book.removed("a");
        book.removed("a");
        assert_eq!(book.load((0, 0)), 1);
        book.unknown((0, 0));
        assert_eq!(book.take((0, 0)), Taken::Unknown);
    }

    #[test]
    fn a_listing_forgets_only_what_it_should_have_seen() {
        let mut book = ShardBook::default();
        book.known((0, 1), 10);
        book.seed([("old".to_owned(), (0, 1)), ("kept".to_owned(), (0, 1))]);
        // Seeding twice counts nothing twice.
        book.seed([("old".to_owned(), (0, 1))]);
        assert_eq!(book.load((0, 1)), 2);
        let generation = book.begin_listing();
        // Made while the engine was answering: the listing may have missed it.
        assert_eq!(book.take((0, 1)), Taken::Place);
        book.placed("new".into(), (0, 1));
        book.listed(generation, &HashSet::from(["kept"]));
        assert_eq!(book.load((0, 1)), 2, "old is gone; kept and new stay");
        let generation = book.begin_listing();
        book.listed(generation, &HashSet::from(["kept", "new"]));
        assert_eq!(book.load((0, 1)), 2);
    }

    #[test]
    fn a_small_subnet_bounds_its_network() {
        let nets =
            |list: &[&str]| -> Vec<Cidr> { list.iter().map(|n| n.parse().unwrap()).collect() };
        assert_eq!(capacity(1000, &nets(&["10.0.0.0/24"])), 253);
        assert_eq!(capacity(1000, &nets(&["10.0.0.0/22"])), 1000);
        assert_eq!(capacity(100, &nets(&["172.18.0.0/16"])), 100);
        assert_eq!(capacity(100, &nets(&["fd00::/120"])), 100);
        assert_eq!(capacity(100, &[]), 100);
    }
}
