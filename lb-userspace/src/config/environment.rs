//! What validation asks of the host, behind a trait so tests do not depend on the machine.

use std::ffi::CString;

/// The facts about the host that a config is checked against.
pub trait Environment {
    /// Whether a network interface of this name exists (in the current network namespace).
    fn interface_exists(&self, name: &str) -> bool;

    /// The interfaces there are, to suggest one when the configured one does not exist.
    /// Empty when unknown.
    fn interfaces(&self) -> Vec<String> {
        Vec::new()
    }
}

/// This host, in the current network namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostEnvironment;

impl Environment for HostEnvironment {
    fn interface_exists(&self, name: &str) -> bool {
        let Ok(name) = CString::new(name) else {
            return false;
        };
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
    }

    fn interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// A host with a fixed set of interfaces, for tests and for checking a config meant for
/// another machine.
#[derive(Clone, Debug, Default)]
pub struct FixedEnvironment {
    pub interfaces: Vec<String>,
}

impl FixedEnvironment {
    pub fn new(interfaces: &[&str]) -> Self {
        FixedEnvironment {
            interfaces: interfaces.iter().map(|name| (*name).to_owned()).collect(),
        }
    }
}

impl Environment for FixedEnvironment {
    fn interface_exists(&self, name: &str) -> bool {
        self.interfaces.iter().any(|interface| interface == name)
    }

    fn interfaces(&self) -> Vec<String> {
        self.interfaces.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_has_loopback_and_not_a_made_up_interface() {
        // Test that the real environment asks the kernel: every network namespace has `lo`.
        assert!(HostEnvironment.interface_exists("lo"));
        assert!(!HostEnvironment.interface_exists("xlb-no-such-if"));
        assert!(!HostEnvironment.interface_exists("bad\0name"));
    }
}
