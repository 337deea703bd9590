//! The lab of the tests that start the real `xlb run --config` themselves: a namespace `lb`
//! whose eth0 is a veth to a namespace `peer`, and a pin path that xlb must create itself,
//! removed with the lab.

use std::path::PathBuf;

use crate::netns::{Lab, Netns, veth};

/// The lab named `label`, the namespace xlb is to run in, and xlb's `pin_path` (which does
/// not exist yet).
pub fn run_lab(label: &str) -> (Lab, Netns, PathBuf) {
    let mut lab = Lab::new(label).expect("lab");
    let lb = lab.netns("lb").expect("netns");
    let peer = lab.netns("peer").expect("netns");
    veth((&lb, "eth0"), (&peer, "eth0")).expect("veth");
    let pin_path = lab.pin_dir("xlb").expect("pin dir");
    std::fs::remove_dir(&pin_path).expect("xlb creates the directory itself");
    (lab, lb, pin_path)
}
