//! Where the lab of [`crate::lab`] keeps its namespaces, pins, processes and files: either a
//! [`Lab`] of the test harness, removed with it (on exit, on error, on Ctrl-C), or a *kept*
//! lab under fixed `xlblab-` names that outlives the process that built it, recorded line by
//! line in a state file so that [`down`] can remove it later, from another process.
//!
//! The two differ in how servers are started. In a removable lab each nginx runs as the first
//! process of a PID namespace of its own, under `unshare --kill-child`, and dies with the lab
//! binary: killing the master alone would leave its workers running, because nginx workers do
//! not exit when their master dies, but when the first process of a PID namespace dies the
//! kernel kills the rest. In a kept lab every process starts in a session of its own
//! (`setsid`), so it survives the lab binary and the terminal, and its pid goes into the state
//! file.

use std::{
    fs::OpenOptions,
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    daemon_lab::exited,
    netns::{self, BPFFS, Lab, Netns, run_checked},
};

/// Prefix of every name a kept lab uses: namespaces, pin directories, its directory under
/// /tmp. Distinct from the tests' [`netns::PREFIX`], whose stale-lab sweeper must never touch
/// a lab someone kept on purpose.
pub const KEPT_PREFIX: &str = "xlblab";
/// How long a process gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// The directory of the kept lab: configs, logs, pid files and the state file.
pub fn kept_dir() -> PathBuf {
    std::env::temp_dir().join(KEPT_PREFIX)
}

/// The kept lab's state file: one resource per line (`netns NAME`, `pins DIR`, `pid N`).
pub fn state_path() -> PathBuf {
    kept_dir().join("state")
}

/// The name (of a namespace, of a pin directory) `name` gets in a kept lab.
pub fn kept_name(name: &str) -> String {
    format!("{KEPT_PREFIX}-{name}")
}

/// Where a lab's resources live; see the module doc.
pub struct Site {
    kind: Kind,
    /// The lab's own directory (configs, logs, pid files).
    pub dir: PathBuf,
    /// The process that removes `dir` once this process is gone, however it ends (a removable
    /// lab only; see [`Site::removable`]).
    janitor: Option<Child>,
    /// The nginx processes of a removable lab not stopped yet.
    nginx: Vec<u32>,
}

enum Kind {
    Removable(Lab),
    Kept,
}

impl Site {
    /// A lab removed with this value, and on Ctrl-C, by the test harness's [`Lab`]. Its
    /// directory is `/tmp/xlbt-PID-lab`, so every name of it carries `xlbt-PID-`.
    pub fn removable() -> anyhow::Result<Site> {
        let lab = Lab::new("lab")?;
        let dir =
            std::env::temp_dir().join(format!("{}-{}-lab", netns::PREFIX, std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Ctrl-C ends this process from the harness's signal handler, which knows namespaces,
        // pins and processes but not files: a process of its own process group (which the
        // terminal's Ctrl-C does not reach) waits for the end of a pipe only this process
        // holds, then removes the directory.
        let mut janitor = Command::new("sh");
        janitor
            .args(["-c", "read -r _ || true; exec rm -rf -- \"$0\""])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let janitor = janitor
            .spawn()
            .context("starting sh to remove the lab's files")?;
        Ok(Site {
            kind: Kind::Removable(lab),
            dir,
            janitor: Some(janitor),
            nginx: Vec::new(),
        })
    }

    /// A lab that stays when this process ends. Fails if a kept lab is already there (its
    /// state file, or any `xlblab-` namespace or pin directory). Installs a Ctrl-C handler
    /// that removes whatever was built so far with [`down`] and exits with 130.
    pub fn kept(xlb: &Path) -> anyhow::Result<Site> {
        let leftovers = kept_leftovers();
        ensure!(
            leftovers.is_empty(),
            "a kept lab is already up ({}): poke at it, or remove it first with `cargo xtask lab \
             --down`",
            leftovers.join(", ")
        );
        let _ = XLB.set(xlb.to_path_buf());
        ctrlc::set_handler(|| {
            let _held = creating();
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("lab: interrupted; removing the kept lab built so far");
            let _ = down(XLB.get().map(PathBuf::as_path));
            std::process::exit(130);
        })
        .context("installing the Ctrl-C handler of a kept lab")?;
        let dir = kept_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let site = Site {
            kind: Kind::Kept,
            dir,
            janitor: None,
            nginx: Vec::new(),
        };
        std::fs::write(
            state_path(),
            "# A lab kept by `cargo xtask lab --keep`; `cargo xtask lab --down` removes it.\n",
        )
        .with_context(|| format!("writing {}", state_path().display()))?;
        Ok(site)
    }

    pub fn is_kept(&self) -> bool {
        matches!(self.kind, Kind::Kept)
    }

    /// Creates namespace `name` of this lab, with its loopback up.
    pub fn netns(&mut self, name: &str) -> anyhow::Result<Netns> {
        match &mut self.kind {
            Kind::Removable(lab) => lab.netns(name),
            Kind::Kept => {
                let full = kept_name(name);
                record(|| {
                    run_checked(Command::new("ip").args(["netns", "add", &full]))?;
                    Ok(((), format!("netns {full}")))
                })?;
                let ns = Netns { name: full };
                ns.ip(&["link", "set", "lo", "up"])?;
                Ok(ns)
            }
        }
    }

    /// Creates an empty bpffs directory `name` for pins of this lab.
    pub fn pin_dir(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        match &mut self.kind {
            Kind::Removable(lab) => lab.pin_dir(name),
            Kind::Kept => {
                let dir = Path::new(BPFFS).join(kept_name(name));
                record(|| {
                    std::fs::create_dir_all(&dir).with_context(|| {
                        format!("creating {}: is bpffs mounted at {BPFFS}?", dir.display())
                    })?;
                    Ok(((), format!("pins {}", dir.display())))
                })?;
                Ok(dir)
            }
        }
    }

    /// Starts `command` (built with [`Netns::command`]); returns its pid. In a removable lab
    /// it is stopped with the lab and gets SIGTERM if this process dies; in a kept lab it
    /// starts a session of its own and outlives this process.
    pub fn spawn(&mut self, mut command: Command) -> anyhow::Result<u32> {
        match &mut self.kind {
            Kind::Removable(lab) => {
                die_with_parent(&mut command, libc::SIGTERM);
                lab.spawn(command)
            }
            Kind::Kept => spawn_detached(command),
        }
    }

    /// Starts `nginx ARGS` in `ns` (see the module doc for how); returns the pid to stop.
    pub fn spawn_nginx(&mut self, ns: &Netns, args: &[&str]) -> anyhow::Result<u32> {
        match &mut self.kind {
            Kind::Removable(lab) => {
                let mut command = ns.command("unshare");
                command
                    .args(["--pid", "--fork", "--kill-child", "--", "nginx"])
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // unshare in turn dies with this process, and nginx with unshare.
                die_with_parent(&mut command, libc::SIGKILL);
                let pid = lab.spawn(command)?;
                self.nginx.push(pid);
                Ok(pid)
            }
            Kind::Kept => {
                let mut command = ns.command("nginx");
                command
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                spawn_detached(command)
            }
        }
    }

    /// Stops process `pid` of a removable lab (SIGTERM, SIGKILL after a grace period) and
    /// returns how it ended.
    pub fn stop(&mut self, pid: u32) -> anyhow::Result<ExitStatus> {
        match &mut self.kind {
            Kind::Removable(lab) => lab.terminate(pid),
            Kind::Kept => bail!("a kept lab's processes are stopped by `down`"),
        }
    }

    /// Stops an nginx started with [`Site::spawn_nginx`] in a removable lab: SIGTERM to its
    /// master (unshare's child, inside the PID namespace), which stops its workers and exits;
    /// then unshare exits too.
    pub fn stop_nginx(&mut self, pid: u32) -> anyhow::Result<ExitStatus> {
        self.nginx.retain(|p| *p != pid);
        for child in children(pid) {
            // SAFETY: signalling the nginx master this lab started (unshare's only child).
            unsafe { libc::kill(child as i32, libc::SIGTERM) };
        }
        self.stop(pid)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Quicker than the lab's SIGTERM, which unshare ignores for its grace period.
        for pid in self.nginx.clone() {
            let _ = self.stop_nginx(pid);
        }
        if let Some(mut janitor) = self.janitor.take() {
            let _ = std::fs::remove_dir_all(&self.dir);
            // Closing its pipe lets it finish; it finds nothing left to remove.
            drop(janitor.stdin.take());
            let _ = janitor.wait();
        }
        // The lab itself (namespaces, pins, processes) goes when `kind` drops, right after.
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Held while a kept lab creates and records one resource, and by the Ctrl-C handler from the
/// moment it starts removing the lab: the handler sees every resource that exists.
static CREATING: Mutex<()> = Mutex::new(());
/// The `xlb` binary, for the Ctrl-C handler's `xlb down`.
static XLB: OnceLock<PathBuf> = OnceLock::new();

fn creating() -> std::sync::MutexGuard<'static, ()> {
    CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// If Ctrl-C interrupted a kept lab, waits while the handler removes it and exits (130); see
/// [`netns::exit_if_interrupted`] for a removable one.
pub fn exit_if_interrupted() {
    netns::exit_if_interrupted();
    if INTERRUPTED.load(Ordering::SeqCst) {
        let _held = creating();
        unreachable!("the kept lab's signal handler exits the process while holding its lock");
    }
}

/// Sends `signal` to each of `pids`, processes of the kept lab, saying `doing` (and `place`)
/// with each one's command line, and waits for them to exit.
fn signal_and_wait(pids: &[u32], signal: libc::c_int, doing: &str, place: &str) {
    for pid in pids {
        println!(
            "lab: {doing} pid {pid}{place}: {}",
            command_line(*pid).unwrap_or_default()
        );
        // SAFETY: kill(2) on a pid the caller found to be the kept lab's: still running the
        // lab's own command line, or inside one of its namespaces, which is being removed.
        unsafe { libc::kill(*pid as i32, signal) };
    }
    wait_exited(pids);
}

/// What a lab binary named `program` exits with after `result`: success, or the error printed
/// once an interrupted lab has been removed (see [`exit_if_interrupted`]).
pub fn exit_code(program: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            exit_if_interrupted();
            eprintln!("{program}: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Creates a resource of a kept lab with `create` and appends the line it returns to the
/// state file, both under [`CREATING`]; nothing is created once interrupted.
fn record<T>(create: impl FnOnce() -> anyhow::Result<(T, String)>) -> anyhow::Result<T> {
    let _held = creating();
    ensure!(
        !INTERRUPTED.load(Ordering::SeqCst),
        "interrupted: the lab is being removed"
    );
    let (value, line) = create()?;
    let path = state_path();
    let mut file = OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("recording `{line}` in {}", path.display()))?;
    Ok(value)
}

/// Starts `command` in a session of its own and records its pid in the state file.
fn spawn_detached(mut command: Command) -> anyhow::Result<u32> {
    command.stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe; the child is alone in its new process group.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    record(|| {
        let child = command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        // Not waited for: it outlives this process, and init reaps it.
        Ok((child.id(), format!("pid {}", child.id())))
    })
}

/// Makes the process `command` starts receive `signal` when this process's spawning thread
/// ends: a lab binary killed outright takes its servers with it.
pub fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What is left of a kept lab: its state file, `xlblab-` namespaces and pin directories.
fn kept_leftovers() -> Vec<String> {
    let mut found = Vec::new();
    if state_path().exists() {
        found.push(state_path().display().to_string());
    }
    found.extend(kept_namespaces());
    found.extend(
        kept_pin_dirs()
            .into_iter()
            .map(|dir| dir.display().to_string()),
    );
    found
}

fn kept_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&format!("{KEPT_PREFIX}-")))
        .map(str::to_owned)
        .collect()
}

fn kept_pin_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(BPFFS)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{KEPT_PREFIX}-"))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes the kept lab: stops the processes of its state file, runs `xlb down` on its pins
/// (with `xlb`, if given), ends any process still in its namespaces and deletes them, removes
/// its pin directories and its directory. Says what it removed; returns false if there was no
/// kept lab.
pub fn down(xlb: Option<&Path>) -> anyhow::Result<bool> {
    let leftovers = kept_leftovers();
    if leftovers.is_empty() {
        return Ok(false);
    }
    let state = std::fs::read_to_string(state_path()).unwrap_or_default();
    let mut namespaces = Vec::new();
    let mut pin_dirs = Vec::new();
    let mut pids = Vec::new();
    for line in state.lines().filter(|line| !line.starts_with('#')) {
        match line.split_once(' ') {
            Some(("netns", name)) => namespaces.push(name.to_owned()),
            Some(("pins", dir)) => pin_dirs.push(PathBuf::from(dir)),
            Some(("pid", pid)) => pids.extend(pid.parse::<u32>().ok()),
            _ => eprintln!(
                "lab: ignoring the line {line:?} of {}",
                state_path().display()
            ),
        }
    }

    // The processes first (the daemon leaves its pins, `xlb down` removes them): only those
    // still running the lab's own command lines, in case a pid was reused since.
    let dir = kept_dir().display().to_string();
    let ours: Vec<u32> = pids
        .into_iter()
        .filter(|pid| command_line(*pid).is_some_and(|line| line.contains(&dir)))
        .collect();
    signal_and_wait(&ours, libc::SIGTERM, "stopping", "");
    for pid in ours.iter().filter(|pid| !exited(**pid)) {
        // SAFETY: as above; it ignored SIGTERM for the grace period.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    wait_exited(&ours);

    for dir in kept_pin_dirs() {
        if !pin_dirs.contains(&dir) {
            pin_dirs.push(dir);
        }
    }
    for pins in &pin_dirs {
        if pins.join(lb_common::map_names::META).exists()
            && let Some(xlb) = xlb
        {
            let out = Command::new(xlb)
                .arg("down")
                .arg("--pin-path")
                .arg(pins)
                .output();
            match out {
                Ok(out) => print!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(err) => eprintln!("lab: running {} down: {err}", xlb.display()),
            }
        }
        if pins.exists() {
            std::fs::remove_dir_all(pins)
                .with_context(|| format!("removing pins {}", pins.display()))?;
            println!("lab: removed the pins under {}", pins.display());
        }
    }

    for name in kept_namespaces() {
        if !namespaces.contains(&name) {
            namespaces.push(name);
        }
    }
    for name in &namespaces {
        // A namespace outlives its name while a process is in it: end whatever is left
        // (nginx workers of a master that was killed, a shell someone opened there).
        let out = Command::new("ip").args(["netns", "pids", name]).output();
        let left: Vec<u32> = out
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect();
        signal_and_wait(
            &left,
            libc::SIGKILL,
            "killing",
            &format!(" still in {name}"),
        );
        let deleted = Command::new("ip")
            .args(["netns", "delete", name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if deleted {
            println!("lab: deleted namespace {name}");
        }
    }

    let dir = kept_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        println!("lab: removed {}", dir.display());
    }
    let left = kept_leftovers();
    ensure!(
        left.is_empty(),
        "still there after removing the kept lab: {}",
        left.join(", ")
    );
    Ok(true)
}

/// The command line of process `pid`, arguments joined by spaces; None once it is gone.
pub fn command_line(pid: u32) -> Option<String> {
    if exited(pid) {
        return None;
    }
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
    Some(text.trim().to_owned())
}

/// Waits (at most [`GRACE`]) until every process of `pids` has exited: a process still dying
/// holds its pins, files and namespace.
fn wait_exited(pids: &[u32]) {
    let deadline = Instant::now() + GRACE;
    while pids.iter().any(|pid| !exited(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
