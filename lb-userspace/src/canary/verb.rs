//! `xlb canary promote|abort`: end a running canary apply now, through the daemon watching it.

use anyhow::Context as _;
use lb_common::{map_names, meta::Meta};

use super::{Alarm, CanaryAction, Finished, Outcome};
use crate::{
    control::Request,
    exit::{self, Coded},
    maps::array,
    owner::{self, Writer},
    pins, rollout,
};

/// Ends the canary running under `pin_path` with `action`: through the daemon watching it, or
/// (an abort only) here when no daemon is left.
pub fn end(pin_path: &std::path::Path, action: CanaryAction) -> anyhow::Result<Finished> {
    let finished = match owner::writer(pin_path)? {
        Writer::Daemon(daemon) => daemon.ask::<Finished>(&Request::CanaryEnd { action })?.1,
        Writer::Direct(_lock) => match action {
            CanaryAction::Promote => {
                return Err(Coded(
                    exit::FAILED,
                    format!(
                        "no `xlb run --config` daemon owns {}: a canary nobody watched is not \
                         promoted; `xlb canary abort` ends it, then start the daemon and the \
                         canary again",
                        pin_path.display()
                    ),
                )
                .into());
            }
            // A daemon that stopped during a watch leaves its canary behind: ending it needs
            // nobody's judgement.
            CanaryAction::Abort => abort_unwatched(pin_path)?,
        },
    };
    Ok(finished)
}

/// Ends the canary left under `pin_path` without a daemon: every new flow takes the live
/// tables again. The tried tables' backends stay loaded until the next apply retires them.
fn abort_unwatched(pin_path: &std::path::Path) -> anyhow::Result<Finished> {
    let mut maps = pins::open(pin_path)?;
    let ended = rollout::end_canary(&mut maps, false)?;
    if ended.is_empty() {
        return Err(Coded(
            exit::FAILED,
            format!("no canary is running under {}", pin_path.display()),
        )
        .into());
    }
    let mut metas = array::<Meta>(&mut maps, map_names::META)?;
    let meta = metas.get(&0, 0).context("reading the meta map")?;
    let meta = Meta {
        generation: meta.generation + 1,
        canary_ends: 0,
        ..meta
    };
    metas.set(0, &meta, 0).context("writing the meta map")?;
    Ok(Finished {
        outcome: Outcome::RolledBack,
        message: format!("{} (no daemon was watching it)", Alarm::Aborted),
        alarm: Some(Alarm::Aborted),
        generation: meta.generation,
    })
}

/// What `xlb canary` prints.
pub fn render(finished: &Finished) -> String {
    match finished.outcome {
        Outcome::Promoted => format!(
            "xlb: canary promoted as generation {}: {}\n",
            finished.generation, finished.message
        ),
        Outcome::RolledBack => format!(
            "xlb: canary rolled back (generation {}): {}\n",
            finished.generation, finished.message
        ),
    }
}
