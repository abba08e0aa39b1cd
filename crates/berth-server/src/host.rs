//! Facts about the host the control plane runs on.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Where the host's cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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

/// CPU time a container's processes have used so far, from its cgroup on this host: a file
/// read, not an engine call. `None` where the cgroup is not found (a layout not named in
/// [`container_dirs`], an engine on another host).
pub fn container_cpu_time(container_id: &str) -> Option<Duration> {
    cpu_time_under(Path::new(CGROUP_ROOT), container_id)
}

/// How many CPU periods a container ran into its quota in, read as [`container_cpu_time`]
/// reads its time.
pub fn container_cpu_throttles(container_id: &str) -> Option<u64> {
    cpu_throttles_under(Path::new(CGROUP_ROOT), container_id)
}

fn cpu_time_under(root: &Path, container_id: &str) -> Option<Duration> {
    container_dirs(root, "cpuacct", container_id)
        .iter()
        .find_map(|dir| cpu_time(dir))
}

fn cpu_throttles_under(root: &Path, container_id: &str) -> Option<u64> {
    container_dirs(root, "cpu", container_id)
        .iter()
        .find_map(|dir| cpu_throttles(dir))
}

/// Where the engine puts a container's cgroup: under cgroup v1's `controller` hierarchy (or
/// the `cpu,cpuacct` one both controllers share, where no link names it by one) by its
/// `cgroupfs` driver, or its `systemd` one; then the same under v2's one hierarchy.
fn container_dirs(root: &Path, controller: &str, container_id: &str) -> Vec<PathBuf> {
    let scope = format!("docker-{container_id}.scope");
    [
        root.join(controller),
        root.join("cpu,cpuacct"),
        root.to_owned(),
    ]
    .into_iter()
    .flat_map(|hierarchy| {
        [
            hierarchy.join("docker").join(container_id),
            hierarchy.join("system.slice").join(&scope),
        ]
    })
    .collect()
}

/// CPU time a cgroup's tasks and its children's have used: v1's `cpuacct.usage`, or
/// `usage_usec` in v2's `cpu.stat`.
pub fn cpu_time(dir: &Path) -> Option<Duration> {
    if let Ok(text) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
        return text.trim().parse().ok().map(Duration::from_nanos);
    }
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    stat_value(&stat, "usage_usec").map(Duration::from_micros)
}

/// `nr_throttled` of a cgroup's `cpu.stat`, which cgroup v1 and v2 both keep.
pub fn cpu_throttles(dir: &Path) -> Option<u64> {
    stat_value(
        &std::fs::read_to_string(dir.join("cpu.stat")).ok()?,
        "nr_throttled",
    )
}

/// A `key value` line's value in a cgroup's stat file.
pub fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_read_on_linux() {
        let mb = available_memory_mb().expect("/proc/meminfo has MemAvailable");
        assert!(mb > 0);
    }

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_containers_cpu_is_read_in_each_layout_the_engine_makes() {
        let v1 = tempfile::tempdir().unwrap();
        let root = v1.path();
        // cgroup v1, the engine's cgroupfs driver.
        write(root.join("cpuacct/docker/a/cpuacct.usage"), "1500000000\n");
        write(
            root.join("cpu/docker/a/cpu.stat"),
            "nr_periods 10\nnr_throttled 3\nthrottled_time 5\n",
        );
        // cgroup v1, its systemd driver.
        write(
            root.join("cpuacct/system.slice/docker-b.scope/cpuacct.usage"),
            "2000",
        );
        write(
            root.join("cpu/system.slice/docker-b.scope/cpu.stat"),
            "nr_periods 1\nnr_throttled 0\n",
        );
        assert_eq!(cpu_time_under(root, "a"), Some(Duration::from_millis(1500)));
        assert_eq!(cpu_throttles_under(root, "a"), Some(3));
        assert_eq!(cpu_time_under(root, "b"), Some(Duration::from_micros(2)));
        assert_eq!(cpu_throttles_under(root, "b"), Some(0));
        // Co-mounted, with no `cpu` or `cpuacct` link to the shared hierarchy.
        write(root.join("cpu,cpuacct/docker/e/cpuacct.usage"), "7000");
        write(
            root.join("cpu,cpuacct/docker/e/cpu.stat"),
            "nr_throttled 4\n",
        );
        assert_eq!(cpu_time_under(root, "e"), Some(Duration::from_micros(7)));
        assert_eq!(cpu_throttles_under(root, "e"), Some(4));
        assert_eq!(cpu_time_under(root, "c"), None);
        assert_eq!(cpu_throttles_under(root, "c"), None);

        // cgroup v2, either driver: one `cpu.stat` with both.
        let v2 = tempfile::tempdir().unwrap();
        let root = v2.path();
        let stat = "usage_usec 250\nuser_usec 200\nnr_throttled 7\nthrottled_usec 9\n";
        write(root.join("system.slice/docker-c.scope/cpu.stat"), stat);
        write(root.join("docker/d/cpu.stat"), stat);
        for id in ["c", "d"] {
            assert_eq!(cpu_time_under(root, id), Some(Duration::from_micros(250)));
            assert_eq!(cpu_throttles_under(root, id), Some(7));
        }
        // A key is a whole word: a longer key that begins with it is another.
        assert_eq!(
            stat_value("usage_usec_x 1\nusage_usec 2", "usage_usec"),
            Some(2)
        );
    }
}
