//! The default store budget: a share of the container's memory limit (cgroup v2 or v1), else a fixed default.

use std::path::Path;

use super::DEFAULT_MAX_STORE_BYTES;

/// cgroup v2: the limit of the container's own cgroup (its namespace root).
const CGROUP_V2_LIMIT: &str = "/sys/fs/cgroup/memory.max";
/// cgroup v1: the memory controller's limit.
const CGROUP_V1_LIMIT: &str = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
/// cgroup v1 writes "no limit" as a huge number (the largest page-aligned i64); anything from 1 PiB up is taken
/// as no limit.
const NO_LIMIT_FROM: u64 = 1 << 50;

/// The store's share of the container's memory. The rest is for what is not in the store: connections and their
/// buffers, responses being written, the label index, the allocator's own slack.
pub fn from_memory_limit(limit: u64) -> usize {
    usize::try_from(limit / 2).unwrap_or(usize::MAX)
}

/// A memory limit as cgroup files write it: a number of bytes, or `max` for none. `None` when there is no usable
/// limit.
pub fn parse_memory_limit(text: &str) -> Option<u64> {
    let limit = text.trim().parse::<u64>().ok()?;
    (limit > 0 && limit < NO_LIMIT_FROM).then_some(limit)
}

/// The memory limit of the container this process runs in, if any (cgroup v2 first, then v1).
pub fn container_memory_limit() -> Option<u64> {
    [CGROUP_V2_LIMIT, CGROUP_V1_LIMIT].iter().find_map(|path| read_limit(Path::new(path)))
}

fn read_limit(path: &Path) -> Option<u64> {
    parse_memory_limit(&std::fs::read_to_string(path).ok()?)
}

/// `--max-store-bytes` when the flag is not given: half the container's memory limit, else
/// [`DEFAULT_MAX_STORE_BYTES`].
pub fn default_max_store_bytes() -> usize {
    container_memory_limit().map_or(DEFAULT_MAX_STORE_BYTES, from_memory_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limits_are_read_in_both_spellings_and_no_limit_is_none() {
        assert_eq!(parse_memory_limit("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_limit("max\n"), None, "cgroup v2 without a limit");
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None, "cgroup v1 without a limit");
        assert_eq!(parse_memory_limit("0"), None);
        assert_eq!(parse_memory_limit(""), None);
        assert_eq!(from_memory_limit(512 << 20), 256 << 20);
    }

    #[test]
    fn the_manifests_limit_gives_the_fixed_default() {
        // deploy/k8s/deployment.yaml limits memory to 512Mi: the derived budget equals the fixed one.
        assert_eq!(from_memory_limit(512 << 20), DEFAULT_MAX_STORE_BYTES);
    }

    #[test]
    fn a_limit_is_read_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.max");
        std::fs::write(&file, "1073741824\n").unwrap();
        assert_eq!(read_limit(&file), Some(1 << 30));
        std::fs::write(&file, "max\n").unwrap();
        assert_eq!(read_limit(&file), None);
        assert_eq!(read_limit(&dir.path().join("absent")), None);
    }
}
