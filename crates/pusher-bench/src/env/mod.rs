//! The bench's world: its own RabbitMQ vhost (with a dead-letter policy that counts what
//! the shared queue drops), its own account database and config keys in CouchDB, the mock
//! APNs, and `pusherd` child processes.

mod couch;
mod proxy;
mod pusherd;
mod rabbit;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use couch::Couch;
pub use proxy::CutProxy;
pub use pusherd::{Pusherd, PusherdConfig};
pub use rabbit::{Broker, Vhost};

/// Random lowercase hex.
pub fn rand_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

/// Revision generation (`"12-abc"` → 12).
pub fn rev_gen(doc: &Value) -> u64 {
    doc["_rev"]
        .as_str()
        .and_then(|r| r.split('-').next())
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// `VmRSS` and `VmHWM` (KiB) of a process.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU time of a process, in microseconds (from `/proc/<pid>/stat`, whose
/// unit is the 100 Hz clock tick).
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// `path` relative to the repository root when it is relative.
pub fn repo_path(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}
