//! The lab of the tests that start the real `xlb run --config` themselves: a namespace `lb`
//! whose eth0 is a veth to a namespace `peer`, a pin path that xlb must create itself and a
//! config file path, all removed with the lab.

use std::path::PathBuf;

use crate::{
    demo,
    netns::{Lab, Netns, veth},
};

pub struct RunLab {
    /// The `xlb` binary under test.
    pub xlb: PathBuf,
    /// Where xlb is to run: its eth0 faces the peer.
    pub lb: Netns,
    /// xlb's `pin_path`; it does not exist yet.
    pub pin_path: PathBuf,
    /// Where the test writes xlb's config.
    pub config: PathBuf,
    pub lab: Lab,
}

impl RunLab {
    pub fn new(label: &str) -> RunLab {
        let xlb = demo::xlb_binary().expect("xlb binary");
        let mut lab = Lab::new(label).expect("lab");
        let lb = lab.netns("lb").expect("netns");
        let peer = lab.netns("peer").expect("netns");
        veth((&lb, "eth0"), (&peer, "eth0")).expect("veth");
        let pin_path = lab.pin_dir("xlb").expect("pin dir");
        std::fs::remove_dir(&pin_path).expect("xlb creates the directory itself");
        let config = lab.temp_path("xlb.toml").expect("temp path");
        RunLab {
            xlb,
            lb,
            pin_path,
            config,
            lab,
        }
    }
}
