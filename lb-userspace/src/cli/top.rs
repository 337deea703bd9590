//! `xlb top`: a live view of the running xlb in the terminal (ratatui), redrawn every
//! interval: each VIP's and backend's rates, observed against expected shares of new flows over
//! the last interval, each backend's state (health checks take a backend to `unhealthy`), and
//! the alerts the maps show (a dominant server, skewed backends, backends out), with the
//! skewed backend highlighted. Keys: q, Esc or Ctrl-C quit. Works over ssh (it needs only a
//! terminal); `--once` prints one frame as plain text instead (or, with `--output json`, the
//! interval's `xlb stats` report), for pipes and scripts.

use std::{io::IsTerminal as _, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use ratatui::{
    DefaultTerminal,
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Paragraph, Row, Table},
};

use lb_userspace::{
    diff::effect,
    exit,
    live::BackendState,
    maps::Maps,
    pins,
    stats::{self, Sample, Skew, Stats},
};

use super::{
    args::{OutputFormat, TopArgs},
    emit,
};

pub fn run(args: &TopArgs) -> anyhow::Result<u8> {
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| *d >= Duration::from_millis(100))
        .with_context(|| {
            format!(
                "--interval {} is not a number of seconds from 0.1 up: pass e.g. --interval 1",
                args.interval
            )
        })?;
    let pin_path = args.live.live().pin_path(None);
    let json = args.live.output == OutputFormat::Json;
    if json && !args.once {
        bail!("--output json needs --once: a live view is for a terminal");
    }
    if !args.once && !std::io::stdout().is_terminal() {
        bail!(
            "xlb top draws on a terminal and stdout is not one: use `xlb top --once` for one \
             plain frame, or `xlb stats --interval 1 --output json` for scripts"
        );
    }
    let mut maps = pins::open(&pin_path)?;
    let mut view = View::new(&pin_path, args.skew_factor, &mut maps)?;
    if args.once {
        std::thread::sleep(interval);
        view.sample(&mut maps)?;
        // JSON is `xlb stats --interval`'s report of the same interval.
        emit(args.live.output, &view.stats, |_| view.frame().plain())?;
        return Ok(exit::OK);
    }
    let mut terminal = ratatui::init();
    let shown = show(&mut terminal, &mut view, &mut maps, interval);
    // Raw mode off, the main screen and the cursor back, whatever happened.
    ratatui::restore();
    shown?;
    Ok(exit::OK)
}

/// Draws a frame per interval until a quit key.
fn show(
    terminal: &mut DefaultTerminal,
    view: &mut View,
    maps: &mut (impl Maps + ?Sized),
    interval: Duration,
) -> anyhow::Result<()> {
    loop {
        let frame = view.frame();
        terminal
            .draw(|f| frame.draw(f))
            .context("drawing on the terminal")?;
        let next = std::time::Instant::now() + interval;
        // Keys are read while waiting for the next sample: q quits at once.
        while let Some(left) = next.checked_duration_since(std::time::Instant::now()) {
            if !event::poll(left).context("reading the terminal")? {
                break;
            }
            match event::read().context("reading the terminal")? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && key.code == KeyCode::Char('c');
                    if ctrl_c || matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                Event::Resize(..) => {
                    terminal
                        .draw(|f| frame.draw(f))
                        .context("drawing on the terminal")?;
                }
                _ => {}
            }
        }
        view.sample(maps)?;
    }
}

/// The samples behind the view.
struct View {
    pin_path: String,
    names: lb_userspace::names::Names,
    skew_factor: f64,
    last: Sample,
    taken: std::time::Instant,
    stats: Stats,
}

impl View {
    fn new(
        pin_path: &Path,
        skew_factor: f64,
        maps: &mut (impl Maps + ?Sized),
    ) -> anyhow::Result<View> {
        let last = Sample::read(maps)?;
        // Validates the factor before the terminal is taken.
        let stats = stats::collect(maps, None, skew_factor)?;
        Ok(View {
            pin_path: pin_path.display().to_string(),
            names: lb_userspace::names::read(pin_path),
            skew_factor,
            last,
            taken: std::time::Instant::now(),
            stats,
        })
    }

    /// Reads the counters again; rates and shares are over the time since the last read.
    fn sample(&mut self, maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<()> {
        let now = Sample::read(maps)?;
        let seconds = self.taken.elapsed().as_secs_f64();
        self.stats = stats::compare(&now, Some((&self.last, seconds)), self.skew_factor);
        self.last = now;
        self.taken = std::time::Instant::now();
        Ok(())
    }

    fn frame(&self) -> Frame {
        frame(&self.stats, &self.pin_path, &self.names)
    }
}

/// How a row stands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Emphasis {
    Vip,
    Backend,
    /// Observed share above its expected one (or new flows it has no slot for), or the
    /// dominant server.
    Skewed,
    /// Observed share below its expected one.
    Starved,
    /// Not taking new flows (unhealthy, drained, disabled).
    Out,
}

const COLUMNS: [&str; 8] = [
    "VIP / backend",
    "state",
    "weight",
    "packets/s",
    "new flows/s",
    "observed",
    "expected",
    "flag",
];

/// One screen: a title, the table rows and the alerts.
struct Frame {
    title: String,
    rows: Vec<([String; 8], Emphasis)>,
    alerts: Vec<String>,
}

fn frame(stats: &Stats, pin_path: &str, names: &lb_userspace::names::Names) -> Frame {
    let rate = |rates: Option<stats::Rates>, pick: fn(&stats::Rates) -> f64| {
        rates.map_or_else(|| "-".to_owned(), |r| format!("{:.1}", pick(&r)))
    };
    let percent = |share: f64| effect::percent(share, 1);
    let title = match stats.interval_seconds {
        Some(seconds) => format!("xlb top  {pin_path}  rates over {seconds:.1} s  (q quits)"),
        None => format!("xlb top  {pin_path}  first sample: rates follow  (q quits)"),
    };
    let mut rows = Vec::new();
    let mut alerts = Vec::new();
    for vip in &stats.vips {
        let label = lb_userspace::names::label(&vip.vip, names.name_of(&vip.vip).as_deref());
        rows.push((
            [
                label.clone(),
                vip.forwarding.to_owned(),
                String::new(),
                rate(vip.rates, |r| r.packets_per_second),
                rate(vip.rates, |r| r.new_flows_per_second),
                format!("{} flows", vip.window_new_flows),
                String::new(),
                if vip.dominant.is_some() {
                    "DOMINANT".to_owned()
                } else {
                    String::new()
                },
            ],
            Emphasis::Vip,
        ));
        if let Some(dominant) = &vip.dominant {
            alerts.push(format!(
                "dominant: {label}: {} takes {} of new flows (alerts.max_share {})",
                dominant.server,
                percent(dominant.share),
                percent(dominant.max_share)
            ));
        }
        for backend in &vip.backends {
            let dominant = vip
                .dominant
                .as_ref()
                .is_some_and(|d| d.server == backend.address);
            let emphasis =
                if dominant || matches!(backend.skew, Some(Skew::Over | Skew::Unexpected)) {
                    Emphasis::Skewed
                } else if backend.skew == Some(Skew::Under) {
                    Emphasis::Starved
                } else if backend.state != BackendState::Active {
                    Emphasis::Out
                } else {
                    Emphasis::Backend
                };
            if let Some(skew) = backend.skew {
                alerts.push(format!(
                    "skew: {label}: {} gets {} of new flows, expected {} ({})",
                    backend.address,
                    percent(backend.observed_share),
                    percent(backend.expected_share),
                    skew.name()
                ));
            }
            if backend.state != BackendState::Active {
                alerts.push(format!(
                    "out: {label}: {} is {}",
                    backend.address,
                    backend.state.name()
                ));
            }
            rows.push((
                [
                    format!("  {}", backend.address),
                    backend.state.name().to_owned(),
                    backend.weight.to_string(),
                    rate(backend.rates, |r| r.packets_per_second),
                    rate(backend.rates, |r| r.new_flows_per_second),
                    percent(backend.observed_share),
                    percent(backend.expected_share),
                    backend
                        .skew
                        .map_or(String::new(), |skew: Skew| format!("SKEW {}", skew.name())),
                ],
                emphasis,
            ));
        }
    }
    if stats.vips.is_empty() {
        alerts.push("no VIPs: apply a config (`xlb apply FILE`)".to_owned());
    }
    Frame {
        title,
        rows,
        alerts,
    }
}

impl Frame {
    fn style(emphasis: Emphasis) -> Style {
        match emphasis {
            Emphasis::Vip => Style::new().add_modifier(Modifier::BOLD),
            Emphasis::Backend => Style::new(),
            Emphasis::Skewed => Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
            Emphasis::Starved => Style::new().fg(Color::Cyan),
            Emphasis::Out => Style::new().fg(Color::Yellow),
        }
    }

    fn draw(&self, f: &mut ratatui::Frame) {
        let alert_lines = u16::try_from(self.alerts.len().clamp(1, 8)).unwrap_or(8) + 2;
        let [title, table, alerts] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(alert_lines),
        ])
        .areas(f.area());
        f.render_widget(
            Paragraph::new(self.title.as_str())
                .style(Style::new().add_modifier(Modifier::REVERSED)),
            title,
        );
        let widths = [
            Constraint::Min(24),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(15),
        ];
        let rows = self.rows.iter().map(|(cells, emphasis)| {
            Row::new(cells.iter().map(|c| Cell::from(c.as_str()))).style(Self::style(*emphasis))
        });
        let header = Row::new(COLUMNS).style(Style::new().add_modifier(Modifier::UNDERLINED));
        f.render_widget(Table::new(rows, widths).header(header), table);
        let lines: Vec<Line> = if self.alerts.is_empty() {
            vec![Line::from("none")]
        } else {
            self.alerts.iter().map(|a| Line::from(a.as_str())).collect()
        };
        f.render_widget(
            Paragraph::new(lines).block(Block::bordered().title("alerts")),
            alerts,
        );
    }

    /// The frame as plain text: aligned columns; `>>` before a skewed or dominant backend, `<`
    /// before one below its share, `-` before one out of the table.
    fn plain(&self) -> String {
        let mut widths = COLUMNS.map(str::len);
        for (cells, _) in &self.rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 8], mark: &str| {
            let text: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            format!("{mark}{}\n", text.join("  ").trim_end())
        };
        let mut out = format!("{}\n\n", self.title);
        out += &line(&COLUMNS.map(str::to_owned), "   ");
        for (cells, emphasis) in &self.rows {
            let mark = match emphasis {
                Emphasis::Skewed => ">> ",
                Emphasis::Starved => " < ",
                Emphasis::Out => " - ",
                _ => "   ",
            };
            out += &line(cells, mark);
        }
        out += "\nalerts:\n";
        if self.alerts.is_empty() {
            out += "  none\n";
        }
        for alert in &self.alerts {
            out += &format!("  {alert}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use lb_userspace::stats::{BackendStats, Dominant, Rates, VipStats, Window};

    fn backend(last: u8, observed: f64, skew: Option<Skew>, state: BackendState) -> BackendStats {
        BackendStats {
            id: u32::from(last),
            address: IpAddr::from([198, 18, 0, last]),
            mac: [2, 0, 0, 0, 0, last],
            state,
            weight: 1,
            packets: 10,
            bytes: 600,
            new_flows: 10,
            window_new_flows: 10,
            observed_share: observed,
            expected_share: 1.0 / 3.0,
            skew,
            rates: Some(Rates {
                packets_per_second: 20.0,
                bytes_per_second: 1200.0,
                new_flows_per_second: 10.0,
            }),
        }
    }

    /// Test that a frame shows the VIP with its rates, every backend with its state and
    /// shares, highlights the skewed and dominant backend, marks one below its share and one
    /// out of the table, and lists an alert for each.
    #[test]
    fn frame_highlights_the_skewed_backend_and_lists_alerts() {
        let stats = Stats {
            interval_seconds: Some(1.0),
            skew_factor: 1.5,
            skew_min_new_flows: 100,
            skewed_backends: 1,
            vips: vec![VipStats {
                vip: "198.18.1.10:80/tcp".to_owned(),
                name: None,
                id: 0,
                forwarding: "dsr",
                table_size: 13,
                packets: 300,
                bytes: 18_000,
                new_flows: 300,
                window: Window::Interval { seconds: 1.0 },
                window_new_flows: 300,
                dominant: Some(Dominant {
                    server: IpAddr::from([198, 18, 0, 10]),
                    share: 0.8,
                    max_share: 0.6,
                }),
                rates: Some(Rates {
                    packets_per_second: 300.0,
                    bytes_per_second: 18_000.0,
                    new_flows_per_second: 150.0,
                }),
                backends: vec![
                    backend(10, 0.8, Some(Skew::Over), BackendState::Active),
                    backend(11, 0.2, Some(Skew::Under), BackendState::Active),
                    backend(12, 0.0, None, BackendState::Unhealthy),
                ],
            }],
            reasons: Default::default(),
            events: Default::default(),
        };
        let names = lb_userspace::names::Names::default();
        let text = frame(&stats, "/sys/fs/bpf/x", &names).plain();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("rates over 1.0 s"), "{text}");
        let row = |needle: &str| {
            *lines
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no row with {needle}:\n{text}"))
        };
        let vip = row("198.18.1.10:80/tcp  dsr");
        assert!(
            vip.contains("300.0") && vip.contains("150.0") && vip.ends_with("DOMINANT"),
            "{vip}"
        );
        let skewed = row("198.18.0.10 ");
        assert!(skewed.starts_with(">> "), "{skewed}");
        assert!(
            skewed.contains("80.0%") && skewed.contains("33.3%"),
            "{skewed}"
        );
        assert!(skewed.ends_with("SKEW over"), "{skewed}");
        assert!(row("198.18.0.11 ").starts_with(" < "), "{text}");
        assert!(row("198.18.0.12 ").starts_with(" - "), "{text}");
        assert!(row("198.18.0.12 ").contains("unhealthy"), "{text}");
        for alert in [
            "dominant: 198.18.1.10:80/tcp: 198.18.0.10 takes 80.0% of new flows",
            "skew: 198.18.1.10:80/tcp: 198.18.0.10 gets 80.0% of new flows, expected 33.3% (over)",
            "out: 198.18.1.10:80/tcp: 198.18.0.12 is unhealthy",
        ] {
            assert!(text.contains(alert), "no alert {alert:?}:\n{text}");
        }
    }
}
