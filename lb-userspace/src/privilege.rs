//! Whether this process may use BPF: checked before any verb touches the kernel, so a missing
//! privilege is the documented exit code 3 with the fix, not a failure deep in a syscall.

use crate::exit::NotLoaded;

/// CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_BPF (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Ok if the effective capabilities allow BPF (CAP_BPF, or CAP_SYS_ADMIN on kernels before
/// 5.8) and network administration; else a [`NotLoaded`] error saying what `what` needs.
pub fn require(what: &str) -> Result<(), NotLoaded> {
    let effective = effective().unwrap_or(u64::MAX);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN) {
        return Ok(());
    }
    Err(NotLoaded(format!(
        "{what} needs root (or CAP_BPF and CAP_NET_ADMIN); this process has neither: run it \
         with sudo or as root"
    )))
}

/// The effective capability set (`CapEff` in /proc/self/status).
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}
