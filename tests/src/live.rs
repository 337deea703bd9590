//! A loaded xlb with its maps pinned in a lab's bpffs directory, as `xlb run --config` leaves
//! one: what the verbs that read or change the live state (`apply`, `status`, `stats`,
//! `explain`, `audit`, `plan`, `backend`) are tested against. Removed with its lab.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::Ebpf;
use lb_common::{PROGRAM_NAME, Verdict, VipKey, map_names};
use lb_userspace::{
    apply::{self, ApplyReport, apply_file},
    backend::{self, BackendAction, BackendReport},
    capacity::Capacity,
    config::{self, FixedEnvironment, HostEnvironment, Model},
    live::Snapshot,
    maps::{self, Maps},
    object,
    pins::Live,
    rollout::{self, Applied, AppliedVip, Desired},
    steering, testrun,
};

use crate::{
    netns::Lab,
    packets::{self, Flow},
};

/// The VIP of [`config_text`] configs, and the client the tests send from.
pub const VIP: &str = "198.18.1.10";
pub const CLIENT: &str = "198.18.0.1";
/// Three equal backends.
pub const EQUAL: [(&str, u32); 3] = [("198.18.0.10", 1), ("198.18.0.11", 1), ("198.18.0.12", 1)];

/// Small enough to load fast, large enough for the tests' configs.
pub const TEST_CAPACITY: Capacity = Capacity {
    vips: 8,
    backends_per_vip: 16,
    table_slots: 65_537,
};

/// The program, unattached, with every map pinned under `pin_path`.
pub struct LiveXlb {
    pub ebpf: Ebpf,
    pub pin_path: PathBuf,
    /// Holds the pin directory; dropped last.
    pub lab: Lab,
}

impl LiveXlb {
    pub fn new(label: &str) -> LiveXlb {
        Self::with_sizes(label, &TEST_CAPACITY.map_sizes())
    }

    /// [`LiveXlb::new`] with the [`config_text`] of the three [`EQUAL`] backends applied, and
    /// its one VIP as applied.
    pub fn equal(label: &str) -> (LiveXlb, AppliedVip) {
        let mut live = Self::new(label);
        let vip = live.apply(&EQUAL).vips.swap_remove(0);
        (live, vip)
    }

    /// [`LiveXlb::new`] with a flow table of `sets` sets (8 flows each).
    pub fn with_flow_sets(label: &str, sets: u32) -> LiveXlb {
        let mut sizes = TEST_CAPACITY.map_sizes();
        sizes.push((map_names::FLOWS, sets));
        Self::with_sizes(label, &sizes)
    }

    fn with_sizes(label: &str, sizes: &[(&str, u32)]) -> LiveXlb {
        let mut lab = Lab::new(label).expect("lab");
        let pin_path = lab.pin_dir("pins").expect("pin directory");
        let ebpf = object::load_sized(object::XDP_OBJECT, PROGRAM_NAME, sizes).expect("load xlb");
        maps::pin(&ebpf, &pin_path, &map_names::XLB).expect("pin maps");
        LiveXlb {
            ebpf,
            pin_path,
            lab,
        }
    }

    /// Where an xlb that does not run would have its pins: a directory inside this one's that
    /// does not exist.
    pub fn nowhere(&self) -> Live {
        Live {
            pin_path: Some(self.pin_path.join("nothing-here")),
        }
    }

    /// Writes `text` as a config file in a fresh temporary directory and returns its path.
    pub fn config_file(&self, name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(self.pin_path.file_name().expect("pin dir name"));
        std::fs::create_dir_all(&dir).expect("config dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub fn pin_path(&self) -> &Path {
        &self.pin_path
    }

    /// Validates `config_text(backends)` as on a host with `lo` and applies it.
    pub fn apply(&mut self, backends: &[(&str, u32)]) -> Applied {
        self.apply_text(&config_text(backends))
    }

    /// Validates config `text` as on a host with `lo` and applies it.
    pub fn apply_text(&mut self, text: &str) -> Applied {
        let model = config::check_text(
            text,
            Path::new("test.toml"),
            &FixedEnvironment::new(&["lo"]),
        )
        .unwrap_or_else(|rejected| panic!("test config invalid: {rejected:?}"))
        .model;
        self.apply_model(&model, text)
    }

    /// Writes `text` as config `name`, validates it as `xlb` does on this host and applies
    /// it; returns the file.
    pub fn apply_config(&mut self, name: &str, text: &str) -> PathBuf {
        let path = self.config_file(name, text);
        let model = config::load(&path, &HostEnvironment)
            .unwrap_or_else(|rejected| panic!("config {name} is invalid: {rejected:#?}"))
            .model;
        self.apply_model(&model, text);
        path
    }

    fn apply_model(&mut self, model: &Model, text: &str) -> Applied {
        rollout::apply(
            &mut self.ebpf,
            &Desired::from_model(model, config::hash(text.as_bytes())),
        )
        .expect("apply")
    }

    /// How the verbs' library functions are told to reach this xlb (`--pin-path PIN`).
    pub fn live(&self) -> Live {
        Live {
            pin_path: Some(self.pin_path.clone()),
        }
    }

    /// `xlb apply FILE` through the library, on this host, against this xlb.
    pub fn apply_file(&self, file: &Path, options: &apply::Options) -> anyhow::Result<ApplyReport> {
        apply_file(file, &HostEnvironment, &self.live(), options)
    }

    /// The live state, as `xlb status` reads it.
    pub fn snapshot(&mut self) -> Snapshot {
        Snapshot::read(&mut self.ebpf).expect("snapshot")
    }

    /// Runs the real `xlb ARGS --pin-path PIN --output json` against this xlb and returns its
    /// exit code and its stdout parsed as the one JSON document it must be.
    pub fn xlb_json(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let xlb = crate::demo::xlb_binary().expect("xlb binary");
        let out = std::process::Command::new(&xlb)
            .args(args)
            .arg("--pin-path")
            .arg(&self.pin_path)
            .args(["--output", "json"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("running {} {args:?}: {err}", xlb.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|err| {
            panic!(
                "xlb {args:?} --output json printed no JSON document ({err}; exit {:?}):\n{stdout}\n\
                 stderr:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), json)
    }

    /// Sends a SYN from each of `sports` to the VIP through the real program; each must be
    /// forwarded.
    pub fn send_syns(&mut self, sports: impl IntoIterator<Item = u16>) {
        let program = object::xdp_program(&mut self.ebpf, PROGRAM_NAME).expect("program");
        for sport in sports {
            let outcome = testrun::run(program, &packets::tcp_syn(&flow(sport))).expect("test run");
            assert_eq!(
                Verdict::from_code(outcome.code),
                Some(Verdict::Tx),
                "SYN from port {sport}"
            );
        }
    }

    /// [`LiveXlb::send_syns`] from `sports` to `vip`; returns the SYNs the live table sends each
    /// backend id (what its counters should show) and the length of one SYN frame.
    pub fn send_predicted_syns(
        &mut self,
        vip: &AppliedVip,
        sports: std::ops::Range<u16>,
    ) -> (BTreeMap<u32, u64>, u64) {
        let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
        for sport in sports.clone() {
            *expected.entry(predicted(vip, sport)).or_default() += 1;
        }
        self.send_syns(sports);
        (expected, packets::tcp_syn(&flow(0)).len() as u64)
    }
}

/// `xlb backend ACTION VIP BACKEND` (without `--force`) through the library on `maps`.
pub fn change_backend(
    maps: &mut (impl Maps + ?Sized),
    vip: &VipKey,
    backend: &str,
    action: BackendAction,
) -> anyhow::Result<BackendReport> {
    let address = backend.parse().expect("backend address");
    backend::change(maps, vip, address, action, false)
}

/// Asserts that the JSON `document` (named `what` in the message) has each of the
/// space-separated `fields`, as a verb's `--output json` documents them.
pub fn assert_fields(document: &serde_json::Value, what: &str, fields: &str) {
    for field in fields.split_whitespace() {
        assert!(
            document.get(field).is_some(),
            "{what} lacks {field}: {document}"
        );
    }
}

/// Asserts that a verb's exit code and JSON document (as [`LiveXlb::xlb_json`] returns them)
/// are `code` and a string `field` (e.g. `error`) that contains `says`.
pub fn assert_says(
    (exited, document): &(Option<i32>, serde_json::Value),
    code: i32,
    field: &str,
    says: &str,
) {
    assert_eq!(*exited, Some(code), "{document}");
    assert!(
        document[field]
            .as_str()
            .is_some_and(|text| text.contains(says)),
        "{document}"
    );
}

/// A TCP flow from the client's `sport` to the VIP's port 80.
pub fn flow(sport: u16) -> Flow {
    Flow::new(CLIENT, VIP, sport, 80)
}

/// The backend id the live table gives a new flow from `sport`.
pub fn predicted(vip: &AppliedVip, sport: u16) -> u32 {
    vip.table[steering::slot(&vip.vip, &crate::steering::flow_key(&flow(sport), 6)) as usize]
}

impl Drop for LiveXlb {
    fn drop(&mut self) {
        let dir = std::env::temp_dir().join(self.pin_path.file_name().unwrap_or_default());
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A config with one dsr TCP VIP 198.18.1.10:80 over `backends` (address, weight) on `lo`
/// (which every namespace has), MACs 02:00:00:00:03:NN.
pub fn config_text(backends: &[(&str, u32)]) -> String {
    let mut text = String::from(
        "[global]\ninterface = \"lo\"\n\n[audit]\nmax_backend_share = 1.0\nmin_backends = 1\n\n\
         [[vip]]\nname = \"web\"\naddress = \"198.18.1.10\"\nport = 80\nprotocol = \"tcp\"\n",
    );
    for (i, (address, weight)) in backends.iter().enumerate() {
        text += &format!(
            "\n[[vip.backend]]\naddress = \"{address}\"\nweight = {weight}\nmac = \"02:00:00:00:03:{i:02x}\"\n"
        );
    }
    text
}
