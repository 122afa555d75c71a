//! `fbpixel top`: a live view of a running pipeline, scraped from its `[api]`'s `/metrics`, in
//! the spirit of `vector top`. A thread scrapes every `--interval`; the main thread draws
//! ([`rows`] computes what) and reads the keys: `q`, Esc or Ctrl-C quits. When the API goes away
//! the last figures stay on screen under "disconnected, retrying" until it answers again.

mod prometheus;
mod rows;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use self::rows::{Model, Scrape};
use super::api_client::{ApiArgs, ApiClient};

#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Seconds between two scrapes of /metrics (rates are per second between them).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = interval)]
    pub interval: f64,
}

fn interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.1..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0.1 to 3600"
        )),
    }
}

/// What the scraping thread reports.
struct Update {
    at: Instant,
    result: Result<Scrape, String>,
}

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let base = args.api.base_url()?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "fbpixel top draws on a terminal, and stdout is not one; for figures a script can read, use `curl {base}/metrics`"
        );
    }
    let period = Duration::from_secs_f64(args.interval);
    let (tx, rx) = mpsc::channel();
    let client_base = base.clone();
    std::thread::Builder::new()
        .name("top-scrape".into())
        .spawn(move || scrape_loop(client_base, period, tx))
        .context("cannot start the scraping thread")?;
    let mut terminal = ratatui::init();
    let shown = show(&mut terminal, &base, period, &rx);
    ratatui::restore();
    shown?;
    Ok(ExitCode::SUCCESS)
}

/// Scrape until the screen has gone (the receiver is dropped).
fn scrape_loop(base: String, period: Duration, tx: mpsc::Sender<Update>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = tx.send(Update {
                at: Instant::now(),
                result: Err(format!("cannot start the async runtime: {e}")),
            });
            return;
        }
    };
    let client = ApiClient::new(base);
    let epoch = Instant::now();
    runtime.block_on(async {
        loop {
            let text = client.get_text("/metrics").await;
            let at = Instant::now();
            let result = text.map_err(|e| format!("{e:#}")).and_then(|text| {
                let samples = prometheus::parse(&text)?;
                Ok(Scrape::new(
                    &samples,
                    at.duration_since(epoch).as_secs_f64(),
                ))
            });
            if tx.send(Update { at, result }).is_err() {
                return;
            }
            tokio::time::sleep(period).await;
        }
    });
}

/// What the screen shows between updates.
struct Screen {
    previous: Option<Scrape>,
    model: Model,
    /// `Some(error)` while the API does not answer.
    disconnected: Option<String>,
    updated: Option<Instant>,
}

fn show(
    terminal: &mut DefaultTerminal,
    base: &str,
    period: Duration,
    rx: &mpsc::Receiver<Update>,
) -> anyhow::Result<()> {
    let mut screen = Screen {
        previous: None,
        model: Model::default(),
        disconnected: None,
        updated: None,
    };
    loop {
        while let Ok(update) = rx.try_recv() {
            screen.updated = Some(update.at);
            match update.result {
                Ok(scrape) => {
                    // After an outage the counters may have restarted: rates start afresh.
                    let previous = screen
                        .previous
                        .take()
                        .filter(|_| screen.disconnected.is_none());
                    screen.model = rows::model(previous.as_ref(), &scrape);
                    screen.previous = Some(scrape);
                    screen.disconnected = None;
                }
                Err(e) => screen.disconnected = Some(e),
            }
        }
        terminal
            .draw(|frame| draw(frame, &screen, base, period))
            .context("cannot draw on the terminal")?;
        if event::poll(Duration::from_millis(100)).context("cannot read the keyboard")?
            && let Event::Key(key) = event::read().context("cannot read the keyboard")?
        {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if key.kind == KeyEventKind::Press
                && (ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc))
            {
                return Ok(());
            }
        }
    }
}

fn draw(frame: &mut Frame, screen: &Screen, base: &str, period: Duration) {
    let model = &screen.model;
    let capi_lines: Vec<Line> = model.capi.iter().flat_map(capi_section).collect();
    let [head, table, capi] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(model.rows.len() as u16 + 3),
        Constraint::Min(0),
    ])
    .areas(frame.area());

    let status = match (&screen.disconnected, screen.updated) {
        (Some(e), _) => Line::from(format!("disconnected, retrying: {e}"))
            .red()
            .bold(),
        (None, None) => Line::from("connecting…").yellow(),
        (None, Some(_)) => Line::from("connected").green(),
    };
    let title = format!(
        "fbpixel top · {base} · every {:.1} s · q quits · ",
        period.as_secs_f64()
    );
    let mut header = Line::from(title);
    header.spans.extend(status.spans);
    frame.render_widget(Paragraph::new(header), head);

    let rows = model.rows.iter().map(|r| {
        Row::new([
            r.id.clone(),
            r.kind.clone(),
            r.type_name.clone(),
            per_second(r.in_rate),
            per_second(r.out_rate),
            count(r.errors),
            count(r.discarded),
            r.buffer.map_or_else(|| "-".to_owned(), count),
        ])
    });
    let widths = [
        Constraint::Fill(3),
        Constraint::Length(9),
        Constraint::Fill(3),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(8),
    ];
    let header = Row::new([
        "ID",
        "KIND",
        "TYPE",
        "IN/S",
        "OUT/S",
        "ERRORS",
        "DISCARDED",
        "BUFFER",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" components ")),
        table,
    );
    if !capi_lines.is_empty() {
        frame.render_widget(
            Paragraph::new(capi_lines).block(Block::bordered().title(" Conversions API sinks ")),
            capi,
        );
    }
}

/// The lines of one Conversions API sink: its coverage, retries, and each pixel.
fn capi_section(sink: &rows::CapiSink) -> Vec<Line<'static>> {
    let mut lines =
        vec![Line::from(format!("{}: {} events sent", sink.id, count(sink.sent))).bold()];
    let coverage = if sink.coverage.is_empty() {
        "none yet".to_owned()
    } else {
        sink.coverage
            .iter()
            .map(|(key, share)| format!("{key} {:.0}%", share * 100.0))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    lines.push(Line::from(format!("  user_data coverage: {coverage}")));
    let retries = if sink.retries.is_empty() {
        "none".to_owned()
    } else {
        sink.retries
            .iter()
            .map(|(reason, n)| format!("{reason} {}", count(*n)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    lines.push(Line::from(format!("  retries: {retries}")));
    for (pixel, p) in &sink.pixels {
        let health = match p.healthy {
            Some(true) => "healthy",
            Some(false) => "UNHEALTHY",
            None => "health unknown",
        };
        lines.push(Line::from(format!(
            "  pixel {pixel}: {health} · requests accepted {} ({}/s) · transient {} · credentials {} · rejected {} · retries {}",
            count(p.accepted),
            per_second(p.accepted_rate),
            count(p.transient),
            count(p.credentials),
            count(p.rejected),
            count(p.retries),
        )));
    }
    lines
}

fn per_second(rate: Option<f64>) -> String {
    match rate {
        None => "-".to_owned(),
        Some(r) if r >= 100.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

fn count(n: f64) -> String {
    format!("{n:.0}")
}
