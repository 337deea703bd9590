//! `[global]` and `[audit]`: the interface, sizes, paths, addresses and thresholds (XLB009,
//! XLB014, XLB023, XLB025).

use super::*;

impl Audit<'_> {
    /// `[global]`, its defaults applied; `None` if a value has no model form.
    pub(super) fn global(&mut self, global: &GlobalFile, env: &dyn Environment) -> Option<Global> {
        let interface = global.interface.get_ref();
        // A name too long for the kernel is reported by `lengths`, one with a control character
        // is XLB024's finding: no interface can carry either.
        if interface.len() <= MAX_INTERFACE_LEN
            && !interface.chars().any(char::is_control)
            && !env.interface_exists(interface)
        {
            let known = env.interfaces();
            let fix = if known.is_empty() {
                "set global.interface to an interface of this host (see `ip link`)".to_owned()
            } else {
                format!(
                    "set global.interface to an interface of this host: {} (see `ip link`)",
                    known.join(", ")
                )
            };
            self.report(
                &UNKNOWN_INTERFACE,
                global.interface.span(),
                "global.interface".into(),
                format!("interface \"{interface}\" does not exist on this host"),
                fix + "; or validate on the host that will run xlb",
            );
        }
        let flow_table_size = self.integer(
            &BAD_GLOBAL,
            &global.flow_table_size,
            "global.flow_table_size",
            FLOW_TABLE_SIZE_RANGE,
            DEFAULT_FLOW_TABLE_SIZE,
            format!(
                "write flow_table_size = {DEFAULT_FLOW_TABLE_SIZE} (the default) or another \
                 number of flows to remember"
            ),
        );
        let mtu = self.integer(
            &BAD_GLOBAL,
            &global.mtu,
            "global.mtu",
            MTU_RANGE,
            DEFAULT_MTU,
            format!(
                "write mtu = {DEFAULT_MTU} (the default) or the MTU of the path to the backends"
            ),
        );
        if let Some(pin_path) = &global.pin_path {
            let path = Path::new(pin_path.get_ref());
            let under_bpffs = path.is_absolute()
                && path.starts_with(BPFFS_ROOT)
                && path != Path::new(BPFFS_ROOT)
                && !path.components().any(|c| c == Component::ParentDir);
            if !under_bpffs {
                self.report(
                    &BAD_GLOBAL,
                    pin_path.span(),
                    "global.pin_path".into(),
                    format!(
                        "pin_path \"{}\" is not a directory under {BPFFS_ROOT}",
                        pin_path.get_ref()
                    ),
                    format!(
                        "use an absolute path below the bpffs mount, e.g. \"{}\" (pins only live \
                         on a bpffs)",
                        model::DEFAULT_PIN_PATH
                    ),
                );
            }
        }
        let metrics_address = global
            .metrics_address
            .as_ref()
            .map(|address| (address, address.get_ref().parse::<SocketAddr>()));
        if let Some((address, Ok(parsed))) = &metrics_address
            && !parsed.ip().is_loopback()
        {
            self.report(
                &METRICS_EXPOSED,
                address.span(),
                "global.metrics_address".into(),
                format!(
                    "metrics_address \"{}\" is not a loopback address: anyone who reaches \
                     {} reads the metrics, without authentication",
                    address.get_ref(),
                    parsed.ip()
                ),
                "serve on loopback (e.g. \"127.0.0.1:9100\") and let a local Prometheus or a \
                 reverse proxy with authentication and TLS carry the metrics further; if this \
                 address is firewalled to the scrapers, keep it and ignore this warning",
            );
        }
        if let Some((address, Err(_))) = &metrics_address {
            self.report(
                &BAD_GLOBAL,
                address.span(),
                "global.metrics_address".into(),
                format!(
                    "metrics_address \"{}\" is not an IP address and port",
                    address.get_ref()
                ),
                "write an IP address and a port, e.g. \"127.0.0.1:9100\" or \"[::1]:9100\" \
                 (host names are not resolved)",
            );
        }
        let drain_timeout = self.integer(
            &BAD_GLOBAL,
            &global.drain_timeout_seconds,
            "global.drain_timeout_seconds",
            DRAIN_TIMEOUT_SECONDS_RANGE,
            model::DEFAULT_DRAIN_TIMEOUT_SECONDS,
            format!(
                "write drain_timeout_seconds = {} (the default) or another number of seconds in \
                 {}..={}: how long a drained backend keeps its established flows before the \
                 daemon disables it",
                model::DEFAULT_DRAIN_TIMEOUT_SECONDS,
                DRAIN_TIMEOUT_SECONDS_RANGE.start(),
                DRAIN_TIMEOUT_SECONDS_RANGE.end()
            ),
        );
        let sources = [
            (
                "ipip_source_v4",
                global
                    .ipip_source_v4
                    .as_ref()
                    .map(|s| (IpAddr::V4(s.get_ref().0.addr()), s.span())),
            ),
            (
                "ipip_source_v6",
                global
                    .ipip_source_v6
                    .as_ref()
                    .map(|s| (IpAddr::V6(s.get_ref().0.addr()), s.span())),
            ),
        ];
        for (name, source) in sources {
            if let Some((address, span)) = source
                && let Some(why) = unusable(address)
            {
                self.report(
                    &UNUSABLE_ADDRESS,
                    span,
                    format!("global.{name}"),
                    format!("{name} {address} is {why}: backends cannot answer it"),
                    format!("set {name} to a unicast address of this host the backends can reach"),
                );
            }
        }
        Some(Global {
            interface: interface.clone(),
            xdp_mode: model::xdp_mode(value(&global.xdp_mode)),
            flow_table_size: flow_table_size?,
            flow_admission: value(&global.flow_admission).unwrap_or_default(),
            pin_path: global
                .pin_path
                .as_ref()
                .map_or_else(|| DEFAULT_PIN_PATH.into(), |p| p.get_ref().into()),
            metrics_address: match metrics_address {
                Some((_, parsed)) => parsed.ok()?,
                None => DEFAULT_METRICS_ADDRESS,
            },
            mtu: mtu?,
            ipip_source_v4: value(&global.ipip_source_v4).map(|a| a.0),
            ipip_source_v6: value(&global.ipip_source_v6).map(|a| a.0),
            drain_timeout: Duration::from_secs(drain_timeout?),
        })
    }

    /// `[audit]`, its defaults applied (and in place of a value out of range, whose finding
    /// rejects the config, so the VIPs are still judged).
    pub(super) fn thresholds(&mut self, file: &ConfigFile) -> AuditThresholds {
        let defaults = AuditThresholds::default();
        let Some(audit) = &file.audit else {
            return defaults;
        };
        let interval = self.integer(
            &BAD_GLOBAL,
            &audit.get_ref().interval_seconds,
            "audit.interval_seconds",
            AUDIT_INTERVAL_SECONDS_RANGE,
            model::DEFAULT_AUDIT_INTERVAL_SECONDS,
            format!(
                "write interval_seconds = {} (the default) or another number of seconds in \
                 {}..={}: how often the daemon audits the live maps",
                model::DEFAULT_AUDIT_INTERVAL_SECONDS,
                AUDIT_INTERVAL_SECONDS_RANGE.start(),
                AUDIT_INTERVAL_SECONDS_RANGE.end()
            ),
        );
        self.real(
            &BAD_GLOBAL,
            &audit.get_ref().max_backend_share,
            "audit.max_backend_share",
            Real::Share,
            "write a share above 0 and at most 1, e.g. max_backend_share = 0.5 (1 turns the \
             warning off)"
                .into(),
        );
        let audit = audit.get_ref();
        AuditThresholds {
            max_backend_share: value(&audit.max_backend_share)
                .unwrap_or(defaults.max_backend_share),
            min_backends: value(&audit.min_backends).unwrap_or(defaults.min_backends),
            interval: interval.map_or(defaults.interval, Duration::from_secs),
        }
    }
}
