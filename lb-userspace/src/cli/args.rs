//! The `xlb` command line. Doc comments here are the `--help` text.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use lb_userspace::{
    attach::AttachMode, backend::BackendAction, canary::CanaryAction, config::Protocol, pins,
};

/// xlb: a layer-4 load balancer in XDP, steering packets in the NIC driver with Maglev hashing.
#[derive(Debug, Parser)]
#[command(name = "xlb", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the load balancer. With --config: attach (or adopt a data plane already pinned
    /// under the config's pin path, replacing its program through its link without a gap),
    /// apply the config and report counters until Ctrl-C or SIGTERM; forwarding continues
    /// after it stops (`xlb down` detaches). While it runs it is the only writer of its pins:
    /// `apply`, `backend` and `down` go through it (a control socket under /run/xlb). With
    /// --interface: attach with no services until stopped, then detach.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Check a config file without touching the kernel: print every error and warning with its
    /// file, line, field and fix. Exits 0 if valid, 1 if not (errors, or warnings with
    /// --strict), 2 if the file cannot be read.
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// Show what applying a config would change against the running xlb (VIPs and backends
    /// added or removed, each backend's share before and after, the share of flows that would
    /// move) and push sample flows through the real XDP program with the new tables staged in
    /// scratch maps, reporting the distribution the kernel produced. Changes nothing.
    Plan(PlanArgs),
    /// Validate a config and make it live: every VIP's new table is written into its inactive
    /// copy, then one update per VIP flips to it. All or nothing: on any error the running
    /// state stays exactly as it was. With an `xlb run --config` daemon owning the pins, the
    /// daemon checks its own config file once and makes it live at once (no 200 ms settle, as
    /// SIGHUP waits for: the file is taken as finished) and keeps it (another file is refused:
    /// the daemon would undo it); without one, xlb writes under a lock on the pin directory.
    #[command(after_help = EXIT_CODES)]
    Apply(ApplyArgs),
    /// What is loaded, where it is attached and in which mode, the config generation and when
    /// it was applied.
    #[command(after_help = EXIT_CODES)]
    Status(LiveArgs),
    /// Packets, bytes and new flows per VIP and backend, with each backend's observed share of
    /// new flows next to its expected share (from the live table); skew is flagged.
    #[command(after_help = EXIT_CODES)]
    Stats(StatsArgs),
    /// Where a flow goes and why: the VIP it matches, the flow hash, the table slot, the
    /// backend, and any flow-table entry that overrides the table.
    #[command(after_help = EXIT_CODES)]
    Explain(ExplainArgs),
    /// Compare the live kernel maps with a config file (or check them for internal
    /// consistency without one) and report every drift. Exits 1 if there is any.
    #[command(after_help = EXIT_CODES)]
    Audit(AuditArgs),
    /// Withdraw the VIPs from BGP, then detach the data plane and remove its pins (forwarding
    /// stops). With an `xlb run --config` daemon owning the pins, the daemon does it and exits.
    #[command(after_help = EXIT_CODES)]
    Down(LiveArgs),
    /// Change one backend of a running VIP: `drain` (no new flows, established ones stay),
    /// `disable` (out now, its flows move), `enable` (back to its weight). With an `xlb run
    /// --config` daemon owning the pins, the daemon makes the change and keeps it through
    /// reloads and health changes.
    #[command(after_help = EXIT_CODES)]
    Backend(BackendArgs),
    /// A running canary apply (`xlb apply FILE --canary PERCENT --watch DURATION`): promote
    /// it now, or abort it (roll it back) now.
    #[command(after_help = EXIT_CODES)]
    Canary(CanaryVerbArgs),
    /// Print a shell completion script for xlb on stdout, e.g.
    /// `xlb completions bash > /etc/bash_completion.d/xlb`.
    #[command(after_help = EXIT_CODES)]
    Completions(CompletionsArgs),
    // Operator tools (issue 16): the backend side, host checks, capture at XDP.
    /// On a backend of `ipip` VIPs: attach, list or detach the program that strips the tunnel
    /// header xlb adds (this kernel needs no ipip device). It stays attached after the command
    /// exits (pinned under --pin-path, one directory per interface).
    #[command(after_help = EXIT_CODES)]
    Decap(DecapArgs),
    /// Capture packets at the XDP program, where tcpdump cannot see them (forwarded and dropped
    /// packets never reach it): one line per packet with its verdict, reason, flow, VIP,
    /// backend and flow-table event, and with --write a pcap file for `tcpdump -r` or
    /// Wireshark, holding each frame as the program left it (rewritten or encapsulated), cut at
    /// 256 bytes. Stops at --count packets or after --duration. While no trace runs, the
    /// program pays one branch per packet for it.
    #[command(after_help = EXIT_CODES)]
    Trace(TraceArgs),
    /// Check this host against what xlb needs and every known trap: on the load balancer
    /// (bpffs, JIT, the interface and its XDP mode, the veth-peer rule, offloads, MTU against
    /// ipip, rp_filter, backends that do not answer ARP/NDP, growing xdp_tx_errors, pins
    /// against the attachment), or with --backend on a backend (VIPs on loopback,
    /// arp_ignore/arp_announce, rp_filter, the decapsulation program, MSS/MTU). Each finding
    /// says what is wrong, why it matters and the command that fixes it. Exits 1 on any
    /// problem.
    #[command(after_help = EXIT_CODES)]
    Doctor(DoctorArgs),
    /// Write xlb's man pages into a directory: xlb.1 and one per verb (xlb-run.1,
    /// xlb-backend-drain.1, ...), generated from this binary's own help.
    #[command(after_help = EXIT_CODES)]
    Man(ManArgs),
    /// A live view of the running xlb, redrawn every interval: each VIP's and backend's
    /// rates, observed against expected shares of new flows, backend states and alerts, the
    /// skewed backend highlighted. q, Esc or Ctrl-C quit. Needs a terminal (works over ssh);
    /// --once prints one plain frame instead.
    #[command(after_help = EXIT_CODES)]
    Top(TopArgs),
}

impl Command {
    /// How the verb prints (its errors too).
    pub fn output(&self) -> OutputFormat {
        match self {
            Command::Validate(args) => args.output,
            Command::Plan(PlanArgs { live, .. })
            | Command::Apply(ApplyArgs { live, .. })
            | Command::Status(live)
            | Command::Stats(StatsArgs { live, .. })
            | Command::Explain(ExplainArgs { live, .. })
            | Command::Audit(AuditArgs { live, .. })
            | Command::Down(live) => live.output,
            Command::Backend(args) => args.verb.parts().1.live.output,
            Command::Decap(args) => args.verb.common().output,
            Command::Trace(args) => args.live.output,
            Command::Doctor(args) => args.output,
            Command::Canary(args) => args.live.output,
            Command::Top(args) => args.live.output,
            Command::Run(_) | Command::Completions(_) | Command::Man(_) => OutputFormat::Text,
        }
    }
}

/// Whether a command line asks for `--output json` (for errors clap finds before parsing it).
pub fn json_requested(args: impl IntoIterator<Item = String>) -> bool {
    let args: Vec<String> = args.into_iter().collect();
    args.iter().any(|a| a == "--output=json") || args.windows(2).any(|w| w == ["--output", "json"])
}

/// The exit codes, stated in every verb's `--help`.
const EXIT_CODES: &str = "Exit codes: 0 done; 1 a check found problems (an invalid config, \
    drift); 2 the config file cannot be read (missing, no permission, not UTF-8, not a regular \
    file, too large) or the command line is wrong; 3 nothing is loaded at the pin path, or \
    this user lacks the privilege (root, or CAP_BPF and CAP_NET_ADMIN); 4 another failure (the \
    message says why; a change is all or nothing, so nothing changed). With --output json an \
    error is one document on stdout: {\"error\": MESSAGE, \"exit_code\": CODE}.";

/// Where the running xlb is, and how to print.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// The pin directory of the running xlb. Default: $XLB_PIN_PATH, else the config file's
    /// `global.pin_path` for verbs that take one, else /sys/fs/bpf/xlb.
    #[arg(long, env = "XLB_PIN_PATH")]
    pub pin_path: Option<PathBuf>,
    /// `text` for people, `json` for scripts (one document on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 the config is valid (warnings allowed) and the kernel \
    agreed with the prediction on every sample flow; 1 the config has errors (nothing is \
    planned); 2 the file cannot be read; 3 no privilege (needs root, or CAP_BPF and \
    CAP_NET_ADMIN) or the running xlb's pins cannot be opened; 4 the kernel disagreed with the prediction (a bug in xlb) or the plan could not \
    run. With no xlb running, the plan is against an empty state. Nothing in the running xlb \
    changes either way."
)]
pub struct PlanArgs {
    /// The config file to plan.
    pub file: PathBuf,
    /// How many synthetic new flows per VIP (TCP SYNs or UDP datagrams from random clients in
    /// 198.18.128.0/17 or 2001:db8:ffff::/48) to push through the XDP program.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub flows: u32,
    /// Seed of the synthetic flows' addresses and ports: the same seed, the same sample.
    #[arg(long, default_value_t = lb_userspace::plan::DEFAULT_SEED)]
    pub seed: u64,
    /// Real clients instead of random ones: a file with one client address per line
    /// (`ADDRESS` or `ADDRESS COUNT`, COUNT its relative number of flows; `#` comments). The
    /// --flows sample flows come from them. Shows where a `hash = "source"` VIP really sends a
    /// service whose clients arrive through a few NAT or proxy addresses.
    #[arg(long, value_name = "FILE", conflicts_with = "pcap")]
    pub clients: Option<PathBuf>,
    /// Real flows instead of random ones: every TCP and UDP flow to a VIP in a pcap capture
    /// (`tcpdump -w FILE`; Ethernet, raw IP or `-i any` captures).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Plan a canary of this percent (see `xlb apply --canary`): which new flows would move
    /// and which backends the slice would see.
    #[arg(long, value_name = "PERCENT", value_parser = lb_userspace::canary::parse_percent)]
    pub canary: Option<u32>,
    /// What the apply being planned would accept: the plan fails exactly when that apply
    /// would refuse.
    #[command(flatten)]
    pub accept: AcceptArgs,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// What an apply accepts beyond a clean config (`xlb plan` takes the same, to judge as that
/// apply would).
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// Accept warnings (errors always refuse).
    #[arg(long)]
    pub allow_warnings: bool,
    /// Let a finding of this audit rule through as a warning (XLB001, XLB002, XLB003, XLB008,
    /// XLB026 or XLB027: rules about balance, not loadability). For drills and emergencies, e.g. forcing
    /// all weight on one backend; repeatable. Other warnings still need --allow-warnings.
    #[arg(long = "override", value_name = "RULE")]
    pub overrides: Vec<String>,
    /// Accept that, with the live drains, disables and health kept, one server takes
    /// more than `alerts.max_share` of a VIP's new flows (refused otherwise, exit 1).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The config file to apply.
    pub file: PathBuf,
    #[command(flatten)]
    pub canary: CanaryArgs,
    #[command(flatten)]
    pub accept: AcceptArgs,
    #[command(flatten)]
    pub live: LiveArgs,
}

// ---- canary applies (see lb_userspace::canary) ----

/// `xlb apply --canary`: try the config on a slice of new flows first.
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// Give the config's new tables only the new flows whose hash falls in the first PERCENT
    /// (1 to 99) of the hash space, for every VIP whose table changes; the rest keep the live
    /// tables. The `xlb run --config` daemon watches the slice and rolls it back on an alarm,
    /// or promotes it after --watch. Needs the daemon (refused without one, exit 4).
    #[arg(long, value_name = "PERCENT", value_parser = lb_userspace::canary::parse_percent, requires = "watch")]
    pub canary: Option<u32>,
    /// How long the daemon watches a canary before promoting it, e.g. 30s, 5m (1s to 24h).
    #[arg(long, value_name = "DURATION", value_parser = lb_userspace::canary::parse_watch, requires = "canary")]
    pub watch: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct CanaryVerbArgs {
    /// `promote`: the tried tables become the whole tables now. `abort`: every new flow takes
    /// the live tables again now (works without a daemon too, for a canary a stopped daemon
    /// left behind).
    #[arg(value_enum)]
    pub action: CanaryActionArg,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CanaryActionArg {
    Promote,
    Abort,
}

impl From<CanaryActionArg> for CanaryAction {
    fn from(action: CanaryActionArg) -> CanaryAction {
        match action {
            CanaryActionArg::Promote => CanaryAction::Promote,
            CanaryActionArg::Abort => CanaryAction::Abort,
        }
    }
}

// ---- end of canary applies ----

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Sample the counters twice this many seconds apart to report rates (packets/s, bytes/s,
    /// new flows/s). Counts and shares are the totals since the program was loaded.
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<f64>,
    /// Flag a backend whose observed share of new flows exceeds its expected share by this
    /// factor (or falls below it by the same factor), once its VIP has at least 100 new flows;
    /// new flows to a backend the table gives no slot are always flagged. Skew is reported, not
    /// an error: the exit status is 0.
    #[arg(long, default_value_t = 1.5)]
    pub skew_factor: f64,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The client's address and port, e.g. 198.18.0.1:40000 or [2001:db8::1]:40000.
    pub source: SocketAddr,
    /// The destination: a VIP's address and port (e.g. 198.18.1.10:80), or its name (e.g.
    /// `web`), which also gives the protocol.
    pub destination: String,
    /// The transport protocol (needed with an address).
    #[arg(value_enum)]
    pub protocol: Option<ProtocolArg>,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The config the running xlb should match; without it only the live maps' own
    /// consistency is checked.
    pub file: Option<PathBuf>,
    /// Also compare each VIP's table fingerprint with the xlb pinned under PIN_PATH (another
    /// node on this host; repeatable). Across hosts, compare the fingerprints of
    /// `xlb status --output json`.
    #[arg(long = "peer", value_name = "PIN_PATH")]
    pub peers: Vec<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Args)]
pub struct BackendArgs {
    #[command(subcommand)]
    pub verb: BackendVerb,
}

#[derive(Debug, Subcommand)]
pub enum BackendVerb {
    /// No new flows; established flows stay until they end (or until global.drain_timeout,
    /// when the daemon disables it).
    #[command(after_help = EXIT_CODES)]
    Drain(BackendTarget),
    /// Out of the table and inactive: its established flows move to other backends.
    #[command(after_help = EXIT_CODES)]
    Disable(BackendTarget),
    /// Back in the table with its configured weight.
    #[command(after_help = EXIT_CODES)]
    Enable(BackendTarget),
}

impl BackendVerb {
    /// The action and what it applies to.
    pub fn parts(&self) -> (BackendAction, &BackendTarget) {
        match self {
            BackendVerb::Drain(target) => (BackendAction::Drain, target),
            BackendVerb::Disable(target) => (BackendAction::Disable, target),
            BackendVerb::Enable(target) => (BackendAction::Enable, target),
        }
    }
}

/// The backend a `backend` verb changes.
#[derive(Debug, Args)]
pub struct BackendTarget {
    /// The VIP as ADDRESS:PORT/PROTOCOL, e.g. 198.18.1.10:80/tcp or [2001:db8:1::10]:443/tcp,
    /// or its name (e.g. `web`).
    pub vip: String,
    /// The backend's address.
    pub backend: IpAddr,
    /// Make the change even if it leaves one server with more than `alerts.max_share` of the
    /// VIP's new flows (the share recorded by the last apply; 90% by default), which is
    /// refused otherwise with exit code 1.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Install (as root), then start a new shell:\n  \
    bash:  xlb completions bash > /etc/bash_completion.d/xlb\n  \
    zsh:   xlb completions zsh > /usr/local/share/zsh/site-functions/_xlb\n  \
    fish:  xlb completions fish > /etc/fish/completions/xlb.fish")]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The load balancer's config: its interface, pin path, VIPs and backends are checked.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The interface to check (default: the config's `global.interface`; required with
    /// --backend).
    #[arg(long, short)]
    pub interface: Option<String>,
    /// The pins to check against the attachment (default: $XLB_PIN_PATH, the config's
    /// `global.pin_path`, /sys/fs/bpf/xlb).
    #[arg(long, env = "XLB_PIN_PATH")]
    pub pin_path: Option<PathBuf>,
    /// Check this host as a backend instead (with --vip and --interface).
    #[arg(long)]
    pub backend: bool,
    /// With --backend: a VIP this host serves (repeatable).
    #[arg(long = "vip", value_name = "ADDR", requires = "backend")]
    pub vips: Vec<IpAddr>,
    /// With --backend: xlb reaches this host through `ipip` tunnels (checks the
    /// decapsulation program and the MSS).
    #[arg(long, requires = "backend")]
    pub ipip: bool,
    /// How long to watch xdp_tx_errors for growth, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_duration)]
    pub sample: f64,
    /// `text` for people, `json` for scripts (one document on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Only packets of this VIP: ADDRESS:PORT/PROTOCOL (e.g. 198.18.1.10:80/tcp) or its name.
    #[arg(long)]
    pub vip: Option<String>,
    /// Only packets steered to the backend with this address (with --vip when it serves
    /// several VIPs).
    #[arg(long)]
    pub backend: Option<IpAddr>,
    /// Only packets counted under this reason, e.g. `no_backend`, `not_vip`, `forwarded_dsr`
    /// (`xlb stats` lists them).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only packets from this client address (inside the tunnel for `ipip`).
    #[arg(long)]
    pub client: Option<IpAddr>,
    /// Stop after this many packets.
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = parse_duration)]
    pub duration: f64,
    /// Also write the packets to this pcap file.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// A duration in seconds: positive and finite.
fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() && seconds <= 86_400.0 => Ok(seconds),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0 and 86400, e.g. 5 or 0.5"
        )),
    }
}

#[derive(Debug, Args)]
pub struct DecapArgs {
    #[command(subcommand)]
    pub verb: DecapVerb,
}

#[derive(Debug, Subcommand)]
pub enum DecapVerb {
    /// Attach the decapsulation program to INTERFACE for the outer addresses given: tunnelled
    /// packets to them are stripped and passed up; everything else passes untouched.
    #[command(after_help = EXIT_CODES)]
    Attach(DecapAttachArgs),
    /// Detach the decapsulation program from INTERFACE and remove its pins.
    #[command(after_help = EXIT_CODES)]
    Detach(DecapDetachArgs),
    /// Every interface with the decapsulation program pinned: its addresses, whether the
    /// interface runs it and in which mode, and its counters.
    #[command(after_help = EXIT_CODES)]
    Status(DecapCommon),
}

impl DecapVerb {
    pub fn common(&self) -> &DecapCommon {
        match self {
            DecapVerb::Attach(args) => &args.common,
            DecapVerb::Detach(args) => &args.common,
            DecapVerb::Status(common) => common,
        }
    }
}

#[derive(Debug, Args)]
pub struct DecapAttachArgs {
    /// The interface tunnels arrive on, e.g. eth0.
    pub interface: String,
    /// An outer destination address to strip tunnels for: this backend's address as the load
    /// balancer's config names it (repeatable; IPv4 or IPv6).
    #[arg(long = "address", value_name = "ADDR", required = true)]
    pub addresses: Vec<IpAddr>,
    /// `native` in the driver, `generic` in the kernel stack, `auto` native with a fallback.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub xdp_mode: XdpModeArg,
    #[command(flatten)]
    pub common: DecapCommon,
}

#[derive(Debug, Args)]
pub struct DecapDetachArgs {
    /// The interface to detach from.
    pub interface: String,
    #[command(flatten)]
    pub common: DecapCommon,
}

#[derive(Debug, Args)]
pub struct DecapCommon {
    /// Where the decapsulation programs are pinned, one directory per interface.
    #[arg(long, env = "XLB_DECAP_PIN_PATH", default_value = lb_userspace::pins::DEFAULT_DECAP_PIN_PATH)]
    pub pin_path: PathBuf,
    /// `text` for people, `json` for scripts (one document on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Install (as root): xlb man /usr/local/share/man/man1 && mandb -q; then \
    `man xlb-backend`"
)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing; pages there are replaced).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Seconds between redraws; rates and shares are over this interval.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// How many times its expected share a backend may get before it is flagged.
    #[arg(long, default_value_t = 1.5)]
    pub skew_factor: f64,
    /// Print one frame (after one interval) as plain text and exit, for pipes and scripts.
    #[arg(long)]
    pub once: bool,
}

impl LiveArgs {
    /// Where the library finds the running xlb.
    pub fn live(&self) -> pins::Live {
        pins::Live {
            pin_path: self.pin_path.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Tcp,
    Udp,
}

impl From<ProtocolArg> for Protocol {
    fn from(protocol: ProtocolArg) -> Protocol {
        match protocol {
            ProtocolArg::Tcp => Protocol::Tcp,
            ProtocolArg::Udp => Protocol::Udp,
        }
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["config", "interface"]))]
pub struct RunArgs {
    /// Run the config in FILE: attach to its interface, pin the program, link and maps under
    /// its pin path (forwarding survives this process), apply it, and report counters.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Without a config: attach to this interface with no services (every packet passes and
    /// is counted), pinning nothing.
    #[arg(long, short)]
    pub interface: Option<String>,
    /// Without a config: where the XDP program runs: `native` in the driver (fastest),
    /// `generic` in the kernel stack (works on any interface), `auto` native with a fallback
    /// to generic. With a config, `global.xdp_mode` decides.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub xdp_mode: XdpModeArg,
    /// Stop after this many seconds instead of waiting for Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Without a config: print the counters every this many seconds while running (0: only
    /// at exit). With a config the daemon logs changes instead; see `xlb stats`.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub stats_interval: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Native,
    Generic,
    Auto,
}

impl From<XdpModeArg> for AttachMode {
    fn from(mode: XdpModeArg) -> AttachMode {
        match mode {
            XdpModeArg::Native => AttachMode::Native,
            XdpModeArg::Generic => AttachMode::Generic,
            XdpModeArg::Auto => AttachMode::Auto,
        }
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config file (TOML; see examples/xlb.toml).
    pub file: PathBuf,
    /// Treat warnings as errors: exit 1 if there are any.
    #[arg(long)]
    pub strict: bool,
    /// `text`: one compiler-style message per finding, then a summary line. `json`: one
    /// document with `ok`, the counts and every finding's fields.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Test that every verb and subverb's `--help` ends with the exit codes.
    #[test]
    fn every_verb_help_states_the_exit_codes() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let help = sub.clone().render_long_help().to_string();
                if !help.contains("Exit codes:") {
                    missing.push(path.clone());
                }
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "xlb", &mut missing);
        assert!(
            missing.is_empty(),
            "no exit codes in the help of {missing:?}"
        );
    }

    /// Test that `xlb help VERB SUBVERB` shows the subverb's help (not an error), as
    /// `xlb VERB SUBVERB --help` does.
    #[test]
    fn help_verb_subverb_works() {
        for args in [
            &["xlb", "help", "backend", "drain"][..],
            &["xlb", "backend", "drain", "--help"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("help exits through an error");
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
            assert!(err.to_string().contains("No new flows"), "{args:?}: {err}");
        }
    }

    /// Test that a `--output json` anywhere on a command line is seen before clap parses it,
    /// so a usage error can be reported as JSON.
    #[test]
    fn json_is_seen_in_both_spellings() {
        let line = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(json_requested(line("xlb status --output json --bogus")));
        assert!(json_requested(line("xlb status --bogus --output=json")));
        assert!(!json_requested(line("xlb status --output text json")));
    }
}
