//! Facts about the host the control plane runs on.

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
        format!("/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"),
    ];
    for path in v1 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text
                .trim()
                .parse()
                .ok()
                .map(std::time::Duration::from_nanos);
        }
    }
    let v2 = [
        format!("/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{container_id}/cpu.stat"),
    ];
    for path in v2 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let micros = text
                .lines()
                .find_map(|line| line.strip_prefix("usage_usec "))?;
            return micros
                .trim()
                .parse()
                .ok()
                .map(std::time::Duration::from_micros);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn available_memory_is_read_on_linux() {
        let mb = super::available_memory_mb().expect("/proc/meminfo has MemAvailable");
        assert!(mb > 0);
    }
}
