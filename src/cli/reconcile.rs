//! `fbpixel reconcile --config FILE --ids FILE`: for a list of ids — an export of orders from a
//! shop or a warehouse, one id per line or a CSV column — what the sink did with each:
//! delivered, skipped (why), dead-lettered (why), rejected, or never seen. This is what to run
//! when Events Manager shows fewer purchases than the shop. Exits 1 when any id was never seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;

use super::ledger::{LedgerArgs, time};
use crate::sinks::facebook_pixel::ledger::{Found, Outcome};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The ids (order_id, event_id or messageId): one per line, or a CSV file with a header
    /// row (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub ids: PathBuf,
    /// The CSV column holding the ids (default: the first of order_id, orderId, event_id,
    /// messageId, message_id, id).
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What became of one id.
#[derive(Debug, Serialize)]
struct Status {
    id: String,
    /// `delivered`, `skipped`, `dead_lettered`, `rejected`, `errored` or `never_seen`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fbtrace_id: Option<String>,
}

const NEVER_SEEN: &str = "never_seen";

/// The columns tried, in order, when `--column` is not given.
const ID_COLUMNS: [&str; 6] = [
    "order_id",
    "orderid",
    "event_id",
    "messageid",
    "message_id",
    "id",
];

pub fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let ids = read_ids(&args)?;
    if ids.is_empty() {
        bail!("{}: no ids in it", args.ids.display());
    }
    let ledgers = args.ledger.open()?;
    let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut found = ledgers.find_many(&wanted)?;
    let mut statuses = Vec::with_capacity(ids.len());
    for id in ids {
        let events = found.remove(&id).unwrap_or_default();
        statuses.push(status(id, &events));
    }
    let mut counts: BTreeMap<&str, usize> = [
        "delivered",
        "skipped",
        "dead_lettered",
        "rejected",
        "errored",
        NEVER_SEEN,
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    for s in &statuses {
        *counts.entry(s.status).or_default() += 1;
    }
    let missing = counts[NEVER_SEEN];
    if args.json {
        let out = serde_json::json!({
            "ledger": ledgers.name,
            "total": statuses.len(),
            "counts": counts,
            "ids": statuses,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(&ledgers.name, &statuses, &counts));
    }
    Ok(if missing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An id's status: delivered when any event under it was last delivered (an order's Purchase,
/// a message dead-lettered then replayed); otherwise what happened to it last.
fn status(id: String, found: &[Found]) -> Status {
    let mut latest: HashMap<&str, &Found> = HashMap::new();
    for f in found {
        latest.insert(f.event.id.as_str(), f);
    }
    let pick = latest
        .values()
        .filter(|f| f.record.outcome == Outcome::Delivered)
        .max_by_key(|f| f.record.at_ms)
        .or_else(|| latest.values().max_by_key(|f| f.record.at_ms));
    match pick {
        None => Status {
            id,
            status: NEVER_SEEN,
            reason: None,
            event_name: None,
            at: None,
            fbtrace_id: None,
        },
        Some(f) => Status {
            id,
            status: f.record.outcome.as_str(),
            reason: reason(f),
            event_name: f.event.event_name.clone(),
            at: Some(time(f.record.at_ms)),
            fbtrace_id: f.record.fbtrace_id.clone(),
        },
    }
}

fn reason(f: &Found) -> Option<String> {
    if f.record.outcome == Outcome::Delivered {
        return None;
    }
    let mut reason = f
        .event
        .reason
        .clone()
        .or_else(|| f.record.reason.clone())
        .unwrap_or_default();
    if let Some(e) = &f.record.error {
        let code = match (e.code, e.subcode) {
            (Some(c), Some(s)) => format!("Meta's error {c}/{s}: "),
            (Some(c), None) => format!("Meta's error {c}: "),
            _ => String::new(),
        };
        reason = format!("{code}{}", e.message);
    }
    (!reason.is_empty()).then_some(reason)
}

fn table(name: &str, statuses: &[Status], counts: &BTreeMap<&str, usize>) -> String {
    let mut out = format!("{} id(s) against {name}\n", statuses.len());
    for (label, key) in [
        ("delivered", "delivered"),
        ("skipped", "skipped"),
        ("dead-lettered", "dead_lettered"),
        ("rejected", "rejected"),
        ("errored", "errored"),
        ("never seen", NEVER_SEEN),
    ] {
        out.push_str(&format!("  {label:<14}{:>8}\n", counts[key]));
    }
    for (label, key) in [
        (
            "never seen (not in the ledger: they did not reach the sink)",
            NEVER_SEEN,
        ),
        (
            "dead-lettered (fix, then `fbpixel replay`)",
            "dead_lettered",
        ),
        ("rejected (dropped: no dead letter configured)", "rejected"),
        ("errored (their senders were told to retry)", "errored"),
        ("skipped (not sent on purpose)", "skipped"),
    ] {
        let these: Vec<&Status> = statuses.iter().filter(|s| s.status == key).collect();
        if these.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{label}: {}\n", these.len()));
        for s in these {
            out.push_str(&format!("  {}", s.id));
            if let Some(name) = &s.event_name {
                out.push_str(&format!("  {name}"));
            }
            if let Some(reason) = &s.reason {
                out.push_str(&format!("  {reason}"));
            }
            out.push('\n');
        }
    }
    out
}

/// The ids of `--ids`, in order, each once.
fn read_ids(args: &ReconcileArgs) -> anyhow::Result<Vec<String>> {
    let name = args.ids.display().to_string();
    let mut text = String::new();
    if name == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the ids from standard input")?;
    } else {
        text = std::fs::read_to_string(&args.ids)
            .with_context(|| format!("cannot read the ids from {name}"))?;
    }
    let csv = args.column.is_some()
        || args
            .ids
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        || text.lines().next().is_some_and(|l| l.contains(','));
    let ids = if csv {
        csv_column(&text, args.column.as_deref(), &name)?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let mut seen = HashSet::new();
    Ok(ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

fn csv_column(text: &str, column: Option<&str>, name: &str) -> anyhow::Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .with_context(|| format!("{name}: cannot read its CSV header row"))?
        .clone();
    let index = match column {
        Some(c) => headers.iter().position(|h| h == c),
        None => ID_COLUMNS
            .iter()
            .find_map(|want| headers.iter().position(|h| h.eq_ignore_ascii_case(want))),
    };
    let Some(index) = index else {
        bail!(
            "{name}: {}; its columns are: {} (pick one with --column NAME)",
            match column {
                Some(c) => format!("there is no column `{c}`"),
                None => "no column is named order_id, event_id, messageId or id".to_owned(),
            },
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let mut ids = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{name}: row {}", line + 2))?;
        if let Some(id) = row.get(index).filter(|id| !id.is_empty()) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_export_is_read_by_its_order_id_column_and_a_plain_list_line_by_line() {
        let ids = csv_column(
            "name,Order_ID,total\nA,o-1,3\nB,\"o-2\",4\nC,,5\n",
            None,
            "x",
        )
        .unwrap();
        assert_eq!(ids, ["o-1", "o-2"]);
        let err = csv_column("a,b\n1,2\n", None, "orders.csv").unwrap_err();
        assert!(err.to_string().contains("--column"), "{err}");
        assert_eq!(csv_column("a,b\n1,2\n", Some("b"), "x").unwrap(), ["2"]);
    }

    #[test]
    fn an_id_never_seen_is_never_seen() {
        let s = status("o-9".into(), &[]);
        assert_eq!(s.status, NEVER_SEEN);
    }
}
