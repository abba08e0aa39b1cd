//! Sessions' CPU use, read from their cgroups, and what the control plane does with it: it
//! keeps its own threads off the cores of sessions that take all the CPU they may
//! (`docker.steer_control_plane`).
//!
//! Pinning (`docker.pin_cpus`) keeps a busy session's threads on cores of their own, but a
//! keystroke to its quiet neighbour passes through the control plane (the API, then the relay
//! to the neighbour's agent), and where the control plane's threads run on the busy core they
//! wait out the busy session's time slices. On two cores that took a neighbour's terminal echo
//! p99 past twice its quiet value; kept off the busy core, it stays under (docs/security.md).
//!
//! A session is busy when it wants more CPU than it gets: it ran into its quota (the kernel
//! counts the periods it was throttled in), or it used nearly all of the cores it is pinned to
//! ([`FULL`]; a session of `cpus = 1` on one core is never throttled, however hard it loops).
//! That tells a program that takes every cycle it can get (a build, a miner, a loop) from one
//! that works in bursts and sleeps between (a terminal flooded with keystrokes used a quarter
//! of its core), and only the first makes its core's other threads wait. Every [`TICK`] each
//! pinned session is read; the cores of a busy one count as busy for [`HOLD`] after, so that a
//! session busy in bursts does not draw the control plane to and fro. The threads keep to the
//! other cores, unless none is left or the control plane would need more than [`OWN_SHARE`] of
//! them: it serves every session, and a core it saturates would slow them all.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use rustix::{
    io::Errno,
    process::Pid,
    thread::{CpuSet, sched_getaffinity, sched_setaffinity},
};

use super::DockerRuntime;

/// How often sessions are looked at: a few small files read per pinned session.
const TICK: Duration = Duration::from_millis(500);

/// The share of its cores a session uses over a tick that makes it busy, throttled or not.
const FULL: f64 = 0.8;

/// How long a core stays busy after it was last seen so, and the control plane on every core
/// after it last needed them.
const HOLD: Duration = Duration::from_secs(10);

/// Ticks in a row with no pinned session readable before the log is told.
const UNREADABLE_TICKS: u32 = 20;

/// The most of the cores it keeps to that the control plane may use (its own CPU time over a
/// tick) before it takes every core again.
const OWN_SHARE: f64 = 0.75;

/// A session's CPU counters, as its cgroups keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuSample {
    /// CPU time used so far.
    used: Duration,
    /// Periods it ran into its quota in so far.
    throttles: u64,
}

impl DockerRuntime {
    /// CPU time the session has used, as [`Self::session_cpu_sample`] reads it.
    pub(super) fn session_cpu_time(
        &self,
        session_id: &str,
        container_id: &str,
    ) -> Option<Duration> {
        self.session_cpu_sample(session_id, container_id)
            .map(|sample| sample.used)
    }

    /// The session's counters: its cgroup's, which holds its children too, where sessions have
    /// one (`budget`); else its container's. Under a session's cgroup its container has a quota
    /// of its own, of the same size: whichever of the two the kernel throttles counts.
    fn session_cpu_sample(&self, session_id: &str, container_id: &str) -> Option<CpuSample> {
        if let Some(budgets) = self.budgets_of(session_id)
            && let Some(used) = budgets.cpu_time(session_id)
        {
            let throttles = budgets.cpu_throttles(session_id).unwrap_or(0)
                + budgets
                    .container_cpu_throttles(session_id, container_id)
                    .unwrap_or(0);
            return Some(CpuSample { used, throttles });
        }
        Some(CpuSample {
            used: crate::host::container_cpu_time(container_id)?,
            throttles: crate::host::container_cpu_throttles(container_id).unwrap_or(0),
        })
    }

    /// The session budgets, once the first create looked for them (without waiting for it),
    /// for a session named (a container from before labels named none).
    fn budgets_of(&self, session_id: &str) -> Option<&super::budget::SessionBudgets> {
        if session_id.is_empty() {
            return None;
        }
        self.budgets.get().and_then(Option::as_ref)
    }

    /// Keeps the control plane's threads off the cores of busy sessions for as long as the
    /// returned future runs; dropped, it gives them back every core they had.
    pub async fn steer_control_plane(self: Arc<Self>) {
        let mut threads = match Threads::new() {
            Ok(threads) => threads,
            Err(err) => {
                tracing::warn!(
                    "the control plane's cores cannot be read ({err}): it is not kept off busy \
                     cores (docker.steer_control_plane)"
                );
                return;
            }
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The first tick is at once: its own CPU time is measured from there, over a whole tick.
        tick.tick().await;
        let mut steering = Steering::new(threads.allowed.clone(), Instant::now());
        // Ticks in a row where no pinned session could be read (one just made has no cgroup
        // until it starts), up to the one that tells the log.
        let mut unreadable = 0;
        loop {
            tick.tick().await;
            let pinned = self.placements().pinned();
            let runtime = self.clone();
            let read = tokio::task::spawn_blocking(move || {
                let readings: Vec<Reading> = pinned
                    .into_iter()
                    .map(|(container, placement)| {
                        let sample = runtime.session_cpu_sample(&placement.session, &container);
                        (container, placement.cores, sample)
                    })
                    .collect();
                // When they were read, not when this task next runs: use over a tick is
                // divided by the time between readings.
                (readings, Instant::now())
            })
            .await;
            let Ok((readings, read_at)) = read else {
                continue;
            };
            let none_read =
                !readings.is_empty() && readings.iter().all(|(_, _, sample)| sample.is_none());
            unreadable = if none_read { unreadable + 1 } else { 0 };
            if unreadable == UNREADABLE_TICKS {
                tracing::warn!(
                    "no pinned session's CPU can be read from this host's cgroups (another \
                     layout, or the engine on another host): the control plane is not kept off \
                     busy cores (docker.steer_control_plane)"
                );
            }
            let chosen = steering.observe(readings, read_at, own_cpu_time());
            if let Err(err) = threads.keep_to(chosen) {
                tracing::warn!(
                    "the control plane's threads cannot be moved ({err}): they are given every \
                     core back and stay there (docker.steer_control_plane)"
                );
                return;
            }
        }
    }
}

/// One tick's reading of a pinned container: its id, its cores, and its counters (none where
/// its cgroups cannot be read).
type Reading = (String, Vec<usize>, Option<CpuSample>);

/// What the steering remembers between ticks.
struct Steering {
    choice: CoreChoice,
    /// Each pinned container's counters at the last tick.
    samples: HashMap<String, CpuSample>,
    /// The control plane's own CPU time at the last tick.
    own: Duration,
    at: Instant,
}

impl Steering {
    fn new(allowed: Vec<usize>, now: Instant) -> Self {
        Self {
            choice: CoreChoice::new(allowed),
            samples: HashMap::new(),
            own: own_cpu_time(),
            at: now,
        }
    }

    /// Takes in one tick's readings and the control plane's own CPU time; answers the cores
    /// the control plane should keep to.
    fn observe(&mut self, readings: Vec<Reading>, now: Instant, own: Duration) -> Vec<usize> {
        // A tick comes no sooner than a tick after the last; the floor only keeps the
        // arithmetic finite.
        let wall = now.duration_since(self.at).as_secs_f64().max(0.001);
        self.at = now;
        let mut busy = HashSet::new();
        let mut samples = HashMap::with_capacity(readings.len());
        for (container, cores, sample) in readings {
            let Some(sample) = sample else { continue };
            // A container's first reading is where it is measured from: throttled an hour ago
            // is not busy now.
            if let Some(before) = self.samples.get(&container) {
                let used = sample.used.saturating_sub(before.used).as_secs_f64() / wall;
                if sample.throttles > before.throttles || used >= FULL * cores.len() as f64 {
                    busy.extend(cores);
                }
            }
            samples.insert(container, sample);
        }
        self.samples = samples;
        let own_cores = own.saturating_sub(self.own).as_secs_f64() / wall;
        self.own = own;
        self.choice.choose(&busy, own_cores, now)
    }
}

/// The cores this process's threads run on; dropped, it gives them back those they had.
struct Threads {
    /// What they had at the start.
    allowed: Vec<usize>,
    /// What they were last put on.
    current: Vec<usize>,
    /// Whether some thread may be off `allowed`: a move was begun (even one that failed
    /// midway) and no whole move back has ended since.
    moved: bool,
}

impl Threads {
    fn new() -> Result<Self, Errno> {
        let set = sched_getaffinity(None)?;
        let allowed: Vec<usize> = (0..CpuSet::MAX_CPU)
            .filter(|&core| set.is_set(core))
            .collect();
        Ok(Self {
            current: allowed.clone(),
            allowed,
            moved: false,
        })
    }

    fn keep_to(&mut self, cores: Vec<usize>) -> Result<(), Errno> {
        // While kept to some cores, each tick moves the threads made since too.
        if cores != self.allowed || self.moved {
            self.moved = true;
            let whole = run_on(&cores)?;
            self.moved = cores != self.allowed || !whole;
        }
        if cores != self.current {
            if cores == self.allowed {
                tracing::info!("the control plane runs on every core again");
            } else {
                tracing::info!(
                    ?cores,
                    "the control plane keeps off cores busy sessions hold"
                );
            }
            self.current = cores;
        }
        Ok(())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if self.moved && !matches!(run_on(&self.allowed), Ok(true)) {
            tracing::warn!("the control plane's threads may not all have every core back");
        }
    }
}

/// Which cores the control plane keeps to, given which are busy: the measuring and the moving
/// stay outside, so this is tested with made-up cores and times.
#[derive(Debug)]
struct CoreChoice {
    /// The cores the process was given (an operator's `taskset`, its container's cpuset): it
    /// never leaves them.
    allowed: Vec<usize>,
    /// Busy cores, and until when they count as busy.
    busy_until: HashMap<usize, Instant>,
    /// Until when the control plane keeps every core, having needed them.
    own_busy_until: Option<Instant>,
}

impl CoreChoice {
    fn new(allowed: Vec<usize>) -> Self {
        Self {
            allowed,
            busy_until: HashMap::new(),
            own_busy_until: None,
        }
    }

    /// `busy`: the cores of sessions busy over the last tick; `own`: the control plane's own
    /// use over it, in cores.
    fn choose(&mut self, busy: &HashSet<usize>, own: f64, now: Instant) -> Vec<usize> {
        for &core in busy {
            self.busy_until.insert(core, now + HOLD);
        }
        self.busy_until.retain(|_, until| *until > now);
        let kept: Vec<usize> = self
            .allowed
            .iter()
            .copied()
            .filter(|core| !self.busy_until.contains_key(core))
            .collect();
        if kept.is_empty() {
            return self.allowed.clone();
        }
        if own > kept.len() as f64 * OWN_SHARE {
            self.own_busy_until = Some(now + HOLD);
        }
        if self.own_busy_until.is_some_and(|until| until > now) {
            return self.allowed.clone();
        }
        kept
    }
}

/// Puts every thread of this process on `cores`; whether it knows it moved them all. A thread
/// made later inherits the set of the thread that makes it, so one made during a pass by a
/// thread not moved yet has the old set: passes go on until one finds no thread the others
/// missed, [`MOST_PASSES`] at most.
fn run_on(cores: &[usize]) -> Result<bool, Errno> {
    let mut set = CpuSet::new();
    for &core in cores.iter().filter(|&&core| core < CpuSet::MAX_CPU) {
        set.set(core);
    }
    let mut moved = HashSet::new();
    for _ in 0..MOST_PASSES {
        let mut found = false;
        for tid in thread_ids()? {
            if !moved.insert(tid) {
                continue;
            }
            found = true;
            match sched_setaffinity(Some(tid), &set) {
                // A thread that ended meanwhile.
                Ok(()) | Err(Errno::SRCH) => {}
                Err(err) => return Err(err),
            }
        }
        if !found {
            return Ok(true);
        }
    }
    Ok(false)
}

fn thread_ids() -> Result<Vec<Pid>, Errno> {
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|err| Errno::from_io_error(&err).unwrap_or(Errno::IO))?;
    Ok(tasks
        .flatten()
        .filter_map(|task| {
            task.file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
                .and_then(Pid::from_raw)
        })
        .collect())
}

/// Passes over the threads in one move: each finds those made during the one before.
const MOST_PASSES: usize = 4;

/// CPU time this process has used, all threads together.
fn own_cpu_time() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(spent.tv_sec).unwrap_or(0),
        u32::try_from(spent.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(list: &[usize]) -> HashSet<usize> {
        list.iter().copied().collect()
    }

    #[test]
    fn the_control_plane_keeps_off_busy_cores_for_a_while_unless_it_needs_them() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut choice = CoreChoice::new(vec![0, 1, 2, 3]);
        assert_eq!(choice.choose(&cores(&[]), 0.1, at(0)), [0, 1, 2, 3]);
        assert_eq!(choice.choose(&cores(&[1, 2]), 0.1, at(500)), [0, 3]);
        // Paused, a session's cores stay busy for a while; then the control plane comes back.
        assert_eq!(choice.choose(&cores(&[]), 0.1, at(1000)), [0, 3]);
        assert_eq!(
            choice.choose(&cores(&[]), 0.1, at(500) + HOLD),
            [0, 1, 2, 3]
        );
        // Every core busy: nowhere better to go, and its own use is no reason to stay once
        // one is free again.
        assert_eq!(
            choice.choose(&cores(&[0, 1, 2, 3]), 0.5, at(20_000)),
            [0, 1, 2, 3]
        );
        assert_eq!(
            choice.choose(&cores(&[0, 1, 2]), 0.1, at(20_000) + HOLD),
            [3]
        );
        // A control plane that needs more than it may of what it would keep takes every core,
        // and keeps them a while after.
        let mut choice = CoreChoice::new(vec![0, 1]);
        assert_eq!(choice.choose(&cores(&[0]), 0.8, at(0)), [0, 1]);
        assert_eq!(choice.choose(&cores(&[0]), 0.1, at(500)), [0, 1]);
        assert_eq!(choice.choose(&cores(&[0]), 0.1, at(500) + HOLD), [1]);
        // It never goes where it was not allowed, whatever the engine's host has.
        let mut choice = CoreChoice::new(vec![2, 3]);
        assert_eq!(choice.choose(&cores(&[2, 5]), 0.0, at(0)), [3]);
    }

    #[test]
    fn a_session_is_busy_when_throttled_or_using_nearly_all_its_cores() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut steering = Steering::new(vec![0, 1, 2, 3], start);
        let reading = |id: &str, cores: &[usize], used_ms: u64, throttles: u64| {
            let used = Duration::from_millis(used_ms);
            (
                id.to_owned(),
                cores.to_vec(),
                Some(CpuSample { used, throttles }),
            )
        };
        // A container's first reading is where it is measured from: one that ran and was
        // throttled for an hour before is not busy for it.
        let chosen = steering.observe(
            vec![
                reading("quota", &[0], 3_600_000, 500),
                reading("whole-core", &[1], 3_600_000, 0),
                reading("bursts", &[2], 0, 0),
            ],
            start + second,
            steering.own,
        );
        assert_eq!(chosen, [0, 1, 2, 3]);
        // Throttled once, though it used little; 0.9 of its one core, never throttled; a
        // quarter of a core in bursts is not busy, nor is a container that cannot be read.
        let chosen = steering.observe(
            vec![
                reading("quota", &[0], 3_600_100, 501),
                reading("whole-core", &[1], 3_600_900, 0),
                reading("bursts", &[2], 250, 0),
                ("unreadable".to_owned(), vec![3], None),
            ],
            start + 2 * second,
            steering.own,
        );
        assert_eq!(chosen, [2, 3]);
        // Over two cores, 0.9 of a core is not all of them.
        let mut steering = Steering::new(vec![0, 1, 2], start);
        steering.observe(
            vec![reading("two", &[0, 1], 0, 0)],
            start + second,
            steering.own,
        );
        let chosen = steering.observe(
            vec![reading("two", &[0, 1], 900, 0)],
            start + 2 * second,
            steering.own,
        );
        assert_eq!(chosen, [0, 1, 2]);
        // The control plane's own use counts too: past three quarters of what it would keep,
        // it keeps every core.
        let chosen = steering.observe(
            vec![reading("two", &[0, 1], 2_900, 0)],
            start + 3 * second,
            steering.own,
        );
        assert_eq!(chosen, [2]);
        let own = steering.own + Duration::from_millis(800);
        let chosen = steering.observe(
            vec![reading("two", &[0, 1], 4_900, 0)],
            start + 4 * second,
            own,
        );
        assert_eq!(chosen, [0, 1, 2]);
    }
}
