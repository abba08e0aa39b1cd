//! One cgroup per session with Docker, `/berth/<instance>/<session>`, which its container and every
//! container it makes through its Docker API are placed under (`CgroupParent`): the template's
//! memory, CPU and pids limits are set on it too, so they bound the session and its children
//! together, not each of them alone.
//!
//! Only where the engine places containers by cgroup path (its `cgroupfs` driver) on cgroup
//! v1, and the control plane can write the hierarchy (root, on the engine's host); elsewhere
//! each child keeps limits of its own equal to the session's (see docs/docker-in-session.md).

use std::{
    io,
    path::{Path, PathBuf},
};

/// The CPU period the quota is a share of, as the engine uses for `--cpus`.
const CPU_PERIOD_US: i64 = 100_000;

/// The limits of one session's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
}

/// The cgroup v1 hierarchies the budgets of one Berth installation's sessions are kept in.
#[derive(Debug, Clone)]
pub struct SessionBudgets {
    root: PathBuf,
    /// `docker.instance`: two installations on one host keep their sessions' cgroups apart,
    /// so neither's sweep takes the other's for an ended session's.
    instance: String,
}

impl SessionBudgets {
    /// Budgets under `root` when it holds cgroup v1's `memory`, `cpu` and `pids` hierarchies
    /// and this process may make cgroups in them; `None` otherwise.
    pub fn detect(root: &Path, instance: &str) -> Option<Self> {
        // A path segment of its own, whatever the instance is called.
        let instance = instance.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
        let budgets = Self {
            root: root.to_owned(),
            instance,
        };
        // A v1 hierarchy's root lists its tasks; under v2 there is no `memory/tasks`, and
        // making `memory/` there would make a cgroup of that name.
        let writable = ["memory", "cpu", "pids"].iter().all(|controller| {
            let hierarchy = root.join(controller);
            let dir = hierarchy.join("berth").join(&budgets.instance);
            hierarchy.join("tasks").exists()
                && std::fs::create_dir_all(&dir).is_ok()
                && dir.join("tasks").exists()
        });
        writable.then_some(budgets)
    }

    /// The `CgroupParent` of a session's containers, as the engine's `cgroupfs` driver reads it.
    pub fn parent(&self, session_id: &str) -> String {
        format!("/berth/{}/{session_id}", self.instance)
    }

    fn dir(&self, controller: &str, session_id: &str) -> PathBuf {
        self.root
            .join(controller)
            .join("berth")
            .join(&self.instance)
            .join(session_id)
    }

    /// Makes the session's cgroup unless it exists, and sets its limits (again: a host that
    /// restarted lost them, and the engine remakes the path without them).
    pub fn ensure(&self, session_id: &str, limits: Limits) -> io::Result<()> {
        let memory = self.dir("memory", session_id);
        std::fs::create_dir_all(&memory)?;
        std::fs::write(
            memory.join("memory.limit_in_bytes"),
            limits.memory_bytes.to_string(),
        )?;
        // No swap beyond the limit, as for each container; absent without swap accounting.
        let memsw = memory.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            std::fs::write(memsw, limits.memory_bytes.to_string())?;
        }
        let cpu = self.dir("cpu", session_id);
        std::fs::create_dir_all(&cpu)?;
        std::fs::write(cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
        let quota = limits.nano_cpus / (1_000_000_000 / CPU_PERIOD_US);
        std::fs::write(cpu.join("cpu.cfs_quota_us"), quota.to_string())?;
        let pids = self.dir("pids", session_id);
        std::fs::create_dir_all(&pids)?;
        std::fs::write(pids.join("pids.max"), limits.pids.to_string())?;
        Ok(())
    }

    /// CPU time the session and its children have used: the engine's `cgroupfs` driver makes
    /// the session's cgroup in the `cpuacct` hierarchy too, as its containers' parent.
    pub fn cpu_time(&self, session_id: &str) -> Option<std::time::Duration> {
        crate::host::cpu_time(&self.dir("cpuacct", session_id))
    }

    /// How many CPU periods the session's cgroup ran into its quota in.
    pub fn cpu_throttles(&self, session_id: &str) -> Option<u64> {
        crate::host::cpu_throttles(&self.dir("cpu", session_id))
    }

    /// How many CPU periods the session's own container ran into its quota in (its own, of
    /// the session's size).
    pub fn container_cpu_throttles(&self, session_id: &str, container_id: &str) -> Option<u64> {
        crate::host::cpu_throttles(&self.dir("cpu", session_id).join(container_id))
    }

    /// Removes the session's cgroup once nothing is in it: an empty cgroup is a directory the
    /// kernel lets go of with `rmdir`. One still in use stays, for the next removal or sweep.
    pub fn remove(&self, session_id: &str) {
        for instance in self.instance_dirs() {
            let _ = std::fs::remove_dir(instance.join(session_id));
        }
    }

    /// The sessions with a cgroup here, for the sweep.
    pub fn sessions(&self) -> Vec<String> {
        let mut sessions: Vec<String> = self
            .instance_dirs()
            .iter()
            .flat_map(|instance| std::fs::read_dir(instance).into_iter().flatten())
            .filter_map(|entry| {
                let entry = entry.ok()?;
                entry.file_type().ok()?.is_dir().then_some(())?;
                entry.file_name().into_string().ok()
            })
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions
    }

    /// This installation's directory in every hierarchy: the engine's `cgroupfs` driver makes a
    /// session's cgroup in each (`cpuacct`, `blkio`, `freezer`...), not only in those whose
    /// limits are set here, and each is removed with the session.
    fn instance_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|hierarchy| hierarchy.path().join("berth").join(&self.instance))
            .filter(|dir| dir.is_dir())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in hierarchy: directories with the files the kernel would make.
    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for controller in ["memory", "cpu", "pids"] {
            let dir = root.path().join(controller).join("berth/test_1");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(root.path().join(controller).join("tasks"), "").unwrap();
            std::fs::write(dir.join("tasks"), "").unwrap();
        }
        root
    }

    #[test]
    fn a_sessions_limits_are_written_on_its_cgroup_and_the_cgroup_goes_with_it() {
        let root = fake_root();
        let budgets = SessionBudgets::detect(root.path(), "test/1").expect("v1 hierarchies");
        let limits = Limits {
            memory_bytes: 256 << 20,
            nano_cpus: 1_500_000_000,
            pids: 256,
        };
        budgets.ensure("s1", limits).unwrap();
        let read = |path: &str| {
            std::fs::read_to_string(root.path().join(path.replace("berth/", "berth/test_1/")))
                .unwrap()
        };
        assert_eq!(read("memory/berth/s1/memory.limit_in_bytes"), "268435456");
        assert_eq!(read("cpu/berth/s1/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu/berth/s1/cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids/berth/s1/pids.max"), "256");
        assert_eq!(budgets.parent("s1"), "/berth/test_1/s1");
        assert_eq!(budgets.sessions(), ["s1"]);
        // The engine makes a session's cgroup in hierarchies whose limits are not set here
        // too, where only it may be left; a file beside the hierarchies is none.
        std::fs::create_dir_all(root.path().join("cpuacct/berth/test_1/s1")).unwrap();
        std::fs::create_dir_all(root.path().join("freezer/berth/test_1/s2")).unwrap();
        std::fs::write(root.path().join("cgroup.procs"), "").unwrap();
        assert_eq!(budgets.sessions(), ["s1", "s2"]);
        // Another installation's sessions are not this one's.
        let other = SessionBudgets {
            root: root.path().to_owned(),
            instance: "other".into(),
        };
        assert!(other.sessions().is_empty());

        // The kernel's empty cgroup is an empty directory; the fake's holds the files.
        for controller in ["memory", "cpu", "pids"] {
            let dir = root.path().join(controller).join("berth/test_1/s1");
            for file in std::fs::read_dir(&dir).unwrap() {
                std::fs::remove_file(file.unwrap().path()).unwrap();
            }
        }
        budgets.remove("s1");
        budgets.remove("s2");
        assert!(budgets.sessions().is_empty());
        assert!(!root.path().join("cpuacct/berth/test_1/s1").exists());
    }

    #[test]
    fn a_host_without_v1_hierarchies_has_no_budgets() {
        let root = tempfile::tempdir().unwrap();
        assert!(SessionBudgets::detect(root.path(), "default").is_none());
    }
}
