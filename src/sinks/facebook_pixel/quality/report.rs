//! The report of `fbpixel quality`: per pixel and event name, Meta's verdict (EMQ, per-key
//! coverage, event coverage, freshness, diagnostics) beside our own per-key coverage, and hints
//! drawn from the gap, each naming the Segment field that feeds the key. Pure: Meta's answers
//! and our counts in, a [`Report`] out, shown as text ([`std::fmt::Display`]) or JSON (serde).

use std::fmt;

use serde::Serialize;

use super::dataset::{self, Diagnostic, EventCoverage, EventQuality};
use crate::sinks::facebook_pixel::capi::UserDataKeys;

/// Our own count of one pixel's events of one name: how many were sent and how many carried
/// each user_data key (names as in [`UserDataKeys::NAMES`]). The delivery ledger provides it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnCoverage {
    /// The pixel.
    pub pixel: String,
    /// The Conversions API event name.
    pub event_name: String,
    /// Events sent.
    pub events: u64,
    /// Per key, the events that carried it.
    pub keys: Vec<(&'static str, u64)>,
}

/// Meta's answer for one pixel, or why there is none.
#[derive(Clone, Debug)]
pub struct MetaQuality {
    /// The pixel.
    pub pixel: String,
    /// The `web` entries, or the reason the request failed.
    pub answer: Result<Vec<EventQuality>, String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Whether our own coverage was known (the delivery ledger is on).
    pub own_coverage: bool,
    /// One per pixel.
    pub pixels: Vec<PixelReport>,
}

/// One pixel's part.
#[derive(Clone, Debug, Serialize)]
pub struct PixelReport {
    /// The pixel.
    pub pixel: String,
    /// Why Meta's answer is missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_error: Option<String>,
    /// One per event name.
    pub events: Vec<EventReport>,
}

/// One event name's part.
#[derive(Clone, Debug, Serialize)]
pub struct EventReport {
    /// The event name.
    pub event_name: String,
    /// Meta's Event Match Quality, out of 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_match_quality: Option<f64>,
    /// Events we sent, from our own coverage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_sent: Option<u64>,
    /// Per key, Meta's coverage and ours, in percent.
    pub keys: Vec<KeyRow>,
    /// Meta's event coverage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_coverage: Option<EventCoverage>,
    /// Meta's upload frequency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_frequency: Option<String>,
    /// Meta's diagnostics, as Meta words them.
    pub diagnostics: Vec<Diagnostic>,
    /// What to do, from the numbers above.
    pub hints: Vec<String>,
}

/// One key of an [`EventReport`].
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KeyRow {
    /// Our key name, or Meta's identifier when it pairs with none of ours.
    pub key: String,
    /// Meta's identifier, when Meta lists the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_identifier: Option<String>,
    /// Meta's coverage, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_coverage: Option<f64>,
    /// Our coverage, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_coverage: Option<f64>,
}

/// The keys the hints look at, most telling first: the ones Meta matches people by.
const HINTED: [&str; 11] = [
    "em",
    "ph",
    "external_id",
    "fbc",
    "fbp",
    "client_ip_address",
    "client_user_agent",
    "fn",
    "ln",
    "zp",
    "country",
];

/// A hint is given for a key missing from at least this share of events, in percent.
const MISSING_HINT: f64 = 25.0;
/// A hint is given when Meta counts a key this many points below our own share.
const GAP_HINT: f64 = 20.0;

/// The Segment field(s) that feed a user_data key (SPEC §4, `mapping/user_data.rs`).
pub fn source(key: &str) -> Option<&'static str> {
    Some(match key {
        "em" => "traits.email (or context.traits.email)",
        "ph" => "traits.phone (or context.traits.phone)",
        "fn" => "traits.firstName (or traits.name)",
        "ln" => "traits.lastName (or traits.name)",
        "ge" => "traits.gender",
        "db" => "traits.birthday",
        "ct" => "traits.address.city",
        "st" => "traits.address.state",
        "zp" => "traits.address.postalCode",
        "country" => "traits.address.country",
        "external_id" => "userId (or anonymousId, or the field external_id_field names)",
        "client_ip_address" => "context.ip",
        "client_user_agent" => "context.userAgent",
        "fbc" => "context.fbc or properties.fbc (or a page URL with fbclid)",
        "fbp" => "context.fbp or properties.fbp (the _fbp cookie)",
        "madid" => "context.device.advertisingId",
        _ => return None,
    })
}

/// Whether `enrichment` can add the key from what it remembered of the user.
fn enrichable(key: &str) -> bool {
    matches!(
        key,
        "em" | "ph"
            | "fn"
            | "ln"
            | "ge"
            | "db"
            | "ct"
            | "st"
            | "zp"
            | "country"
            | "client_ip_address"
            | "client_user_agent"
            | "fbc"
            | "fbp"
    )
}

/// "map traits.phone or turn on enrichment", for a key.
fn remedy(key: &str) -> String {
    match (source(key), enrichable(key)) {
        (Some(source), true) => format!("map {source} or turn on enrichment"),
        (Some(source), false) => format!("map {source}"),
        (None, _) => "send it with the event".to_owned(),
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `12.5` → `"12.5"`, `100.0` → `"100"`.
fn pct(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// The report of Meta's answers and our own coverage (empty when the ledger is off).
pub fn report(meta: &[MetaQuality], own: &[OwnCoverage]) -> Report {
    let mut pixels: Vec<&str> = meta.iter().map(|m| m.pixel.as_str()).collect();
    for o in own {
        if !pixels.contains(&o.pixel.as_str()) {
            pixels.push(&o.pixel);
        }
    }
    let pixels = pixels
        .into_iter()
        .map(|pixel| {
            let answer = meta.iter().find(|m| m.pixel == pixel).map(|m| &m.answer);
            let theirs: &[EventQuality] = match answer {
                Some(Ok(events)) => events,
                _ => &[],
            };
            let ours: Vec<&OwnCoverage> = own.iter().filter(|o| o.pixel == pixel).collect();
            let mut names: Vec<&str> = theirs.iter().map(|e| e.event_name.as_str()).collect();
            let mut own_only: Vec<&str> = ours
                .iter()
                .map(|o| o.event_name.as_str())
                .filter(|n| !names.contains(n))
                .collect();
            own_only.sort_unstable();
            names.extend(own_only);
            PixelReport {
                pixel: pixel.to_owned(),
                meta_error: match answer {
                    Some(Err(e)) => Some(e.clone()),
                    None => Some("not asked".to_owned()),
                    Some(Ok(_)) => None,
                },
                events: names
                    .into_iter()
                    .map(|name| {
                        event_report(
                            name,
                            theirs.iter().find(|e| e.event_name == name),
                            ours.iter().copied().find(|o| o.event_name == name),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    Report {
        own_coverage: !own.is_empty(),
        pixels,
    }
}

fn event_report(name: &str, meta: Option<&EventQuality>, own: Option<&OwnCoverage>) -> EventReport {
    let emq = meta.and_then(|m| m.event_match_quality.as_ref());
    let own_share = |key: &str| {
        own.filter(|o| o.events > 0).map(|o| {
            let n = o
                .keys
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(0, |(_, n)| *n);
            percent(n, o.events)
        })
    };
    let mut keys: Vec<KeyRow> = emq
        .map(|q| {
            q.match_key_feedback
                .iter()
                .map(|k| {
                    let ours = dataset::our_key(&k.identifier, &UserDataKeys::NAMES);
                    KeyRow {
                        key: ours.map_or_else(|| k.identifier.clone(), str::to_owned),
                        meta_identifier: Some(k.identifier.clone()),
                        meta_coverage: k.coverage.and_then(|c| c.percentage),
                        own_coverage: ours.and_then(own_share),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(o) = own {
        for key in UserDataKeys::NAMES {
            let carried = o.keys.iter().any(|(k, n)| *k == key && *n > 0);
            if (carried || HINTED.contains(&key)) && !keys.iter().any(|r| r.key == key) {
                keys.push(KeyRow {
                    key: key.to_owned(),
                    meta_identifier: None,
                    meta_coverage: None,
                    own_coverage: own_share(key),
                });
            }
        }
    }
    let mut hints = Vec::new();
    for key in HINTED {
        let Some(row) = keys.iter().find(|r| r.key == key) else {
            continue;
        };
        match (row.own_coverage, row.meta_coverage) {
            (Some(ours), meta) if 100.0 - ours >= MISSING_HINT => hints.push(format!(
                "{}% of {name} events carry no {key}: {}{}",
                pct(100.0 - ours),
                remedy(key),
                meta.map(|m| format!(" (Meta counts it on {}%)", pct(m)))
                    .unwrap_or_default()
            )),
            (Some(ours), Some(meta)) if ours - meta >= GAP_HINT => hints.push(format!(
                "we send {key} on {}% of {name} events but Meta counts it on {}%: check that its values are real (not placeholders) and whether other senders of {name} (the Pixel, a plugin) leave it out",
                pct(ours),
                pct(meta)
            )),
            (None, Some(meta)) if 100.0 - meta >= MISSING_HINT => hints.push(format!(
                "Meta sees {key} on only {}% of {name} events: {}",
                pct(meta),
                remedy(key)
            )),
            _ => {}
        }
    }
    for row in keys.iter().filter(|r| source(&r.key).is_none()) {
        if let Some(meta) = row.meta_coverage.filter(|m| 100.0 - m >= MISSING_HINT) {
            hints.push(format!(
                "Meta sees {} on only {}% of {name} events",
                row.key,
                pct(meta)
            ));
        }
    }
    let coverage = meta.and_then(|m| m.event_coverage);
    if let Some(EventCoverage {
        percentage: Some(p),
        goal_percentage: Some(goal),
    }) = coverage
        && p < goal
    {
        hints.push(format!(
            "Meta's event coverage of {name} is {}% (goal {}%): send every {name} the Pixel sends through this sink too, with the same event_id (the Segment messageId), so Meta counts and deduplicates them",
            pct(p),
            pct(goal)
        ));
    }
    let frequency = meta
        .and_then(|m| m.data_freshness.as_ref())
        .map(|f| f.upload_frequency.clone())
        .filter(|f| !f.is_empty());
    if let Some(f) = frequency.as_deref().filter(|f| *f != "real_time") {
        hints.push(format!(
            "Meta receives {name} events {}: send them as they happen (a small batch.timeout_secs, no backlog in the buffer)",
            f.replace('_', " ")
        ));
    }
    for key in meta
        .map(|m| m.dedupe_key_feedback.as_slice())
        .unwrap_or_default()
    {
        if key.dedupe_key == "event_id"
            && let Some(p) = key.server_events_with_dedupe_key.and_then(|p| p.percentage)
            && p < 100.0 - MISSING_HINT
        {
            hints.push(format!(
                "only {}% of server {name} events carry event_id as Meta counts them: are other servers sending {name} without one?",
                pct(p)
            ));
        }
    }
    EventReport {
        event_name: name.to_owned(),
        event_match_quality: emq.and_then(|q| q.composite_score),
        events_sent: own.map(|o| o.events),
        keys,
        event_coverage: coverage,
        upload_frequency: frequency,
        diagnostics: emq.map(|q| q.diagnostics.clone()).unwrap_or_default(),
        hints,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.own_coverage {
            writeln!(
                f,
                "Our own per-key coverage comes from the delivery ledger, which is off: only Meta's side is shown."
            )?;
        }
        for pixel in &self.pixels {
            writeln!(f, "\nPixel {}", pixel.pixel)?;
            if let Some(e) = &pixel.meta_error {
                writeln!(f, "  Meta's Dataset Quality API: {e}")?;
            }
            if pixel.events.is_empty() && pixel.meta_error.is_none() {
                writeln!(f, "  Meta reports no web events for this pixel yet.")?;
            }
            for event in &pixel.events {
                write_event(f, event)?;
            }
        }
        Ok(())
    }
}

fn write_event(f: &mut fmt::Formatter<'_>, event: &EventReport) -> fmt::Result {
    let mut head = vec![match event.event_match_quality {
        Some(score) => format!("Meta's EMQ {}/10", pct(score)),
        None => "no EMQ from Meta".to_owned(),
    }];
    if let Some(n) = event.events_sent {
        head.push(format!("{n} sent"));
    }
    if let Some(EventCoverage {
        percentage: Some(p),
        goal_percentage,
    }) = event.event_coverage
    {
        head.push(match goal_percentage {
            Some(goal) => format!("event coverage {}% (goal {}%)", pct(p), pct(goal)),
            None => format!("event coverage {}%", pct(p)),
        });
    }
    if let Some(frequency) = &event.upload_frequency {
        head.push(format!("arrives {}", frequency.replace('_', " ")));
    }
    writeln!(f, "  {}: {}", event.event_name, head.join(", "))?;
    if !event.keys.is_empty() {
        writeln!(f, "    {:<24} {:>6} {:>6}", "key", "Meta", "ours")?;
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{}%", pct(v)));
        for row in &event.keys {
            let name = match &row.meta_identifier {
                Some(id) if *id != row.key => format!("{} ({id})", row.key),
                _ => row.key.clone(),
            };
            writeln!(
                f,
                "    {name:<24} {:>6} {:>6}",
                cell(row.meta_coverage),
                cell(row.own_coverage)
            )?;
        }
    }
    for hint in &event.hints {
        writeln!(f, "    hint: {hint}")?;
    }
    for d in &event.diagnostics {
        let share = match (d.percentage, d.affected_event_count, d.total_event_count) {
            (Some(p), Some(a), Some(t)) => format!(" ({}% of events, {a} of {t})", pct(p)),
            (Some(p), _, _) => format!(" ({}% of events)", pct(p)),
            _ => String::new(),
        };
        writeln!(f, "    Meta's diagnostic: \"{}\"{share}", d.name)?;
        if !d.solution.is_empty() {
            writeln!(f, "      Meta suggests: \"{}\"", d.solution)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::facebook_pixel::quality::dataset::Answer;

    const PURCHASE: &str = r#"{"web":[{"event_name":"Purchase","event_match_quality":{"composite_score":6.2,"match_key_feedback":[{"identifier":"email","coverage":{"percentage":60}},{"identifier":"ip_address","coverage":{"percentage":99.9}},{"identifier":"phone","coverage":{"percentage":10}}],"diagnostics":[{"name":"Server sending mismatched IP addresses","solution":"In your server payload, send the client_ip_address retrieved from customer interactions.","percentage":61.5,"affected_event_count":19567,"total_event_count":31830}]},"event_coverage":{"percentage":34.1,"goal_percentage":75},"data_freshness":{"upload_frequency":"hourly"}}]}"#;

    fn meta() -> Vec<MetaQuality> {
        vec![MetaQuality {
            pixel: "123".into(),
            answer: Ok(Answer::parse(PURCHASE.as_bytes()).unwrap().web),
        }]
    }

    fn own() -> Vec<OwnCoverage> {
        vec![OwnCoverage {
            pixel: "123".into(),
            event_name: "Purchase".into(),
            events: 100,
            keys: vec![
                ("em", 98),
                ("ph", 18),
                ("external_id", 100),
                ("client_ip_address", 100),
                ("client_user_agent", 100),
                ("fbp", 90),
                ("fbc", 80),
                ("fn", 100),
                ("ln", 100),
                ("zp", 100),
                ("country", 100),
            ],
        }]
    }

    #[test]
    fn a_key_most_events_lack_is_named_with_the_segment_field_that_feeds_it() {
        let r = report(&meta(), &own());
        let purchase = &r.pixels[0].events[0];
        assert_eq!(purchase.events_sent, Some(100));
        assert!(
            purchase
                .hints
                .contains(&"82% of Purchase events carry no ph: map traits.phone (or context.traits.phone) or turn on enrichment".to_owned()),
            "{:?}",
            purchase.hints
        );
        // 20% missing is under the threshold: no hint for fbc.
        assert!(
            !purchase.hints.iter().any(|h| h.contains("carry no fbc")),
            "{:?}",
            purchase.hints
        );
    }

    #[test]
    fn a_key_we_send_but_meta_does_not_count_is_a_gap_hint() {
        let r = report(&meta(), &own());
        let hints = &r.pixels[0].events[0].hints;
        assert!(
            hints
                .iter()
                .any(|h| h
                    .starts_with("we send em on 98% of Purchase events but Meta counts it on 60%")),
            "{hints:?}"
        );
        let em = r.pixels[0].events[0]
            .keys
            .iter()
            .find(|k| k.key == "em")
            .unwrap();
        assert_eq!(
            (em.meta_coverage, em.own_coverage),
            (Some(60.0), Some(98.0))
        );
        assert_eq!(em.meta_identifier.as_deref(), Some("email"));
    }

    #[test]
    fn without_our_coverage_the_report_is_metas_side_and_says_the_ledger_is_off() {
        let r = report(&meta(), &[]);
        assert!(!r.own_coverage);
        let purchase = &r.pixels[0].events[0];
        assert!(purchase.keys.iter().all(|k| k.own_coverage.is_none()));
        // An unpaired identifier still gets its hint, under Meta's name.
        assert!(
            purchase
                .hints
                .contains(&"Meta sees phone on only 10% of Purchase events".to_owned()),
            "{:?}",
            purchase.hints
        );
        assert!(
            purchase
                .hints
                .iter()
                .any(|h| h.starts_with("Meta's event coverage of Purchase is 34.1% (goal 75%)")),
            "{:?}",
            purchase.hints
        );
        assert!(
            purchase
                .hints
                .iter()
                .any(|h| h.starts_with("Meta receives Purchase events hourly")),
            "{:?}",
            purchase.hints
        );
        let text = r.to_string();
        assert!(text.contains("the delivery ledger, which is off"), "{text}");
        assert!(text.contains("Purchase: Meta's EMQ 6.2/10"), "{text}");
        assert!(
            text.contains("Meta's diagnostic: \"Server sending mismatched IP addresses\" (61.5% of events, 19567 of 31830)"),
            "{text}"
        );
        assert!(
            text.contains("Meta suggests: \"In your server payload"),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["pixels"][0]["events"][0]["event_match_quality"], 6.2);
        assert_eq!(json["own_coverage"], false);
    }

    #[test]
    fn a_failed_answer_is_reported_and_our_side_still_shown() {
        let meta = vec![MetaQuality {
            pixel: "123".into(),
            answer: Err("HTTP 400, code 190: Invalid OAuth access token".into()),
        }];
        let r = report(&meta, &own());
        assert_eq!(
            r.pixels[0].meta_error.as_deref(),
            Some("HTTP 400, code 190: Invalid OAuth access token")
        );
        assert_eq!(r.pixels[0].events[0].event_name, "Purchase");
        assert!(
            r.to_string()
                .contains("Meta's Dataset Quality API: HTTP 400, code 190")
        );
    }
}
