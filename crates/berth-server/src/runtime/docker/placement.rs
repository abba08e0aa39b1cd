//! Where a new container goes on its engine: which of a policy's networks (its shards,
//! [`crate::networks::Shard`]) it joins, and which of the host's cores it runs on.
//!
//! The first shard with room takes it, so sessions fill shard 1 before shard 2 is made. Cores
//! are the least used ones, as many as the session's `cpus` round up to (`docker.pin_cpus`):
//! its CFS quota then spreads over those cores only, so a session's threads cannot take every
//! core of the host for the first part of each quota period while its neighbours wait.
//!
//! The counts live here rather than being asked of the engine per create, since listing 2,000
//! containers costs more than the create. They are seeded from the engine's listing once,
//! follow every create and remove, and each periodic listing corrects them: it drops
//! containers that went without this runtime removing them (by hand, or with their engine's
//! data) and counts those another control plane made (one that led lifecycle before).

use std::collections::{HashMap, HashSet};

use bollard::models::ContainerSummary;

use super::{DockerRuntime, RuntimeError};
use crate::{
    networks::{Cidr, MAX_SHARDS, Shard},
    runtime::labels,
};

/// A policy (its position in [`crate::networks::SessionNetworks::iter`]) and one of its shards.
pub(super) type ShardKey = (usize, usize);

/// Where one container was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    pub shard: ShardKey,
    /// The cores it is pinned to; none when it may run on all of them.
    pub cores: Vec<usize>,
    /// The session it was made for, whose cgroup counts its CPU time.
    pub session: String,
}

impl Placement {
    /// `CpusetCpus`, as the engine takes it: `0,2`, or empty for every core.
    pub fn cpuset(&self) -> String {
        let listed: Vec<String> = self.cores.iter().map(ToString::to_string).collect();
        listed.join(",")
    }
}

/// Cores a cpuset may name: Linux's most (`NR_CPUS`). A list naming more is unreadable, so
/// that `0-99999999999`, which a session may send, is never expanded.
const MAX_CORES: usize = 8192;

/// The cores of a cpuset list such as `0,2` or `0-3`; none for an empty or unreadable one.
pub fn parse_cpuset(list: &str) -> Vec<usize> {
    let mut cores = Vec::new();
    for part in list.split(',').filter(|part| !part.is_empty()) {
        let bounds = match part.split_once('-') {
            Some((first, last)) => (first.parse::<usize>(), last.parse::<usize>()),
            None => (part.parse::<usize>(), part.parse::<usize>()),
        };
        match bounds {
            (Ok(first), Ok(last)) if first <= last && last < MAX_CORES => {
                cores.extend(first..=last);
            }
            _ => return Vec::new(),
        }
        if cores.len() > MAX_CORES {
            return Vec::new();
        }
    }
    cores
}

#[derive(Debug, Default)]
pub(super) struct PlacementBook {
    /// Containers on each shard: placed here, or found there by the first listing.
    load: HashMap<ShardKey, usize>,
    /// The most each shard holds; known once its network is known to exist.
    capacity: HashMap<ShardKey, usize>,
    /// Containers pinned to each of the host's cores; empty while the cores are not known
    /// (or not pinned to).
    core_load: Vec<usize>,
    /// Each container's placement, and the listing generation it was recorded in.
    placed: HashMap<String, (Placement, u64)>,
    /// Listings begun so far.
    listings: u64,
}

/// What [`PlacementBook::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// A place on this shard is held for the container about to be made.
    Place,
    Full,
    /// Whether the shard's network exists is not known yet.
    Unknown,
}

impl PlacementBook {
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

    /// Holds the `count` least used cores for a container about to be made, the lowest first
    /// among equals; none (every core) when the cores are not known or `count` takes them all.
    pub fn take_cores(&mut self, count: usize) -> Vec<usize> {
        if count == 0 || count >= self.core_load.len() {
            return Vec::new();
        }
        let mut by_load: Vec<usize> = (0..self.core_load.len()).collect();
        by_load.sort_by_key(|&core| (self.core_load[core], core));
        let mut cores = by_load[..count].to_vec();
        cores.sort_unstable();
        self.count_cores(&cores, true);
        cores
    }

    /// Adds one container to each of `cores`' counts, or takes one away.
    fn count_cores(&mut self, cores: &[usize], more: bool) {
        for &core in cores {
            if let Some(load) = self.core_load.get_mut(core) {
                *load = if more {
                    *load + 1
                } else {
                    load.saturating_sub(1)
                };
            }
        }
    }

    /// Gives back what [`Self::take`] and [`Self::take_cores`] held, the create having failed.
    pub fn give_back(&mut self, placement: &Placement) {
        if let Some(load) = self.load.get_mut(&placement.shard) {
            *load = load.saturating_sub(1);
        }
        self.count_cores(&placement.cores, false);
    }

    /// The container made on the places [`Self::take`] and [`Self::take_cores`] held.
    pub fn placed(&mut self, container_id: String, placement: Placement) {
        self.placed.insert(container_id, (placement, self.listings));
    }

    pub fn known(&mut self, key: ShardKey, capacity: usize) {
        self.capacity.insert(key, capacity);
    }

    /// The host has `count` cores to pin containers to; those placed before are counted on
    /// theirs.
    pub fn cores_known(&mut self, count: usize) {
        self.core_load = vec![0; count];
        let pinned: Vec<usize> = self
            .placed
            .values()
            .flat_map(|(placement, _)| placement.cores.iter().copied())
            .collect();
        self.count_cores(&pinned, true);
    }

    /// The shard's network went (removed by hand): it is checked, and made, again.
    pub fn unknown(&mut self, key: ShardKey) {
        self.capacity.remove(&key);
    }

    pub fn removed(&mut self, container_id: &str) {
        if let Some((placement, _)) = self.placed.remove(container_id) {
            self.give_back(&placement);
        }
    }

    /// Counts what a listing found that is not counted yet.
    pub fn seed(&mut self, found: impl IntoIterator<Item = (String, Placement)>) {
        for (id, placement) in found {
            if !self.placed.contains_key(&id) {
                *self.load.entry(placement.shard).or_default() += 1;
                self.count_cores(&placement.cores, true);
                self.placed.insert(id, (placement, self.listings));
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

    /// The containers pinned to some of the host's cores, with their placements.
    pub fn pinned(&self) -> Vec<(String, Placement)> {
        self.placed
            .iter()
            .filter(|(_, (placement, _))| !placement.cores.is_empty())
            .map(|(id, (placement, _))| (id.clone(), placement.clone()))
            .collect()
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

/// Places held for a container being made: given back when dropped unless [`Self::placed`],
/// so that a create dropped at its deadline, or failed, keeps none. (If the engine made the
/// container after all, the next listing counts it.)
pub(super) struct Held<'a> {
    runtime: &'a DockerRuntime,
    placement: Option<Placement>,
}

impl<'a> Held<'a> {
    pub fn new(runtime: &'a DockerRuntime, placement: Placement) -> Self {
        Self {
            runtime,
            placement: Some(placement),
        }
    }

    fn placement(&self) -> &Placement {
        self.placement
            .as_ref()
            .expect("held until placed or dropped")
    }

    pub fn shard(&self) -> ShardKey {
        self.placement().shard
    }

    pub fn cpuset(&self) -> String {
        self.placement().cpuset()
    }

    /// Gives the cores back and keeps the shard's place: the container is made unpinned.
    pub fn unpin(&mut self) {
        if let Some(placement) = &mut self.placement {
            let cores = std::mem::take(&mut placement.cores);
            self.runtime.placements().count_cores(&cores, false);
        }
    }

    /// The container was made on what is held.
    pub fn placed(mut self, container_id: String) {
        if let Some(placement) = self.placement.take() {
            self.runtime.placements().placed(container_id, placement);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(placement) = self.placement.take() {
            self.runtime.placements().give_back(&placement);
        }
    }
}

/// The cores a session with `nano_cpus` is pinned to: its `cpus` rounded up, at least one.
pub(super) fn cores_for(nano_cpus: i64) -> usize {
    let cores = (nano_cpus.max(1) as u64).div_ceil(1_000_000_000);
    usize::try_from(cores).unwrap_or(usize::MAX)
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
            let mut taken = self.placements().take(key);
            if taken == Taken::Unknown {
                let subnets = self.ensure_network(network, index).await?;
                let mut book = self.placements();
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

    pub(super) fn placements(&self) -> std::sync::MutexGuard<'_, PlacementBook> {
        // Every change is a few map updates; a panic midway leaves counts off by one at most.
        self.placements.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where each summary was placed: its session network (policy and shard), and the cores
    /// its label names.
    pub(super) fn placements_of<'a>(
        &'a self,
        summaries: &'a [ContainerSummary],
    ) -> impl Iterator<Item = (String, Placement)> + 'a {
        summaries.iter().filter_map(|summary| {
            let networks = summary.network_settings.as_ref()?.networks.as_ref()?;
            let shard = networks
                .keys()
                .find_map(|name| self.networks.shard_of(name))?;
            let cores = summary
                .labels
                .as_ref()
                .and_then(|labels| labels.get(labels::CPUSET))
                .map(|list| parse_cpuset(list))
                .unwrap_or_default();
            let session = summary
                .labels
                .as_ref()
                .and_then(|labels| labels.get(labels::SESSION))
                .cloned()
                .unwrap_or_default();
            Some((
                summary.id.clone()?,
                Placement {
                    shard,
                    cores,
                    session,
                },
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(shard: ShardKey) -> Placement {
        Placement {
            shard,
            cores: Vec::new(),
            session: String::new(),
        }
    }

    #[test]
    fn a_shard_takes_up_to_its_capacity_and_places_come_back() {
        let mut book = PlacementBook::default();
        assert_eq!(book.take((0, 0)), Taken::Unknown);
        book.known((0, 0), 2);
        assert_eq!(book.take((0, 0)), Taken::Place);
        assert_eq!(book.take((0, 0)), Taken::Place);
        assert_eq!(book.take((0, 0)), Taken::Full);
        book.placed("a".into(), on((0, 0)));
        book.give_back(&on((0, 0)));
        assert_eq!(book.take((0, 0)), Taken::Place);
        book.placed("b".into(), on((0, 0)));
        book.removed("a");
        book.removed("a");
        assert_eq!(book.load((0, 0)), 1);
        book.unknown((0, 0));
        assert_eq!(book.take((0, 0)), Taken::Unknown);
    }

    #[test]
    fn a_listing_forgets_only_what_it_should_have_seen() {
        let mut book = PlacementBook::default();
        book.known((0, 1), 10);
        book.seed([
            ("old".to_owned(), on((0, 1))),
            ("kept".to_owned(), on((0, 1))),
        ]);
        // Seeding twice counts nothing twice.
        book.seed([("old".to_owned(), on((0, 1)))]);
        assert_eq!(book.load((0, 1)), 2);
        let generation = book.begin_listing();
        // Made while the engine was answering: the listing may have missed it.
        assert_eq!(book.take((0, 1)), Taken::Place);
        book.placed("new".into(), on((0, 1)));
        book.listed(generation, &HashSet::from(["kept"]));
        assert_eq!(book.load((0, 1)), 2, "old is gone; kept and new stay");
        let generation = book.begin_listing();
        book.listed(generation, &HashSet::from(["kept", "new"]));
        assert_eq!(book.load((0, 1)), 2);
    }

    #[test]
    fn containers_go_to_the_least_used_cores_and_give_them_back() {
        let mut book = PlacementBook::default();
        assert_eq!(
            book.take_cores(1),
            Vec::<usize>::new(),
            "cores not known yet"
        );
        // One found by a listing before the cores were known is counted on its core.
        book.seed([(
            "found".to_owned(),
            Placement {
                shard: (0, 0),
                cores: vec![0],
                session: String::new(),
            },
        )]);
        book.cores_known(4);
        assert_eq!(book.take_cores(1), [1]);
        assert_eq!(book.take_cores(2), [2, 3]);
        assert_eq!(book.take_cores(1), [0]);
        assert_eq!(
            book.take_cores(4),
            Vec::<usize>::new(),
            "every core: no pin"
        );
        // Cores 0 to 3 hold 2, 1, 1, 1.
        let placement = Placement {
            shard: (0, 0),
            cores: book.take_cores(3),
            session: String::new(),
        };
        assert_eq!(placement.cores, [1, 2, 3]);
        assert_eq!(placement.cpuset(), "1,2,3");
        book.placed("three".into(), placement);
        book.placed("unpinned".into(), on((0, 0)));
        let mut pinned: Vec<String> = book.pinned().into_iter().map(|(id, _)| id).collect();
        pinned.sort();
        assert_eq!(pinned, ["found", "three"]);
        book.removed("three");
        book.removed("found");
        assert_eq!(book.core_load, [1, 1, 1, 1]);
    }

    #[test]
    fn cpusets_read_as_the_engine_writes_them() {
        assert_eq!(parse_cpuset("0,2"), [0, 2]);
        assert_eq!(parse_cpuset("0-2,5"), [0, 1, 2, 5]);
        assert_eq!(parse_cpuset(""), Vec::<usize>::new());
        assert_eq!(parse_cpuset("x"), Vec::<usize>::new());
        assert_eq!(parse_cpuset("3-1"), Vec::<usize>::new());
        // What a session may ask for is never expanded past the kernel's most cores.
        assert_eq!(parse_cpuset("0-99999999999"), Vec::<usize>::new());
        assert_eq!(parse_cpuset("0-18446744073709551615"), Vec::<usize>::new());
        assert_eq!(
            parse_cpuset(&vec!["0-8191"; 100].join(",")),
            Vec::<usize>::new()
        );
        assert_eq!(cores_for(500_000_000), 1);
        assert_eq!(cores_for(1_000_000_000), 1);
        assert_eq!(cores_for(1_500_000_000), 2);
        assert_eq!(cores_for(0), 1);
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
