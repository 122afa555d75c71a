//! `fbpixel explain --config FILE ID`: what became of one message — found by its event_id,
//! Segment messageId or order_id in the sink's delivery ledger — readable, or as JSON.

use std::process::ExitCode;

use serde_json::json;

use super::ledger::{LedgerArgs, time};
use crate::sinks::facebook_pixel::capi::UserDataKeys;
use crate::sinks::facebook_pixel::ledger::{Found, Outcome};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Print JSON (an array, one object per time the id was handled) instead of text.
    #[arg(long)]
    pub json: bool,
    /// An event_id, a Segment messageId or an order_id.
    pub id: String,
}

/// The customer-information keys a web or server event can carry; those missing are listed.
/// The app and messaging ids are listed only when present.
const MATCH_KEYS: usize = 15;

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let ledgers = args.ledger.open()?;
    let found = ledgers.find(&args.id)?;
    if args.json {
        let items: Vec<serde_json::Value> = found.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else if found.is_empty() {
        let (records, oldest) = ledgers.summary()?;
        println!(
            "{}: never seen by {} (its ledger holds {records} record(s){}): it did not reach the sink, or was handled before the ledger's retention",
            args.id,
            ledgers.name,
            oldest.map_or_else(String::new, |t| format!(" since {}", time(t))),
        );
    } else {
        for (i, f) in found.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", text(&args.id, f));
        }
    }
    Ok(if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn outcome_text(f: &Found) -> String {
    let r = &f.record;
    let at = time(r.at_ms);
    match r.outcome {
        Outcome::Delivered => format!(
            "delivered to pixel {} at {at}",
            r.pixel.as_deref().unwrap_or("?")
        ),
        Outcome::Skipped => format!("skipped at {at}: not sent on purpose"),
        Outcome::DeadLettered => format!("dead-lettered at {at} ({} stage)", stage(f)),
        Outcome::Rejected => format!(
            "rejected at {at} ({} stage) and dropped: no dead letter is configured",
            stage(f)
        ),
        Outcome::Errored => format!(
            "not delivered at {at} ({} stage): the dead letter could not be written, so its sender was told to send it again",
            stage(f)
        ),
    }
}

fn stage(f: &Found) -> &'static str {
    match f.record.stage {
        Some(crate::sinks::facebook_pixel::ledger::Stage::Mapping) => "mapping",
        _ => "delivery",
    }
}

fn text(id: &str, f: &Found) -> String {
    let r = &f.record;
    let e = &f.event;
    let mut out = format!("{id}: {}\n", outcome_text(f));
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<16}{value}\n"));
    let mut names = vec![format!("event_id {}", e.id)];
    if let Some(order) = &e.order_id {
        names.push(format!("order_id {order}"));
    }
    line(
        "event:",
        format!(
            "{} ({})",
            e.event_name.as_deref().unwrap_or("(no name)"),
            names.join(", ")
        ),
    );
    if let Some(reason) = e.reason.as_deref().or(r.reason.as_deref()) {
        line("why:", reason.to_owned());
    }
    if let Some(error) = &r.error {
        let code = match (error.code, error.subcode) {
            (Some(c), Some(s)) => format!("code {c}, subcode {s}: "),
            (Some(c), None) => format!("code {c}: "),
            _ => String::new(),
        };
        let user = error
            .user_message
            .as_deref()
            .map_or_else(String::new, |m| format!(" ({m})"));
        line("Meta said:", format!("{code}{}{user}", error.message));
    }
    if r.attempts > 0 {
        let mut request = format!(
            "{} attempt(s), pixel {}",
            r.attempts,
            r.pixel.as_deref().unwrap_or("?")
        );
        if let Some(trace) = &r.fbtrace_id {
            request.push_str(&format!(", fbtrace_id {trace}"));
        }
        if let Some(n) = r.events_received {
            request.push_str(&format!(
                ", Meta received {n} of the request's {} event(s)",
                r.events.len().max(1)
            ));
        }
        line("request:", request);
    }
    if f.sent.is_some() {
        let keys = UserDataKeys::from_bits(e.keys);
        let present: Vec<&str> = keys.iter().collect();
        let missing: Vec<&str> = UserDataKeys::NAMES[..MATCH_KEYS]
            .iter()
            .enumerate()
            .filter(|(i, _)| !keys.has(*i))
            .map(|(_, n)| *n)
            .collect();
        line("keys present:", list(&present));
        line("keys missing:", list(&missing));
        let enriched: Vec<&str> = UserDataKeys::from_bits(e.enriched).iter().collect();
        line(
            "enrichment:",
            if enriched.is_empty() {
                "added nothing".to_owned()
            } else {
                format!("added {}", enriched.join(", "))
            },
        );
    }
    if let Some(sent) = &f.sent {
        out.push_str("  sent (customer information hashed):\n");
        let pretty = serde_json::from_str::<serde_json::Value>(sent)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| sent.clone());
        for l in pretty.lines() {
            out.push_str(&format!("    {l}\n"));
        }
    }
    out
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn to_json(f: &Found) -> serde_json::Value {
    let r = &f.record;
    let e = &f.event;
    let keys = UserDataKeys::from_bits(e.keys);
    json!({
        "id": e.id,
        "order_id": e.order_id,
        "event_name": e.event_name,
        "outcome": r.outcome.as_str(),
        "stage": r.stage,
        "reason": e.reason.as_ref().or(r.reason.as_ref()),
        "at": time(r.at_ms),
        "pixel": r.pixel,
        "attempts": r.attempts,
        "fbtrace_id": r.fbtrace_id,
        "events_received": r.events_received,
        "error": r.error,
        "keys_present": keys.iter().collect::<Vec<_>>(),
        "keys_missing": UserDataKeys::NAMES[..MATCH_KEYS].iter().enumerate().filter(|(i, _)| !keys.has(*i)).map(|(_, n)| *n).collect::<Vec<_>>(),
        "enriched": UserDataKeys::from_bits(e.enriched).iter().collect::<Vec<_>>(),
        "sent": f.sent.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
    })
}
