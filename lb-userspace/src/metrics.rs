//! `/metrics`: a running xlb's counters, shares, backend health and alerts in the Prometheus
//! text exposition format 0.0.4, and the minimal HTTP server that answers scrapes.

use std::{collections::BTreeMap, fmt, io, net::IpAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use lb_common::{Counter, Verdict, VipKey, map_names, meta::Meta};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::{
    config::Model,
    maps::{Maps, array},
    rollout::describe_vip,
    skew::{Alert, AlertKind},
    stats::{self, Stats},
};

/// What the daemon knows beyond the maps. A VIP is named either by `describe_vip` (the `vip`
/// label, e.g. `198.18.1.10:80/tcp`) or by its config name when `vip_names` maps that name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extra {
    /// Config name → VIP key ([`Extra::set_vip_names`]); adds `xlb_vip_info{vip,name}` and
    /// lets the rows below name VIPs as the config does.
    pub vip_names: Vec<(String, VipKey)>,
    /// Health-check state: (VIP, backend, 1 up / 0 down). A backend without a row has no
    /// check and counts as up.
    pub health: Vec<(String, IpAddr, u8)>,
    /// The skew detector's alerts ([`crate::skew::Detector::firing`]). Every live VIP shows a
    /// 0 for each [`AlertKind`] not firing.
    pub alerts: Vec<Alert>,
    /// How long the last apply took.
    pub last_apply_seconds: f64,
    /// How long the last health check of each backend took: (VIP, backend, seconds).
    pub health_check_seconds: Vec<(String, IpAddr, f64)>,
}

impl Extra {
    /// Maps each VIP's config name to its key, so rows may use the names.
    pub fn set_vip_names(&mut self, model: &Model) {
        self.vip_names = model
            .vips
            .iter()
            .map(|vip| (vip.name.clone(), vip.key()))
            .collect();
    }

    /// Records a health-check result of `backend` of `vip`: up (1) or down (0).
    pub fn set_health(&mut self, vip: &str, backend: IpAddr, up: bool) {
        let up = u8::from(up);
        match self
            .health
            .iter_mut()
            .find(|(v, b, _)| v == vip && *b == backend)
        {
            Some(row) => row.2 = up,
            None => self.health.push((vip.to_owned(), backend, up)),
        }
    }

    /// Records how long the latest health check of `backend` of `vip` took.
    pub fn record_check(&mut self, vip: &str, backend: IpAddr, duration: Duration) {
        let seconds = duration.as_secs_f64();
        match self
            .health_check_seconds
            .iter_mut()
            .find(|(v, b, _)| v == vip && *b == backend)
        {
            Some(row) => row.2 = seconds,
            None => self
                .health_check_seconds
                .push((vip.to_owned(), backend, seconds)),
        }
    }

    /// The `vip` label for a VIP named `vip` (config name or already `describe_vip`).
    fn vip_label(&self, vip: &str) -> String {
        self.vip_names
            .iter()
            .find(|(name, _)| name == vip)
            .map_or_else(|| vip.to_owned(), |(_, key)| describe_vip(key))
    }
}

/// The metrics of the program behind `maps`, with `extra`, as Prometheus text.
pub fn render(maps: &mut (impl Maps + ?Sized), extra: &Extra) -> anyhow::Result<String> {
    let sample = stats::Sample::read(maps)?;
    // The report's skew flags are not exported (`xlb_alert` carries the detector's verdict),
    // so any valid factor does.
    let stats = stats::compare(&sample, None, 1.5);
    let meta = array::<Meta>(maps, map_names::META)?
        .get(&0, 0)
        .context("reading the meta map")?;
    Ok(exposition(&stats, &sample.totals.verdicts, &meta, extra))
}

/// A sample value: counters print as integers, gauges as Go-style floats.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if x > 0.0 { "+Inf" } else { "-Inf" })
            }
            // Rust prints every finite f64 as plain decimal digits, which Prometheus parses.
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// Writes one metric family: HELP, TYPE, then all its samples together (the format allows
/// each family once).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, Value)>,
) {
    debug_assert!(kind != "counter" || name.ends_with("_total"), "{name}");
    *out += &format!(
        "# HELP {name} {}\n# TYPE {name} {kind}\n",
        escape_help(help)
    );
    for (labels, value) in samples {
        *out += name;
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", escape_label(value)))
                .collect();
            *out += &format!("{{{}}}", labels.join(","));
        }
        *out += &format!(" {value}\n");
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// The exposition of a stats report, the verdict counters, the meta entry and `extra`.
fn exposition(
    stats: &Stats,
    verdicts: &[(Verdict, Counter)],
    meta: &Meta,
    extra: &Extra,
) -> String {
    let mut out = String::new();
    let backends = || {
        stats.vips.iter().flat_map(|vip| {
            vip.backends.iter().map(move |backend| {
                let labels = vec![
                    ("vip", vip.vip.clone()),
                    ("backend", backend.address.to_string()),
                ];
                (labels, backend)
            })
        })
    };
    let per_backend =
        |out: &mut String, name, kind, help, pick: fn(&stats::BackendStats) -> Value| {
            family(
                out,
                name,
                kind,
                help,
                backends().map(|(labels, b)| (labels, pick(b))),
            );
        };
    per_backend(
        &mut out,
        "xlb_backend_packets_total",
        "counter",
        "Packets sent to the backend.",
        |b| Value::Int(b.packets),
    );
    per_backend(
        &mut out,
        "xlb_backend_bytes_total",
        "counter",
        "Bytes of the frames sent to the backend, as received (Ethernet header included).",
        |b| Value::Int(b.bytes),
    );
    per_backend(
        &mut out,
        "xlb_backend_new_flows_total",
        "counter",
        "New flows the VIP's Maglev table chose the backend for.",
        |b| Value::Int(b.new_flows),
    );

    let health: BTreeMap<(String, IpAddr), u8> = extra
        .health
        .iter()
        .map(|(vip, backend, up)| ((extra.vip_label(vip), *backend), u8::from(*up != 0)))
        .collect();
    family(
        &mut out,
        "xlb_backend_up",
        "gauge",
        "1 if the backend passes its health check or has none, 0 if it fails it.",
        backends().map(|(labels, b)| {
            let up = health
                .get(&(labels[0].1.clone(), b.address))
                .copied()
                .unwrap_or(1);
            (labels, Value::Int(u64::from(up)))
        }),
    );
    per_backend(
        &mut out,
        "xlb_backend_observed_share",
        "gauge",
        "The backend's part (0 to 1) of its VIP's new flows since the program was loaded.",
        |b| Value::Float(b.observed_share),
    );
    per_backend(
        &mut out,
        "xlb_backend_expected_share",
        "gauge",
        "The backend's part (0 to 1) of its VIP's live Maglev table slots.",
        |b| Value::Float(b.expected_share),
    );

    let per_vip = |out: &mut String, name, help, pick: fn(&stats::VipStats) -> u64| {
        family(
            out,
            name,
            "counter",
            help,
            stats
                .vips
                .iter()
                .map(|vip| (vec![("vip", vip.vip.clone())], Value::Int(pick(vip)))),
        );
    };
    per_vip(
        &mut out,
        "xlb_vip_packets_total",
        "Packets addressed to the VIP.",
        |vip| vip.packets,
    );
    per_vip(
        &mut out,
        "xlb_vip_bytes_total",
        "Bytes of the frames addressed to the VIP, as received.",
        |vip| vip.bytes,
    );
    per_vip(
        &mut out,
        "xlb_vip_new_flows_total",
        "New flows of all the VIP's backends.",
        |vip| vip.new_flows,
    );
    family(
        &mut out,
        "xlb_vip_info",
        "gauge",
        "1 for each VIP with a config name: maps the vip label to the name.",
        extra.vip_names.iter().map(|(name, key)| {
            (
                vec![("vip", describe_vip(key)), ("name", name.clone())],
                Value::Int(1),
            )
        }),
    );

    let reasons = |pick: fn(&stats::Count) -> u64| {
        stats
            .reasons
            .iter()
            .map(move |(reason, c)| (vec![("reason", (*reason).to_owned())], Value::Int(pick(c))))
    };
    family(
        &mut out,
        "xlb_packets_total",
        "counter",
        "Packets seen by the XDP program, by the reason for their verdict (each counts once).",
        reasons(|c| c.packets),
    );
    family(
        &mut out,
        "xlb_bytes_total",
        "counter",
        "Bytes of the frames seen by the XDP program, by the reason for their verdict.",
        reasons(|c| c.bytes),
    );
    family(
        &mut out,
        "xlb_verdict_packets_total",
        "counter",
        "Packets by XDP verdict.",
        verdicts.iter().map(|(verdict, c)| {
            (
                vec![("verdict", verdict.name().to_owned())],
                Value::Int(c.packets),
            )
        }),
    );
    family(
        &mut out,
        "xlb_flow_events_total",
        "counter",
        "Packets by flow-table event: flow_hit (known flow), flow_miss (hashed into the table), \
         flow_stale (known flow whose backend left: re-hashed).",
        stats
            .events
            .iter()
            .map(|(event, c)| (vec![("event", (*event).to_owned())], Value::Int(c.packets))),
    );

    family(
        &mut out,
        "xlb_config_generation",
        "gauge",
        "Changes made to the live state since the program was loaded (0: nothing applied).",
        [(vec![], Value::Int(meta.generation))],
    );
    family(
        &mut out,
        "xlb_config_applied_timestamp_seconds",
        "gauge",
        "When the live generation was applied, seconds since the Unix epoch (0: never).",
        [(vec![], Value::Int(meta.applied_at))],
    );
    family(
        &mut out,
        "xlb_apply_duration_seconds",
        "gauge",
        "How long the last apply took.",
        [(vec![], Value::Float(extra.last_apply_seconds))],
    );
    family(
        &mut out,
        "xlb_health_check_duration_seconds",
        "gauge",
        "How long the last health check of the backend took.",
        extra
            .health_check_seconds
            .iter()
            .map(|(vip, backend, seconds)| {
                (
                    vec![
                        ("vip", extra.vip_label(vip)),
                        ("backend", backend.to_string()),
                    ],
                    Value::Float(*seconds),
                )
            }),
    );

    // Every live VIP shows every kind, so a dashboard sees 0 rather than no data.
    let mut alerts: BTreeMap<(String, String), u8> = stats
        .vips
        .iter()
        .flat_map(|vip| AlertKind::ALL.map(|kind| ((vip.vip.clone(), kind.name().to_owned()), 0)))
        .collect();
    for alert in &extra.alerts {
        let slot = alerts
            .entry((extra.vip_label(&alert.vip), alert.kind.name().to_owned()))
            .or_default();
        *slot = (*slot).max(u8::from(alert.firing));
    }
    family(
        &mut out,
        "xlb_alert",
        "gauge",
        "1 while an alert of this kind fires for the VIP (skew, dominant, few_healthy), else 0.",
        alerts.into_iter().map(|((vip, kind), firing)| {
            (
                vec![("kind", kind), ("vip", vip)],
                Value::Int(u64::from(firing)),
            )
        }),
    );
    out
}

/// Renders the metrics page; called once per scrape.
pub type RenderFn = Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

/// How long one client may take to send its request and read the answer: a stalled client
/// holds the (single) server no longer than this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head accepted; a scrape's is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Answers `GET /metrics` (and `HEAD`) with `render`'s text and anything else with 404 (405 for
/// another method on /metrics), one connection at a time, each closed after its answer. Runs
/// until its task is aborted.
pub async fn serve(listener: TcpListener, render: RenderFn) -> anyhow::Result<()> {
    serve_with_timeout(listener, render, CLIENT_TIMEOUT).await
}

async fn serve_with_timeout(
    listener: TcpListener,
    render: RenderFn,
    timeout: Duration,
) -> anyhow::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Failed accepts are transient (a client gone before the handshake ended, no
                // file descriptors left); the scraper retries anyway.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // A client's errors (it went away, it stalled) are its own: serve the next one.
        let _ = tokio::time::timeout(timeout, answer(stream, &render)).await;
    }
}

/// Reads one request from `stream` and writes its response.
async fn answer(mut stream: TcpStream, render: &RenderFn) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    let response = loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(()); // Closed before the request was complete.
        }
        head.extend_from_slice(&buffer[..read]);
        if let Some(end) = head_end(&head) {
            break respond(&String::from_utf8_lossy(&head[..end]), render).await;
        }
        if head.len() > MAX_REQUEST_HEAD {
            break plain(
                "431 Request Header Fields Too Large",
                &format!("request head over {MAX_REQUEST_HEAD} bytes\n"),
            );
        }
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Where the request head ends (at the blank line), if it has.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

/// The response to the request with head `head`.
async fn respond(head: &str, render: &RenderFn) -> Vec<u8> {
    let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return plain(
            "400 Bad Request",
            "expected a request line like `GET /metrics HTTP/1.1`\n",
        );
    };
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return plain(
            "404 Not Found",
            &format!("no page at {path}: the metrics are at /metrics\n"),
        );
    }
    if method != "GET" && method != "HEAD" {
        let body = format!("{method} is not supported: use GET /metrics\n");
        let mut response = header(
            "405 Method Not Allowed",
            &[("Content-Type", TEXT), ("Allow", "GET, HEAD")],
            body.len(),
        );
        response.extend_from_slice(body.as_bytes());
        return response;
    }
    // Reading the maps is blocking system calls: keep them off the async workers.
    let render = Arc::clone(render);
    let rendered = tokio::task::spawn_blocking(move || render()).await;
    match rendered {
        Ok(Ok(text)) => {
            let mut response = header("200 OK", &[("Content-Type", CONTENT_TYPE)], text.len());
            if method == "GET" {
                response.extend_from_slice(text.as_bytes());
            }
            response
        }
        Ok(Err(err)) => plain(
            "500 Internal Server Error",
            &format!("reading the metrics failed: {err:#}\n"),
        ),
        Err(err) => plain(
            "500 Internal Server Error",
            &format!("reading the metrics failed: {err}\n"),
        ),
    }
}

/// Content type of the plain-text error pages.
const TEXT: &str = "text/plain; charset=utf-8";

/// A response head: status line, `fields`, length, and `Connection: close` (one request per
/// connection keeps the server simple).
fn header(status: &str, fields: &[(&str, &str)], length: usize) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in fields {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {length}\r\nConnection: close\r\n\r\n");
    head.into_bytes()
}

/// A response with a plain-text `body`.
fn plain(status: &str, body: &str) -> Vec<u8> {
    let mut response = header(status, &[("Content-Type", TEXT)], body.len());
    response.extend_from_slice(body.as_bytes());
    response
}

#[cfg(test)]
mod tests {
    use lb_common::service::FAMILY_IPV4;

    use super::*;
    use crate::{
        live::BackendState,
        stats::{BackendStats, Count, VipStats},
    };

    fn web_key() -> VipKey {
        VipKey {
            addr: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: 80u16.to_be(),
            proto: 6,
            family: FAMILY_IPV4,
        }
    }

    fn backend(last: u8, new_flows: u64, observed: f64) -> BackendStats {
        BackendStats {
            id: u32::from(last),
            address: IpAddr::from([198, 18, 0, last]),
            state: BackendState::Active,
            weight: 1,
            packets: new_flows * 2,
            bytes: new_flows * 120,
            new_flows,
            observed_share: observed,
            expected_share: 0.5,
            skew: None,
            rates: None,
        }
    }

    fn stats() -> Stats {
        Stats {
            interval_seconds: None,
            skew_factor: 1.5,
            skew_min_new_flows: 100,
            skewed_backends: 0,
            vips: vec![VipStats {
                vip: describe_vip(&web_key()),
                name: None,
                id: 0,
                forwarding: "dsr",
                table_size: 13,
                packets: 200,
                bytes: 12_000,
                new_flows: 100,
                rates: None,
                backends: vec![backend(10, 75, 0.75), backend(11, 25, 0.25)],
            }],
            reasons: [(
                "forwarded_dsr",
                Count {
                    packets: 200,
                    bytes: 12_000,
                },
            )]
            .into(),
            events: [(
                "flow_miss",
                Count {
                    packets: 100,
                    bytes: 6_000,
                },
            )]
            .into(),
        }
    }

    /// Test that the exposition has one HELP and TYPE per family before its samples, the
    /// backend and VIP counters, health by config name or label (up without a check), and
    /// every alert kind per VIP (0 unless a row fires it).
    #[test]
    fn exposition_has_families_health_and_alerts() {
        let meta = Meta {
            generation: 3,
            applied_at: 1_700_000_000,
            ..Meta::default()
        };
        let mut extra = Extra {
            vip_names: vec![("web".to_owned(), web_key())],
            alerts: vec![Alert {
                kind: AlertKind::Skew,
                vip: "web".to_owned(),
                backend: Some(IpAddr::from([198, 18, 0, 10])),
                message: "backend 198.18.0.10 took 75%".to_owned(),
                firing: true,
            }],
            last_apply_seconds: 0.25,
            ..Extra::default()
        };
        let (first, second) = (
            IpAddr::from([198, 18, 0, 10]),
            IpAddr::from([198, 18, 0, 11]),
        );
        extra.set_health("web", second, true);
        extra.set_health("web", second, false);
        extra.record_check("web", first, Duration::from_millis(500));
        extra.record_check("web", first, Duration::from_millis(3));
        assert_eq!(extra.health, [("web".to_owned(), second, 0)]);
        assert_eq!(
            extra.health_check_seconds,
            [("web".to_owned(), first, 0.003)]
        );
        let verdicts = [(
            Verdict::Tx,
            Counter {
                packets: 200,
                bytes: 12_000,
            },
        )];
        let text = exposition(&stats(), &verdicts, &meta, &extra);
        let lines: Vec<&str> = text.lines().collect();
        for wanted in [
            r#"xlb_backend_new_flows_total{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 75"#,
            r#"xlb_backend_packets_total{vip="198.18.1.10:80/tcp",backend="198.18.0.11"} 50"#,
            r#"xlb_backend_up{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 1"#,
            r#"xlb_backend_up{vip="198.18.1.10:80/tcp",backend="198.18.0.11"} 0"#,
            r#"xlb_backend_observed_share{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 0.75"#,
            r#"xlb_backend_expected_share{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 0.5"#,
            r#"xlb_vip_bytes_total{vip="198.18.1.10:80/tcp"} 12000"#,
            r#"xlb_vip_info{vip="198.18.1.10:80/tcp",name="web"} 1"#,
            r#"xlb_packets_total{reason="forwarded_dsr"} 200"#,
            r#"xlb_verdict_packets_total{verdict="tx"} 200"#,
            r#"xlb_flow_events_total{event="flow_miss"} 100"#,
            "xlb_config_generation 3",
            "xlb_config_applied_timestamp_seconds 1700000000",
            "xlb_apply_duration_seconds 0.25",
            r#"xlb_health_check_duration_seconds{vip="198.18.1.10:80/tcp",backend="198.18.0.10"} 0.003"#,
            r#"xlb_alert{kind="skew",vip="198.18.1.10:80/tcp"} 1"#,
            r#"xlb_alert{kind="dominant",vip="198.18.1.10:80/tcp"} 0"#,
            r#"xlb_alert{kind="few_healthy",vip="198.18.1.10:80/tcp"} 0"#,
        ] {
            assert!(lines.contains(&wanted), "missing {wanted}:\n{text}");
        }
        let mut seen = Vec::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&name), "family {name} twice:\n{text}");
                seen.push(name);
            }
        }
        assert_eq!(seen.len(), text.matches("# HELP ").count());
    }

    /// Test that label values escape backslash, quote and line feed, and that special floats
    /// use the spelling Prometheus parses.
    #[test]
    fn labels_and_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
        assert_eq!(escape_help("x\\y\nz"), r"x\\y\nz");
        let text: Vec<String> = [f64::NAN, f64::INFINITY, -f64::INFINITY, 1.0, 0.125]
            .map(|x| Value::Float(x).to_string())
            .into();
        assert_eq!(text, ["NaN", "+Inf", "-Inf", "1", "0.125"]);
        let mut out = String::new();
        family(
            &mut out,
            "xlb_alert",
            "gauge",
            "h",
            [(vec![("vip", "we\"ird".to_owned())], Value::Int(1))],
        );
        assert!(out.ends_with("xlb_alert{vip=\"we\\\"ird\"} 1\n"), "{out}");
    }

    /// Sends `request` to `address` and returns the whole response.
    async fn fetch(address: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("receive");
        response
    }

    async fn server(
        timeout: Duration,
        render: RenderFn,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        (
            address,
            tokio::spawn(serve_with_timeout(listener, render, timeout)),
        )
    }

    /// Test that serve answers GET /metrics over real TCP with 200, the exposition content
    /// type and the text; HEAD with the head only; other paths with 404, other methods with
    /// 405, and a failing render with 500 and its error.
    #[tokio::test]
    async fn serve_answers_metrics_and_refuses_the_rest() {
        let render: RenderFn = Arc::new(|| Ok("xlb_config_generation 1\n".to_owned()));
        let (address, task) = server(CLIENT_TIMEOUT, render).await;
        let ok = fetch(address, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
            "{ok}"
        );
        assert!(ok.contains("\r\nContent-Length: 24\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nxlb_config_generation 1\n"), "{ok}");
        let head = fetch(address, "HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let missing = fetch(address, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        let post = fetch(address, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        task.abort();

        let render: RenderFn = Arc::new(|| anyhow::bail!("map XLB_META is gone"));
        let (address, task) = server(CLIENT_TIMEOUT, render).await;
        let failed = fetch(address, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            failed.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{failed}"
        );
        assert!(failed.contains("map XLB_META is gone"), "{failed}");
        task.abort();
    }

    /// Test that a client that connects and sends nothing is cut off at the timeout, and the
    /// next client is answered.
    #[tokio::test]
    async fn serve_cuts_off_a_silent_client() {
        let render: RenderFn = Arc::new(|| Ok("up 1\n".to_owned()));
        let (address, task) = server(Duration::from_millis(200), render).await;
        let mut silent = TcpStream::connect(address).await.expect("connect");
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            fetch(address, "GET /metrics HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("answered after the silent client's timeout");
        assert!(next.starts_with("HTTP/1.1 200 OK\r\n"), "{next}");
        let mut rest = Vec::new();
        assert_eq!(silent.read_to_end(&mut rest).await.expect("closed"), 0);
        task.abort();
    }
}
