//! The warm pool's bookkeeping: which pooled sessions are ready per template, how many are
//! warming, how many were claimed. Pure state; the actor does the I/O.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use berth_proto::pool::PoolStatus;

use crate::config::TemplateConfig;

/// After a warm-up fails, the pool of that template waits this long before trying again, so a
/// broken image does not make the control plane spin.
const BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Pool {
    /// Ready sessions per template, each with the engine generation it was seen running in.
    ready: HashMap<String, VecDeque<(String, u64)>>,
    warming: HashMap<String, usize>,
    claimed: HashMap<String, u64>,
    backoff_until: HashMap<String, Instant>,
}

impl Pool {
    /// Takes a ready session of `template`, oldest first. Each pooled session is handed out
    /// once. Entries seen under an earlier engine `generation` are dropped, never handed out:
    /// an engine restart stopped their containers and may have given their addresses to
    /// others (the engine watcher's sweep removes them and the pool warms new ones).
    pub fn take(&mut self, template: &str, generation: u64) -> Option<String> {
        let queue = self.ready.get_mut(template)?;
        queue.retain(|(_, seen)| *seen == generation);
        let (id, _) = queue.pop_front()?;
        *self.claimed.entry(template.to_owned()).or_default() += 1;
        Some(id)
    }

    /// Whether `take` would find a session of `template` now.
    pub fn has_ready(&self, template: &str, generation: u64) -> bool {
        self.ready
            .get(template)
            .is_some_and(|queue| queue.iter().any(|(_, seen)| *seen == generation))
    }

    /// Adds a session seen ready under engine `generation`; one already there is seen anew.
    pub fn add_ready(&mut self, template: &str, id: String, generation: u64) {
        let queue = self.ready.entry(template.to_owned()).or_default();
        match queue.iter_mut().find(|(ready, _)| *ready == id) {
            Some((_, seen)) => *seen = generation,
            None => queue.push_back((id, generation)),
        }
    }

    /// Forgets a session that can no longer be handed out (it failed or was deleted).
    pub fn forget(&mut self, id: &str) {
        for queue in self.ready.values_mut() {
            queue.retain(|(ready, _)| ready != id);
        }
    }

    pub fn warming_started(&mut self, template: &str) {
        *self.warming.entry(template.to_owned()).or_default() += 1;
    }

    pub fn warming_ended(&mut self, template: &str, ok: bool) {
        if let Some(n) = self.warming.get_mut(template) {
            *n = n.saturating_sub(1);
        }
        if !ok {
            self.backoff_until
                .insert(template.to_owned(), Instant::now() + BACKOFF);
        }
    }

    /// How many more sessions of each template to warm now so `min_ready` are ready, within
    /// `max` and out of any backoff.
    pub fn shortfall(&self, templates: &BTreeMap<String, TemplateConfig>) -> Vec<(String, usize)> {
        let now = Instant::now();
        templates
            .iter()
            .filter(|(name, _)| {
                self.backoff_until
                    .get(*name)
                    .is_none_or(|until| *until <= now)
            })
            .filter_map(|(name, template)| {
                let ready = self.ready.get(name).map_or(0, VecDeque::len);
                let warming = self.warming.get(name).copied().unwrap_or(0);
                let have = ready + warming;
                let want = template.pool.min_ready as usize;
                let room = template
                    .pool
                    .max
                    .map_or(usize::MAX, |max| (max as usize).saturating_sub(have));
                let missing = want.saturating_sub(have).min(room);
                (missing > 0).then(|| (name.clone(), missing))
            })
            .collect()
    }

    pub fn status(&self, templates: &BTreeMap<String, TemplateConfig>) -> Vec<PoolStatus> {
        templates
            .iter()
            .map(|(name, template)| PoolStatus {
                template: name.clone(),
                min_ready: template.pool.min_ready,
                max: template.pool.max,
                ready: self.ready.get(name).map_or(0, VecDeque::len),
                warming: self.warming.get(name).copied().unwrap_or(0),
                claimed: self.claimed.get(name).copied().unwrap_or(0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolConfig;

    fn templates(min_ready: u32, max: Option<u32>) -> BTreeMap<String, TemplateConfig> {
        let pool = PoolConfig { min_ready, max };
        BTreeMap::from([(
            "t".to_owned(),
            TemplateConfig {
                pool,
                ..TemplateConfig::default()
            },
        )])
    }

    #[test]
    fn the_shortfall_counts_ready_and_warming_and_respects_max() {
        let mut pool = Pool::default();
        assert_eq!(pool.shortfall(&templates(3, None)), [("t".to_owned(), 3)]);
        pool.add_ready("t", "s1".into(), 1);
        pool.warming_started("t");
        assert_eq!(pool.shortfall(&templates(3, None)), [("t".to_owned(), 1)]);
        assert!(pool.shortfall(&templates(3, Some(2))).is_empty());
        assert!(pool.shortfall(&templates(0, None)).is_empty());
    }

    #[test]
    fn a_session_is_taken_once_and_a_failure_backs_off() {
        let mut pool = Pool::default();
        pool.add_ready("t", "s1".into(), 1);
        pool.add_ready("t", "s1".into(), 1);
        assert_eq!(pool.take("t", 1).as_deref(), Some("s1"));
        assert_eq!(pool.take("t", 1), None);
        pool.warming_started("t");
        pool.warming_ended("t", false);
        assert!(
            pool.shortfall(&templates(2, None)).is_empty(),
            "backing off after a failure"
        );
        assert_eq!(pool.status(&templates(2, None))[0].claimed, 1);
    }

    #[test]
    fn entries_from_an_earlier_engine_generation_are_never_handed_out() {
        let mut pool = Pool::default();
        pool.add_ready("t", "old".into(), 1);
        pool.add_ready("t", "new".into(), 2);
        assert!(pool.has_ready("t", 2));
        pool.add_ready("t", "seen-again".into(), 1);
        pool.add_ready("t", "seen-again".into(), 2);
        assert_eq!(pool.take("t", 2).as_deref(), Some("new"));
        assert_eq!(pool.take("t", 2).as_deref(), Some("seen-again"));
        assert!(!pool.has_ready("t", 2));
        assert_eq!(
            pool.take("t", 2),
            None,
            "the stale entry is dropped, not served"
        );
        assert_eq!(pool.status(&templates(1, None))[0].ready, 0);
    }
}
