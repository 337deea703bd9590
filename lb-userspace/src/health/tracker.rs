//! The rise/fall state machine: probes in, health changes out. Pure, so the daemon's policy is
//! testable without sockets or clocks.

use super::{Health, Probe, Transition};

/// The health of every target and its current run of successes or failures.
#[derive(Clone, Debug)]
pub struct Tracker {
    states: Vec<State>,
}

#[derive(Clone, Copy, Debug)]
struct State {
    health: Health,
    /// Successes in a row; zero after a failure.
    successes: u32,
    /// Failures in a row; zero after a success.
    failures: u32,
}

impl Tracker {
    /// `count` targets (or tracks of targets), every one Up: a (re)started daemon never pulls
    /// a backend before its checks have failed `fall` times.
    pub fn new(count: usize) -> Tracker {
        let up = State {
            health: Health::Up,
            successes: 0,
            failures: 0,
        };
        Tracker {
            states: vec![up; count],
        }
    }

    /// Counts one probe's outcome for target `index` (a shared probe's outcome counts for
    /// each target it serves, without a copy per target). Returns the transition when this probe completes a run of `rise`
    /// successes of a Down target or `fall` failures of an Up one; a run that goes on past that
    /// changes nothing more. A `rise` or `fall` of 0 counts as 1 (the config rejects 0).
    ///
    /// Panics if `index` is not the index of a target given to `new`.
    pub fn record(
        &mut self,
        index: usize,
        probe: &Probe,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        let count = self.states.len();
        let state = self.states.get_mut(index).unwrap_or_else(|| {
            panic!("probe of target {index} recorded by a tracker of {count} targets")
        });
        if probe.ok {
            state.failures = 0;
            state.successes = state.successes.saturating_add(1);
            if state.health == Health::Down && state.successes >= rise.max(1) {
                state.health = Health::Up;
                return Some(Transition {
                    target_index: index,
                    health: Health::Up,
                    reason: format!("{} checks in a row passed", state.successes),
                });
            }
        } else {
            state.successes = 0;
            state.failures = state.failures.saturating_add(1);
            if state.health == Health::Up && state.failures >= fall.max(1) {
                state.health = Health::Down;
                let failures = state.failures;
                let reason = match &probe.error {
                    Some(last) => format!("{failures} checks in a row failed, the last: {last}"),
                    None => format!("{failures} checks in a row failed, the last: no error given"),
                };
                return Some(Transition {
                    target_index: index,
                    health: Health::Down,
                    reason,
                });
            }
        }
        None
    }

    /// The health of target `index`. Panics if there is no such target.
    pub fn health(&self, index: usize) -> Health {
        self.states[index].health
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::{Cause, Failure};

    const RISE: u32 = 2;
    const FALL: u32 = 3;

    fn success(target_index: usize) -> Probe {
        Probe {
            target_index,
            ok: true,
            duration: Duration::from_millis(1),
            error: None,
        }
    }

    fn failure(target_index: usize) -> Probe {
        Probe {
            target_index,
            ok: false,
            duration: Duration::from_millis(1),
            error: Some(Failure::Connect {
                address: "198.18.0.10:80".parse().expect("an address"),
                cause: Cause::Io {
                    kind: std::io::ErrorKind::ConnectionRefused,
                    os: None,
                },
            }),
        }
    }

    /// Records `probes` and returns each one's transition.
    fn feed(tracker: &mut Tracker, probes: &[Probe]) -> Vec<Option<Transition>> {
        probes
            .iter()
            .map(|p| tracker.record(p.target_index, p, RISE, FALL))
            .collect()
    }

    #[test]
    fn targets_start_up() {
        // Test that a new tracker holds every target Up, so nothing is pulled before probing.
        let tracker = Tracker::new(3);
        for index in 0..3 {
            assert_eq!(tracker.health(index), Health::Up);
        }
    }

    #[test]
    fn fall_failures_in_a_row_take_a_target_down_once() {
        // Test that the fall-th failure in a row, and no earlier one, brings one Down transition
        // naming the last error, and further failures bring none.
        let mut tracker = Tracker::new(1);
        let outcomes = feed(&mut tracker, &[failure(0), failure(0)]);
        assert_eq!(outcomes, [None, None]);
        assert_eq!(tracker.health(0), Health::Up);

        let down = tracker.record(0, &failure(0), RISE, FALL);
        assert_eq!(
            down,
            Some(Transition {
                target_index: 0,
                health: Health::Down,
                reason: "3 checks in a row failed, the last: connect to 198.18.0.10:80: \
                         connection refused"
                    .into(),
            })
        );
        assert_eq!(tracker.health(0), Health::Down);
        assert_eq!(feed(&mut tracker, &[failure(0), failure(0)]), [None, None]);
    }

    #[test]
    fn rise_successes_in_a_row_bring_a_target_back_up_once() {
        // Test that a Down target comes Up on the rise-th success in a row, and only once.
        let mut tracker = Tracker::new(1);
        feed(&mut tracker, &[failure(0), failure(0), failure(0)]);
        assert_eq!(tracker.record(0, &success(0), RISE, FALL), None);
        assert_eq!(tracker.health(0), Health::Down);
        let up = tracker
            .record(0, &success(0), RISE, FALL)
            .expect("an Up transition");
        assert_eq!(
            (up.target_index, up.health, up.reason.as_str()),
            (0, Health::Up, "2 checks in a row passed")
        );
        assert_eq!(feed(&mut tracker, &[success(0), success(0)]), [None, None]);
        assert_eq!(tracker.health(0), Health::Up);
    }

    #[test]
    fn a_success_between_failures_restarts_the_count() {
        // Test that failures must be consecutive: a success in between resets the count, so
        // fall-1 failures, a success, and fall-1 failures again leave the target Up.
        let mut tracker = Tracker::new(1);
        let probes = [failure(0), failure(0), success(0), failure(0), failure(0)];
        assert_eq!(feed(&mut tracker, &probes), [None, None, None, None, None]);
        assert_eq!(tracker.health(0), Health::Up);
        assert!(tracker.record(0, &failure(0), RISE, FALL).is_some());
    }

    #[test]
    fn a_failure_between_successes_restarts_the_rise() {
        // Test that a Down target needs rise successes in a row: a failure in between resets it.
        let mut tracker = Tracker::new(1);
        feed(&mut tracker, &[failure(0), failure(0), failure(0)]);
        let probes = [success(0), failure(0), success(0)];
        assert_eq!(feed(&mut tracker, &probes), [None, None, None]);
        assert_eq!(tracker.health(0), Health::Down);
        assert!(tracker.record(0, &success(0), RISE, FALL).is_some());
    }

    #[test]
    fn targets_are_tracked_apart() {
        // Test that one target's failures do not count against another's.
        let mut tracker = Tracker::new(2);
        let probes = [failure(0), failure(1), failure(0), success(1), failure(0)];
        let outcomes = feed(&mut tracker, &probes);
        assert_eq!(outcomes[..4], [None, None, None, None]);
        assert_eq!(outcomes[4].as_ref().map(|t| t.target_index), Some(0));
        assert_eq!(
            (tracker.health(0), tracker.health(1)),
            (Health::Down, Health::Up)
        );
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        // Test the smallest thresholds: every change of outcome is a transition.
        let mut tracker = Tracker::new(1);
        let flips: Vec<Option<Health>> = [failure(0), failure(0), success(0), failure(0)]
            .iter()
            .map(|p| tracker.record(p.target_index, p, 1, 1).map(|t| t.health))
            .collect();
        assert_eq!(
            flips,
            [
                Some(Health::Down),
                None,
                Some(Health::Up),
                Some(Health::Down)
            ]
        );
    }
}
