//! Facts about the host the control plane runs on.

use std::path::{Path, PathBuf};

/// `MemAvailable` from `/proc/meminfo`, in MiB: what new containers can still get without
/// pushing the host into swap or the OOM killer. `None` where it cannot be read.
pub fn available_memory_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// CPU time a container's processes have used so far, from its cgroup on this host (v1's
/// `cpuacct.usage` or v2's `cpu.stat`): a file read, not an engine call. `None` where the
/// cgroup is not found (another cgroup layout, a remote engine).
pub fn container_cpu_time(container_id: &str) -> Option<std::time::Duration> {
    let v1 = [
        format!("/sys/fs/cgroup/cpuacct/docker/{container_id}"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}"),
    ];
    if let Some(used) = v1.iter().find_map(|dir| cpuacct_usage(Path::new(dir))) {
        return Some(used);
    }
    container_v2_cgroups(container_id).iter().find_map(|dir| {
        let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        stat_value(&stat, "usage_usec").map(std::time::Duration::from_micros)
    })
}

/// How many CPU periods a container's cgroup on this host ran into its quota in
/// (`nr_throttled` of v1's `cpu` hierarchy or v2's `cpu.stat`); `None` where it is not found.
pub fn container_cpu_throttles(container_id: &str) -> Option<u64> {
    let v1 = [
        PathBuf::from(format!("/sys/fs/cgroup/cpu/docker/{container_id}")),
        PathBuf::from(format!("/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}")),
    ];
    v1.iter()
        .chain(container_v2_cgroups(container_id).iter())
        .find_map(|dir| cpu_throttles(dir))
}

/// `nr_throttled` of a cgroup's `cpu.stat`, which cgroup v1 and v2 both keep.
pub fn cpu_throttles(dir: &Path) -> Option<u64> {
    stat_value(
        &std::fs::read_to_string(dir.join("cpu.stat")).ok()?,
        "nr_throttled",
    )
}

/// Where the engine puts a container's cgroup under v2: by its `systemd` driver, or its
/// `cgroupfs` one.
fn container_v2_cgroups(container_id: &str) -> [PathBuf; 2] {
    [
        PathBuf::from(format!(
            "/sys/fs/cgroup/system.slice/docker-{container_id}.scope"
        )),
        PathBuf::from(format!("/sys/fs/cgroup/docker/{container_id}")),
    ]
}

/// A `key value` line's value in a cgroup's stat file.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The CPU time a cgroup v1 `cpuacct` directory counts for its tasks and its children's.
pub fn cpuacct_usage(dir: &Path) -> Option<std::time::Duration> {
    let text = std::fs::read_to_string(dir.join("cpuacct.usage")).ok()?;
    text.trim()
        .parse()
        .ok()
        .map(std::time::Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    #[test]
    fn available_memory_is_read_on_linux() {
        let mb = super::available_memory_mb().expect("/proc/meminfo has MemAvailable");
        assert!(mb > 0);
    }
}
