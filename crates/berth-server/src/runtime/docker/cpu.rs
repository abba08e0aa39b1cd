//! Sessions' CPU use, read from their cgroups, and what the control plane does with it: it
//! keeps its own threads off the cores of sessions that run into their CPU limit
//! (`docker.steer_control_plane`).
//!
//! Pinning (`docker.pin_cpus`) keeps a busy session's threads on cores of their own, but a
//! keystroke to its quiet neighbour passes through the control plane (the API, then the relay
//! to the neighbour's agent), and where the control plane's threads run on the busy core they
//! wait out the busy session's time slices. On two cores that took a neighbour's terminal echo
//! p99 past twice its quiet value; kept off the busy core, it stays under (docs/security.md).
//!
//! A session is busy when it runs into its CPU quota: the kernel counts the periods it was
//! throttled in. That tells a program that would take every cycle it can get (a build, a
//! miner, a loop) from one that works hard in bursts and sleeps between (a terminal flooded
//! with keystrokes), which only the first harms its core's other threads. Every [`TICK`] each
//! pinned session's count is read; the cores of one throttled since count as busy for
//! [`HOLD`] after, so that a session busy in bursts does not draw the control plane to and fro.
//! The threads keep to the other cores, unless none is left or the control plane would need
//! more than [`OWN_SHARE`] of them: it serves every session, and a core it saturates would slow
//! them all.

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

/// How often sessions are looked at: one small file read per pinned session.
const TICK: Duration = Duration::from_millis(500);

/// How long a core stays busy after it was last seen so, and the control plane on every core
/// after it last needed them.
const HOLD: Duration = Duration::from_secs(10);

/// The most of the cores it keeps to that the control plane may use (its own CPU time over a
/// tick) before it takes every core again.
const OWN_SHARE: f64 = 0.75;

impl DockerRuntime {
    /// CPU time the session has used: its cgroup's, which holds its children too, where sessions
    /// have one (`budget`); else its container's.
    pub(super) fn session_cpu_time(
        &self,
        session_id: &str,
        container_id: &str,
    ) -> Option<Duration> {
        self.budgets_of(session_id)
            .and_then(|budgets| budgets.cpu_time(session_id))
            .or_else(|| crate::host::container_cpu_time(container_id))
    }

    /// How many CPU periods the session ran into its quota in, counted as
    /// [`Self::session_cpu_time`] counts its time.
    fn session_cpu_throttles(&self, session_id: &str, container_id: &str) -> Option<u64> {
        self.budgets_of(session_id)
            .and_then(|budgets| budgets.cpu_throttles(session_id))
            .or_else(|| crate::host::container_cpu_throttles(container_id))
    }

    /// The session budgets, once the first create looked for them (without waiting for it),
    /// for a session named (a container from before labels named none).
    fn budgets_of(&self, session_id: &str) -> Option<&super::budget::SessionBudgets> {
        if session_id.is_empty() {
            return None;
        }
        self.budgets.get().and_then(Option::as_ref)
    }

    /// Keeps the control plane's threads off the cores of sessions that run into their CPU
    /// limit, for as long as the returned future runs; dropped, it gives them back every core
    /// they had.
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
        let mut steering = Steering::new(threads.allowed.clone(), Instant::now());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let pinned = self.placements().pinned();
            let runtime = self.clone();
            let read = tokio::task::spawn_blocking(move || {
                pinned
                    .into_iter()
                    .map(|(container, placement)| {
                        let throttles =
                            runtime.session_cpu_throttles(&placement.session, &container);
                        (container, placement.cores, throttles)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let Ok(readings) = read else { continue };
            let chosen = steering.observe(readings, Instant::now(), own_cpu_time());
            if let Err(err) = threads.keep_to(chosen) {
                tracing::warn!(
                    "the control plane's threads cannot be moved ({err}): they stay on every \
                     core (docker.steer_control_plane)"
                );
                return;
            }
        }
    }
}

/// One tick's reading of a pinned container: its id, its cores, and its throttle count (none
/// where its cgroup cannot be read).
type Reading = (String, Vec<usize>, Option<u64>);

/// What the steering remembers between ticks.
struct Steering {
    choice: CoreChoice,
    /// Each pinned container's throttle count at the last tick.
    throttles: HashMap<String, u64>,
    /// The control plane's own CPU time at the last tick.
    own: Duration,
    at: Instant,
}

impl Steering {
    fn new(allowed: Vec<usize>, now: Instant) -> Self {
        Self {
            choice: CoreChoice::new(allowed),
            throttles: HashMap::new(),
            own: own_cpu_time(),
            at: now,
        }
    }

    /// Takes in one tick's readings and the control plane's own CPU time; answers the cores
    /// the control plane should keep to.
    fn observe(&mut self, readings: Vec<Reading>, now: Instant, own: Duration) -> Vec<usize> {
        let wall = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        let mut busy = HashSet::new();
        let mut throttles = HashMap::with_capacity(readings.len());
        for (container, cores, reading) in readings {
            let Some(reading) = reading else { continue };
            // A container's first reading is where its count starts: throttled an hour ago is
            // not busy now.
            if self
                .throttles
                .get(&container)
                .is_some_and(|&before| reading > before)
            {
                busy.extend(cores);
            }
            throttles.insert(container, reading);
        }
        self.throttles = throttles;
        let own_cores = if wall > 0.0 {
            own.saturating_sub(self.own).as_secs_f64() / wall
        } else {
            0.0
        };
        self.own = own;
        self.choice.choose(&busy, own_cores, now)
    }
}

/// The cores this process's threads run on; dropped, it gives them back those they had.
struct Threads {
    /// What they had at the start.
    allowed: Vec<usize>,
    current: Vec<usize>,
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
        })
    }

    fn keep_to(&mut self, cores: Vec<usize>) -> Result<(), Errno> {
        // While kept to some, each tick moves the threads made since too.
        if cores != self.current || cores != self.allowed {
            run_on(&cores)?;
        }
        if cores != self.current {
            if cores == self.allowed {
                tracing::info!("the control plane runs on every core again");
            } else {
                tracing::info!(
                    ?cores,
                    "the control plane keeps off cores sessions keep busy"
                );
            }
            self.current = cores;
        }
        Ok(())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if self.current != self.allowed {
            let _ = run_on(&self.allowed);
        }
    }
}

/// Which cores the control plane keeps to, given what was used on each: the measuring and the
/// moving stay outside, so this is tested with made-up loads and times.
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

    /// `busy`: the cores of sessions throttled over the last tick; `own`: the control plane's
    /// own use over it, in cores.
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
        if own > kept.len() as f64 * OWN_SHARE {
            self.own_busy_until = Some(now + HOLD);
        }
        let own_busy = self.own_busy_until.is_some_and(|until| until > now);
        if kept.is_empty() || own_busy {
            return self.allowed.clone();
        }
        kept
    }
}

/// Puts every thread of this process on `cores`. Threads made later inherit the set of the
/// thread that makes them.
fn run_on(cores: &[usize]) -> Result<(), Errno> {
    let mut set = CpuSet::new();
    for &core in cores.iter().filter(|&&core| core < CpuSet::MAX_CPU) {
        set.set(core);
    }
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|err| Errno::from_io_error(&err).unwrap_or(Errno::IO))?;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        match sched_setaffinity(Some(tid), &set) {
            // A thread that ended meanwhile.
            Ok(()) | Err(Errno::SRCH) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

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
        // Every core busy: nowhere better to go.
        assert_eq!(
            choice.choose(&cores(&[0, 1, 2, 3]), 0.1, at(20_000)),
            [0, 1, 2, 3]
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
    fn a_session_is_busy_when_throttled_since_the_last_tick() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut steering = Steering::new(vec![0, 1, 2], start);
        let reading = |id: &str, cores: &[usize], throttles: u64| {
            (id.to_owned(), cores.to_vec(), Some(throttles))
        };
        // A container's first count is where it starts: one throttled long ago is not busy.
        let chosen = steering.observe(
            vec![reading("hog", &[0, 1], 500), reading("quiet", &[2], 0)],
            start + second,
            steering.own,
        );
        assert_eq!(chosen, [0, 1, 2]);
        let chosen = steering.observe(
            vec![
                reading("hog", &[0, 1], 505),
                reading("quiet", &[2], 0),
                ("unreadable".to_owned(), vec![2], None),
            ],
            start + 2 * second,
            steering.own,
        );
        assert_eq!(chosen, [2]);
        // The control plane's own use counts too: past three quarters of core 2, it keeps
        // every core.
        let own = steering.own + Duration::from_millis(800);
        let chosen = steering.observe(vec![reading("hog", &[0, 1], 505)], start + 3 * second, own);
        assert_eq!(chosen, [0, 1, 2]);
    }
}
