//! `[alerts]`: settings that would alert on noise or never alert (XLB015).

use super::*;

impl Audit<'_> {
    /// XLB015: settings of the daemon's alerts that would alert on noise or never alert.
    /// `[alerts]` with its defaults applied (all of them without the table); `None` if a value
    /// has no model form.
    pub(super) fn alerts(&mut self, alerts: Option<&AlertsFile>) -> Option<Alerts> {
        let defaults = Alerts::default();
        let Some(alerts) = alerts else {
            return Some(defaults);
        };
        let window = self.integer(
            &BAD_ALERTS,
            &alerts.window_seconds,
            "alerts.window_seconds",
            ALERT_WINDOW_SECONDS_RANGE,
            model::DEFAULT_ALERT_WINDOW_SECONDS,
            format!(
                "write window_seconds = {} (the default) or another number of seconds in \
                 {}..={}: the sliding window over which new flows are counted",
                model::DEFAULT_ALERT_WINDOW_SECONDS,
                ALERT_WINDOW_SECONDS_RANGE.start(),
                ALERT_WINDOW_SECONDS_RANGE.end()
            ),
        );
        self.real(
            &BAD_ALERTS,
            &alerts.skew_factor,
            "alerts.skew_factor",
            Real::Factor,
            format!(
                "write skew_factor = {} (the default) or another number above 1: a backend alerts \
                 when its share of new flows is more than skew_factor times its expected share, \
                 so 1 or less would flag backends that get their fair share",
                model::DEFAULT_SKEW_FACTOR
            ),
        );
        self.real(
            &BAD_ALERTS,
            &alerts.flood_factor,
            "alerts.flood_factor",
            Real::Factor,
            format!(
                "write flood_factor = {} (the default) or another number above 1: a VIP alerts \
                 when its new flows per second are more than flood_factor times its normal \
                 rate, so 1 or less would flag ordinary traffic",
                model::DEFAULT_FLOOD_FACTOR
            ),
        );
        self.real(
            &BAD_ALERTS,
            &alerts.max_share,
            "alerts.max_share",
            Real::Share,
            format!(
                "write max_share = {} (the default) or another share above 0 and at most 1 (1 \
                 turns this alert off)",
                model::DEFAULT_MAX_SHARE
            ),
        );
        let min_healthy = self.integer(
            &BAD_ALERTS,
            &alerts.min_healthy,
            "alerts.min_healthy",
            MIN_HEALTHY_RANGE,
            defaults.min_healthy,
            format!(
                "write min_healthy = {} (the default) or a larger count: a VIP alerts when fewer \
                 of its backends are healthy, so 0 would never alert",
                model::DEFAULT_MIN_HEALTHY
            ),
        );
        let min_new_flows = self.integer(
            &BAD_ALERTS,
            &alerts.min_new_flows,
            "alerts.min_new_flows",
            MIN_NEW_FLOWS_RANGE,
            defaults.min_new_flows,
            format!(
                "write min_new_flows = {} (the default) or another count of at least 0 (0 lets \
                 share alerts fire on any traffic)",
                model::DEFAULT_MIN_NEW_FLOWS
            ),
        );
        let flood_min_rate = self.integer(
            &BAD_ALERTS,
            &alerts.flood_min_rate,
            "alerts.flood_min_rate",
            FLOOD_MIN_RATE_RANGE,
            defaults.flood_min_rate,
            format!(
                "write flood_min_rate = {} (the default) or another number of new flows per \
                 second of at least 0: below it no rate is a flood",
                model::DEFAULT_FLOOD_MIN_RATE
            ),
        );
        let max_evicted_proven = self.integer(
            &BAD_ALERTS,
            &alerts.max_evicted_proven,
            "alerts.max_evicted_proven",
            MAX_EVICTED_PROVEN_RANGE,
            defaults.max_evicted_proven,
            format!(
                "write max_evicted_proven = {} (the default) or another count of at least 0: \
                 the established flows the flow table may evict in a window before `evictions` \
                 fires",
                model::DEFAULT_MAX_EVICTED_PROVEN
            ),
        );
        if let Some(command) = &alerts.command {
            let empty = command.get_ref().trim().is_empty();
            self.text(
                &BAD_ALERTS,
                command,
                "alerts.command",
                empty.then_some("is empty: there is nothing to run"),
                "write the shell command to run when an alert starts or stops firing, e.g. \
                 command = 'logger -t xlb \"$XLB_ALERT_MESSAGE\"', or remove command to run \
                 nothing",
            );
        }
        Some(Alerts {
            window: Duration::from_secs(window?),
            skew_factor: value(&alerts.skew_factor).unwrap_or(defaults.skew_factor),
            max_share: value(&alerts.max_share).unwrap_or(defaults.max_share),
            min_healthy: min_healthy?,
            min_new_flows: min_new_flows?,
            flood_factor: value(&alerts.flood_factor).unwrap_or(defaults.flood_factor),
            flood_min_rate: flood_min_rate?,
            max_evicted_proven: max_evicted_proven?,
            command: alerts.command.as_ref().map(|c| c.get_ref().clone()),
        })
    }
}
