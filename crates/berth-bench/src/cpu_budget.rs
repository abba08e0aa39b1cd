//! A CPU budget for one process: a cgroup of its own with a CFS quota. Figure 15 gives each
//! `berth serve` the same budget, as machines of their own would, so that adding an instance
//! adds what a machine would, and the load generator and Redis on this host do not take from it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The quota's period, as the engine uses for `--cpus`.
const PERIOD_US: u64 = 100_000;

/// A process held to `cores`; back on the host's whole CPU when dropped.
#[derive(Debug)]
pub struct CpuBudget {
    dir: PathBuf,
    /// The hierarchy's root cgroup, where the process goes back.
    root: PathBuf,
}

impl CpuBudget {
    /// Moves `pid` (every thread of it) into a new cgroup `name` held to `cores`.
    pub fn hold(pid: u32, name: &str, cores: f64) -> anyhow::Result<Self> {
        let quota = (cores * PERIOD_US as f64) as u64;
        let (root, limit) = hierarchy().context(
            "no cgroup hierarchy with the cpu controller this process may write (v1's \
             /sys/fs/cgroup/cpu, or v2's with cpu in cgroup.subtree_control)",
        )?;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
        let budget = Self { dir, root };
        match limit {
            Limit::V1 => {
                budget.write("cpu.cfs_period_us", &PERIOD_US.to_string())?;
                budget.write("cpu.cfs_quota_us", &quota.to_string())?;
            }
            Limit::V2 => budget.write("cpu.max", &format!("{quota} {PERIOD_US}"))?,
        }
        budget.write("cgroup.procs", &pid.to_string())?;
        Ok(budget)
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        let path = self.dir.join(file);
        std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for CpuBudget {
    fn drop(&mut self) {
        // A cgroup goes only once empty: whatever still runs in it moves back to the root.
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

enum Limit {
    V1,
    V2,
}

/// The cpu controller's hierarchy on this host, if this process may make cgroups in it.
fn hierarchy() -> Option<(PathBuf, Limit)> {
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("tasks").exists() {
        return Some((v1.to_owned(), Limit::V1));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "cpu")
        .then(|| (v2.to_owned(), Limit::V2))
}
