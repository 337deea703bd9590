//! The gate in front of every test that needs the kernel (BPF, network namespaces).
//!
//! Not root and not under CI: the test is skipped with a visible message. Under `CI=true` a
//! missing privilege fails the test, so CI can never pass by skipping. When
//! `XLB_PRIVILEGED_LOG` names a file, each gate appends `ran NAME` or `skipped NAME` to it, so
//! `cargo xtask test` can say how many privileged tests really ran.

use std::io::Write as _;

/// Environment variable naming the file privileged tests record themselves in.
pub const LOG_ENV: &str = "XLB_PRIVILEGED_LOG";

/// Whether the privileged test `name` may run; see the module doc.
pub fn check(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !root && ci {
        panic!(
            "{name} needs root (BPF and network namespaces), and CI=true forbids skipping: \
             run the suite as root"
        );
    }
    record(if root { "ran" } else { "skipped" }, name);
    if !root {
        eprintln!("SKIPPED {name}: needs root for BPF and network namespaces (run as root)");
    }
    root
}

fn record(outcome: &str, name: &str) {
    let Some(path) = std::env::var_os(LOG_ENV) else {
        return;
    };
    let line = format!("{outcome} {name}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(err) = written {
        panic!(
            "cannot record privileged test in {}: {err}",
            path.to_string_lossy()
        );
    }
}

/// Returns from the calling test (skipping it) unless it may use the kernel; see [`check`].
#[macro_export]
macro_rules! require_privileges {
    () => {{
        fn here() {}
        let name = ::core::any::type_name_of_val(&here);
        if !$crate::privilege::check(name.strip_suffix("::here").unwrap_or(name)) {
            return;
        }
    }};
}
