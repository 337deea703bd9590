//! `plan`'s kernel check: sample flows through the scratch program, each compared with the
//! userspace prediction (flow hash, slot, new table) and counted under the backend it reached.

use aya::programs::Xdp;

use super::{
    Disagreement, KernelCheck,
    sample::{self, Observed, Probe},
    sides::Side,
};
use crate::{
    config::{Forwarding, Protocol, VipModel},
    steering, testrun,
};

/// How many disagreements a report lists; the count covers them all.
const LISTED: usize = 5;

/// The check of one VIP and the sample flows each backend (in `Side::backends` order) got.
pub(in crate::plan) struct Outcome {
    pub check: KernelCheck,
    pub counts: Vec<u32>,
}

/// Runs every probe's first packet through `program`, which holds `after` (the new state).
pub(super) fn check(
    program: &Xdp,
    vip: &VipModel,
    after: &Side,
    probes: &[Probe],
) -> anyhow::Result<Outcome> {
    let ipip = vip.forwarding == Forwarding::Ipip;
    let mut counts = vec![0u32; after.backends.len()];
    let (mut agreed, mut dropped) = (0u32, 0u32);
    let mut disagreements = Vec::new();
    let mut disagreed = 0u32;
    for probe in probes {
        let slot = steering::slot(&after.vip, &probe.key) as usize;
        let predicted = after.owners.get(slot).copied().flatten();
        let outcome = testrun::run(program, &sample::frame(probe, vip.protocol))?;
        let observed = sample::observe(outcome.code, &outcome.output, ipip);
        let (agrees, reached) = judge(after, predicted, observed);
        match reached {
            Some(backend) => counts[backend] += 1,
            None if agrees => dropped += 1,
            None => {}
        }
        if agrees {
            agreed += 1;
            continue;
        }
        disagreed += 1;
        if disagreements.len() < LISTED {
            disagreements.push(Disagreement {
                source: probe.source,
                destination: probe.destination,
                predicted: match predicted {
                    Some(p) => format!("backend {}", after.backends[p].address),
                    None => "dropped (no backend in the slot)".to_owned(),
                },
                observed: observed.to_string(),
            });
        }
    }
    let flows = probes.len() as u32;
    let max_deviation = counts
        .iter()
        .enumerate()
        .map(|(i, n)| (f64::from(*n) / f64::from(flows.max(1)) - after.share(i)).abs())
        .fold(0.0, f64::max);
    Ok(Outcome {
        check: KernelCheck {
            flows,
            packet: match vip.protocol {
                Protocol::Tcp => "tcp-syn",
                Protocol::Udp => "udp",
            },
            agreed,
            disagreed,
            dropped,
            agrees: disagreed == 0,
            max_deviation,
            disagreements,
        },
        counts,
    })
}

/// Whether the kernel did what userspace `predicted` (a backend index of `after`, or `None`
/// for a drop), and the backend the flow is counted under.
fn judge(after: &Side, predicted: Option<usize>, observed: Observed) -> (bool, Option<usize>) {
    let reached: Vec<usize> = (0..after.backends.len())
        .filter(|&i| match observed {
            Observed::Mac(mac) => after.backends[i].mac == mac,
            Observed::Tunnel(address) => after.backends[i].address == address,
            Observed::Dropped | Observed::Other(_) => false,
        })
        .collect();
    match predicted {
        // Backends sharing a MAC (dsr) or an address are indistinguishable on the wire: a
        // frame agrees if it carries what the predicted backend's would.
        Some(p) if reached.contains(&p) => (true, Some(p)),
        None if observed == Observed::Dropped => (true, None),
        _ => (false, reached.first().copied()),
    }
}

#[cfg(test)]
mod tests {
    use lb_common::Vip;

    use super::*;
    use crate::plan::sides::SideBackend;

    fn side() -> Side {
        let backend = |last: u8, mac: u8| SideBackend {
            address: format!("198.18.0.{last}").parse().unwrap(),
            weight: 1,
            mac: [2, 0, 0, 0, 3, mac],
            flags: 0,
        };
        Side::for_test(
            Vip {
                table_size: 3,
                ..Vip::default()
            },
            // .10 and .11 share a MAC, as backends behind one next hop do.
            vec![backend(10, 0), backend(11, 0), backend(12, 2)],
            vec![Some(0), Some(1), Some(2)],
        )
    }

    #[test]
    fn judge_compares_the_frame_with_the_predicted_backend() {
        // Test that the kernel agrees when its frame carries the predicted backend's MAC or
        // tunnel address (even a MAC another backend shares), disagrees otherwise, and that a
        // drop agrees only with an empty slot.
        let side = side();
        let mac = |last| Observed::Mac([2, 0, 0, 0, 3, last]);
        assert_eq!(judge(&side, Some(2), mac(2)), (true, Some(2)));
        assert_eq!(judge(&side, Some(1), mac(0)), (true, Some(1)));
        assert_eq!(judge(&side, Some(2), mac(0)), (false, Some(0)));
        let tunnel = Observed::Tunnel("198.18.0.11".parse().unwrap());
        assert_eq!(judge(&side, Some(1), tunnel), (true, Some(1)));
        assert_eq!(judge(&side, Some(0), tunnel), (false, Some(1)));
        assert_eq!(judge(&side, None, Observed::Dropped), (true, None));
        assert_eq!(judge(&side, Some(0), Observed::Dropped), (false, None));
        assert_eq!(judge(&side, None, Observed::Other(2)), (false, None));
        assert_eq!(judge(&side, None, mac(9)), (false, None));
    }
}
