//! `xlb run`: load and attach the XDP program, apply a config, and report counters until
//! stopped. With a config, the program, its link and its maps are pinned, so forwarding does
//! not depend on this process and the other verbs can reach the live state.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{Ebpf, maps::Array, programs::links::FdLink};
use lb_common::{
    FlowSet, PROGRAM_NAME,
    flow::{FLOW_WAYS, flow_sets},
    map_names,
    meta::{ATTACH_GENERIC, ATTACH_NATIVE, Meta},
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    attach::{self, AttachMode, Attached},
    capacity::{Capacity, SIZED_MAPS},
    config::{self, HostEnvironment},
    counters::Totals,
    daemon::{Daemon, Signals, Stopped},
    exit,
    maps::{Maps, array},
    object::{self, Redefined},
    owner::Owner,
    pins,
    rollout::{self, Desired},
};

/// What `xlb run` runs: a config, or an interface with no services.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The config to run (its interface, pin path and mode).
    pub config: Option<PathBuf>,
    /// Without a config: the interface to attach to, pinning nothing.
    pub interface: Option<String>,
    /// Without a config: where the program runs.
    pub xdp_mode: AttachMode,
    /// Stop after this many seconds instead of waiting for a signal.
    pub duration: Option<u64>,
    /// Without a config: print the counters every this many seconds (0: only at exit).
    pub stats_interval: u64,
}

/// Runs until stopped; the exit code.
pub async fn run(args: RunOptions) -> anyhow::Result<u8> {
    match (&args.config, &args.interface) {
        (Some(file), _) => run_config(file, &args).await,
        (None, Some(interface)) => {
            let mut ebpf = object::load(object::XDP_OBJECT, PROGRAM_NAME)?;
            let program = object::xdp_program(&mut ebpf, PROGRAM_NAME)?;
            let attached = attach::attach(program, interface, args.xdp_mode)?;
            println!("xlb: attached to {interface} ({:?} XDP)", attached.mode);
            report_until_stopped(&ebpf, &args).await?;
            // Dropping the object detaches the program and frees its maps.
            drop(ebpf);
            println!("xlb: detached from {interface}");
            Ok(exit::OK)
        }
        (None, None) => bail!("give --config FILE, or --interface NAME to run without services"),
    }
}

async fn run_config(file: &Path, args: &RunOptions) -> anyhow::Result<u8> {
    let signals = Signals::take()?;
    // One read: the model is built from, and the meta hash taken of, the same text. The
    // daemon's reloads parse and check again only the VIPs that change.
    let mut recheck = config::Recheck::default();
    let config::Loaded {
        model,
        warnings,
        text,
        counts,
    } = match config::load_reusing(file, &HostEnvironment, &mut recheck) {
        Ok(loaded) => loaded,
        Err(rejected) => {
            for diagnostic in &rejected.diagnostics {
                eprintln!("{diagnostic}");
            }
            eprintln!("xlb: {} is invalid; nothing was loaded", file.display());
            return Ok(if rejected.unreadable() {
                exit::UNREADABLE
            } else {
                exit::INVALID
            });
        }
    };
    for warning in &warnings {
        eprintln!("{warning}");
    }
    let pin_path = &model.global.pin_path.clone();
    crate::privilege::require("xlb run")?;
    let interface = &model.global.interface.clone();
    // Before anything is read from or pinned into it: a directory another user controls
    // would hand them the link pin.
    pins::prepare_dir(pin_path)?;
    // The only writer of the pins from here on: verbs reach it through the control socket.
    let mut owner = Owner::take(pin_path)?;
    // A pinned link means a data plane is running (its daemon may have died): adopt it.
    let adopting = pins::link_path(pin_path).exists();
    let mut sizes = model.capacity.map_sizes();
    let flow_sets = flow_sets(model.global.flow_table_size);
    sizes.push((map_names::FLOWS, flow_sets));
    // A pinned program of another capacity: its sized maps are replaced (new ones, filled by
    // the apply below, pinned once the new program has taken over), every other map adopted.
    let resized = Capacity::pinned(pin_path)?.filter(|pinned| *pinned != model.capacity);
    // Pinned maps an older xlb defined otherwise (type, key or value size, flags) are replaced
    // the same way.
    let redefined = object::redefined_maps(object::XDP_OBJECT, &map_names::XLB, pin_path)?;
    let (replaced, adopted): (Vec<&str>, Vec<&str>) =
        map_names::XLB.into_iter().partition(|name| {
            (resized.is_some() && SIZED_MAPS.contains(name))
                || redefined.iter().any(|map| map.map == *name)
        });
    let mut ebpf =
        object::load_pinned(object::XDP_OBJECT, PROGRAM_NAME, &sizes, &adopted, pin_path)?;
    let adopted_sets = Array::<_, FlowSet>::try_from(Maps::map(&ebpf, map_names::FLOWS)?)
        .context("the flow table map has an unexpected type")?
        .len();
    if adopted_sets != flow_sets {
        eprintln!(
            "xlb: the flow table pinned under {} holds {} flows and keeps them; \
             flow_table_size = {} takes effect after `xlb down` and a fresh `xlb run`",
            pin_path.display(),
            adopted_sets as usize * FLOW_WAYS,
            model.global.flow_table_size
        );
    }
    if adopting {
        let meta = array::<Meta>(&mut ebpf, map_names::META)?.get(&0, 0)?;
        let running = meta_interface(&meta);
        if running != *interface {
            bail!(
                "the xlb pinned under {} is attached to `{running}`, the config says \
                 `{interface}`: run `xlb down --pin-path {}` first to move it",
                pin_path.display(),
                pin_path.display()
            );
        }
    }
    // Configure before attaching (or before the new program takes over the link), so every
    // packet sees the config; counters and the flow table live on in the adopted maps.
    // Health is judged afresh: every backend starts healthy, as the daemon's checks assume
    // (an adopted map may still carry the previous daemon's verdicts).
    // A canary the previous daemon was watching is rolled back by this apply (it writes every
    // VIP without a threshold): nobody watched the slice meanwhile, so its verdict is unknown.
    let left_canary = if adopting {
        crate::canary::running(&crate::live::Snapshot::read(&mut ebpf)?)
    } else {
        Vec::new()
    };
    if !left_canary.is_empty() {
        tracing::warn!(
            vips = ?left_canary.iter().map(crate::rollout::describe_vip).collect::<Vec<_>>(),
            "a canary apply was being watched when the previous daemon stopped: rolled back \
             (every new flow takes {}'s tables); start the canary again to try it",
            file.display()
        );
    }
    let mut desired = Desired::from_model(&model, text.hash);
    for backend in desired
        .vips
        .iter_mut()
        .flat_map(|vip| vip.backends.iter_mut())
    {
        backend.unhealthy = Some(false);
    }
    let started = std::time::Instant::now();
    rollout::apply(&mut ebpf, &desired)?;
    let first_apply = started.elapsed();
    if let Err(err) = crate::names::record(pin_path, &model) {
        tracing::warn!("{err:#}");
    }
    if adopting {
        pins::upgrade(&mut ebpf, PROGRAM_NAME, pin_path)?;
        pins::replace_maps(&ebpf, &replaced, pin_path)?;
        if let Some(pinned) = resized {
            println!("{}", capacity_changed(&pinned, &model.capacity));
        }
        if !redefined.is_empty() {
            println!("{}", redefined_replaced(&redefined));
        }
        println!(
            "xlb: adopted the data plane pinned under {} on {interface}: program replaced \
             through its link, {} VIPs applied",
            pin_path.display(),
            model.vips.len()
        );
    } else {
        let program = object::xdp_program(&mut ebpf, PROGRAM_NAME)?;
        let attached = attach::attach(program, interface, model.global.xdp_mode)?;
        let mode = attached.mode;
        let link = FdLink::try_from(program.take_link(attached.link)?).context(
            "the kernel attached the program without a bpf_link (kernel older than 5.9?)",
        )?;
        // The link pin goes last: its presence means xlb is configured and attached.
        if let Err(err) = record_attachment(&mut ebpf, mode, attached.ifindex, interface)
            .and_then(|()| pins::replace_maps(&ebpf, &replaced, pin_path))
            .and_then(|()| pins::pin_program_and_link(&mut ebpf, PROGRAM_NAME, link, pin_path))
        {
            // Nothing half-done stays behind: without its pins the program detaches on exit.
            let _ = pins::remove(pin_path);
            return Err(err);
        }
        println!(
            "xlb: attached to {interface} ({mode:?} XDP), {} VIPs applied, pinned under {}",
            model.vips.len(),
            pin_path.display()
        );
    }
    // From here the daemon's own descriptor keeps the program attached, whatever happens to
    // the link pin while it runs.
    let keeper = pins::Keeper::open(pin_path)?;
    let mut daemon = Daemon::start(
        file,
        model,
        text,
        counts,
        recheck,
        keeper,
        owner.listener()?,
        first_apply,
    )
    .await?;
    if !left_canary.is_empty() {
        daemon.rolled_back_at_start();
    }
    match daemon
        .run(&mut ebpf, args.duration.map(Duration::from_secs), signals)
        .await?
    {
        Stopped::Signal if pins::link_path(pin_path).exists() => println!(
            "xlb: stopped; forwarding continues on the program pinned under {} (`xlb down` \
             detaches it, `xlb run` adopts it)",
            pin_path.display()
        ),
        Stopped::Signal => eprintln!(
            "xlb: stopped; the pins under {} are gone, so forwarding stops with this process",
            pin_path.display()
        ),
        Stopped::Down => println!(
            "xlb: stopped by `xlb down`: VIPs withdrawn, pins under {} removed, the program \
             is detached",
            pin_path.display()
        ),
    }
    Ok(exit::OK)
}

/// What a restart with a new capacity did, and what it kept (README, "Capacity").
fn capacity_changed(pinned: &Capacity, wanted: &Capacity) -> String {
    format!(
        "xlb: capacity changed from {pinned} to {wanted}: the VIP, backend and table maps were \
         replaced and every table rebuilt ({}); kept: the flow table (established flows \
         re-resolve through the rebuilt tables, which are the same for the same config, so \
         they stay on their backends) and the per-reason and per-event counters; per-VIP and \
         per-backend counters start again from zero",
        wanted.memory_here()
    )
}

/// What replacing the maps an older xlb defined otherwise did, and what each replacement means
/// (README, "Capacity").
fn redefined_replaced(redefined: &[Redefined]) -> String {
    let maps = redefined
        .iter()
        .map(|map| {
            let meaning = match map.map {
                map_names::FLOWS => {
                    "established flows re-resolve through the tables, which are the same for \
                     the same config, so they stay on their backends"
                }
                map_names::REASONS
                | map_names::EVENTS
                | map_names::VIP_STATS
                | map_names::BACKEND_STATS => "its counters start again from zero",
                _ => "written afresh from the config",
            };
            format!(
                "{} ({} {} here, {} wanted): {meaning}",
                map.map, map.property, map.pinned, map.wanted
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "xlb: maps pinned by an older xlb are defined otherwise and were replaced by new ones, \
         filled by this apply and pinned once the new program took over: {maps}"
    )
}

/// The interface name recorded in the meta map.
fn meta_interface(meta: &Meta) -> String {
    let len = meta
        .interface
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(meta.interface.len());
    String::from_utf8_lossy(&meta.interface[..len]).into_owned()
}

/// Records where and how the program is attached in the meta map.
fn record_attachment(
    ebpf: &mut Ebpf,
    mode: Attached,
    ifindex: u32,
    interface: &str,
) -> anyhow::Result<()> {
    let attach_mode = match mode {
        Attached::Native => ATTACH_NATIVE,
        Attached::Generic => ATTACH_GENERIC,
    };
    let mut name = [0u8; 16];
    let len = interface.len().min(15);
    name[..len].copy_from_slice(&interface.as_bytes()[..len]);
    let mut metas = array::<Meta>(ebpf, map_names::META)?;
    let meta = metas.get(&0, 0)?;
    metas.set(
        0,
        &Meta {
            ifindex,
            attach_mode,
            interface: name,
            ..meta
        },
        0,
    )?;
    Ok(())
}

async fn report_until_stopped(
    maps: &(impl Maps + ?Sized),
    args: &RunOptions,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let deadline = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = ticker.tick(), if args.stats_interval > 0 => {
                print!("{}", Totals::read(maps)?.render());
            }
        }
    }
    print!("{}", Totals::read(maps)?.render());
    Ok(())
}
