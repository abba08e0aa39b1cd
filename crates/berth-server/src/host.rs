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

#[cfg(test)]
mod tests {
    #[test]
    fn available_memory_is_read_on_linux() {
        let mb = super::available_memory_mb().expect("/proc/meminfo has MemAvailable");
        assert!(mb > 0);
    }
}
