//! The commands the daemon starts (the alert command, the BGP reload) run as root but with no
//! capabilities: they notify and reload, and need none of the daemon's CAP_BPF, CAP_NET_ADMIN
//! or CAP_SYS_ADMIN, so a mistake or a hijacked command cannot touch the data plane.

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h): 64-bit sets, in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Run between fork and exec (`pre_exec`): clears the ambient set, sets no_new_privs and
/// empties the effective, permitted and inheritable sets. Root regains every capability of
/// the bounding set at exec, unless no_new_privs holds: then the kernel caps the new
/// permitted set at the old one (commoncap.c, cap_bprm_creds_from_file), which is empty.
/// Only system calls, no allocation: the child of a multi-threaded process may call nothing
/// else.
pub fn shed_capabilities() -> io::Result<()> {
    let ok = |result: libc::c_long| {
        if result == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: prctl with these constant arguments reads and writes no memory of ours.
    ok(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    }
    .into())?;
    // SAFETY: as above.
    ok(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data words of the v3 layout, both live here.
    ok(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;

    use super::*;

    /// The hex value of `field` (`CapEff:` etc.) in a /proc/PID/status text.
    fn cap(status: &str, field: &str) -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(line[field.len()..].trim(), 16).expect("hex capability set")
    }

    /// Test that a child started with `shed_capabilities` holds no capability at all and runs
    /// with no_new_privs, while this process (root in CI) holds some: a command the daemon
    /// starts cannot use CAP_SYS_ADMIN or CAP_BPF even as root, nor regain them through a
    /// setuid binary.
    #[test]
    fn children_run_without_capabilities() {
        let mine = std::fs::read_to_string("/proc/self/status").expect("own status");
        let mut command = std::process::Command::new("cat");
        command.arg("/proc/self/status");
        // SAFETY: shed_capabilities only makes system calls.
        unsafe { command.pre_exec(shed_capabilities) };
        let out = command.output().expect("cat");
        assert!(out.status.success(), "{out:?}");
        let child = String::from_utf8_lossy(&out.stdout);
        for field in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(cap(&child, field), 0, "{field} of the child:\n{child}");
        }
        assert!(child.contains("NoNewPrivs:\t1"), "{child}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_ne!(cap(&mine, "CapEff:"), 0, "root without capabilities?");
        }
    }
}
