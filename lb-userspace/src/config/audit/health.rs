//! `[vip.backend.health]`: checks that can work (XLB013).

use super::*;

impl Audit<'_> {
    /// XLB013: a health check that cannot work. The check, its defaults applied.
    pub(super) fn health(
        &mut self,
        i: usize,
        j: usize,
        vip_port: u16,
        spanned: &Spanned<HealthFile>,
    ) -> HealthCheck {
        let health = spanned.get_ref();
        let field = |name: &str| format!("vip[{i}].backend[{j}].health.{name}");
        // The free-text checks every such field gets (see `text`): a path reaches requests and
        // logs.
        if let Some(path) = &health.path {
            self.length(&field("path"), path, MAX_PATH_LEN);
            self.printable(&field("path"), path);
        }
        let check = *health.check.get_ref();
        match &health.port {
            Some(port) if *port.get_ref() == 0 => self.report(
                &BAD_HEALTH_CHECK,
                port.span(),
                field("port"),
                "health check port 0 cannot be probed".into(),
                "set port to the port the backend's service listens on, e.g. port = 80",
            ),
            None if vip_port == 0 => self.report(
                &BAD_HEALTH_CHECK,
                spanned.span(),
                field("port"),
                "health check has no port, and its VIP (port 0, every port) has none to lend it"
                    .into(),
                "add port = <the port the backend's service listens on>, e.g. port = 80",
            ),
            _ => {}
        }
        if check == Check::Tcp {
            if let Some(path) = &health.path {
                self.report(
                    &BAD_HEALTH_CHECK,
                    path.span(),
                    field("path"),
                    "path only applies to http checks, and this one is tcp".into(),
                    "remove path, or set check = \"http\"",
                );
            }
            if let Some(status) = &health.expect_status {
                self.report(
                    &BAD_HEALTH_CHECK,
                    status.span(),
                    field("expect_status"),
                    "expect_status only applies to http checks, and this one is tcp".into(),
                    "remove expect_status, or set check = \"http\"",
                );
            }
        } else {
            if let Some(path) = &health.path {
                let text = path.get_ref();
                if !text.starts_with('/')
                    || text.chars().any(|c| c.is_whitespace() && !c.is_control())
                {
                    self.report(
                        &BAD_HEALTH_CHECK,
                        path.span(),
                        field("path"),
                        format!("health check path {text:?} is not an HTTP path"),
                        "write an absolute path without spaces, e.g. path = \"/healthz\"",
                    );
                }
            }
            // Only the finding is wanted: a status out of range rejects the config, so the
            // model's copy of it is never used.
            let _ = self.integer(
                &BAD_HEALTH_CHECK,
                &health.expect_status,
                &field("expect_status"),
                HTTP_STATUS_RANGE,
                DEFAULT_EXPECT_STATUS,
                format!(
                    "write expect_status = {DEFAULT_EXPECT_STATUS} (the default) or the HTTP \
                     status a healthy backend answers"
                ),
            );
        }
        let interval = value(&health.interval_ms).unwrap_or(DEFAULT_INTERVAL_MS);
        let timeout = value(&health.timeout_ms).unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout >= interval {
            let (span, name) = match (&health.timeout_ms, &health.interval_ms) {
                (Some(t), _) => (t.span(), "timeout_ms"),
                (None, Some(i)) => (i.span(), "interval_ms"),
                (None, None) => (spanned.span(), "timeout_ms"),
            };
            self.report(
                &BAD_HEALTH_CHECK,
                span,
                field(name),
                format!(
                    "health check timeout_ms ({timeout}) is not below interval_ms ({interval})"
                ),
                "make timeout_ms smaller than interval_ms, e.g. timeout_ms = 500 with \
                 interval_ms = 1000, so each probe ends before the next one starts",
            );
        }
        for (name, count) in [("rise", &health.rise), ("fall", &health.fall)] {
            if let Some(count) = count
                && *count.get_ref() == 0
            {
                let meaning = if name == "rise" { "up" } else { "down" };
                self.report(
                    &BAD_HEALTH_CHECK,
                    count.span(),
                    field(name),
                    format!(
                        "health check {name} is 0: the backend would be marked {meaning} without \
                         a single probe"
                    ),
                    format!(
                        "use at least 1, e.g. {name} = {}",
                        if name == "rise" { 2 } else { 3 }
                    ),
                );
            }
        }
        HealthCheck {
            check: match check {
                Check::Tcp => CheckKind::Tcp,
                Check::Http => CheckKind::Http {
                    path: health
                        .path
                        .as_ref()
                        .map_or_else(|| DEFAULT_HTTP_PATH.to_owned(), |p| p.get_ref().clone()),
                    expect_status: value(&health.expect_status).unwrap_or(DEFAULT_EXPECT_STATUS),
                },
            },
            port: value(&health.port).unwrap_or(vip_port),
            interval: Duration::from_millis(interval.into()),
            timeout: Duration::from_millis(timeout.into()),
            rise: value(&health.rise).unwrap_or(DEFAULT_RISE),
            fall: value(&health.fall).unwrap_or(DEFAULT_FALL),
        }
    }
}
