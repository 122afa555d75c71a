//! What `fbpixel top` shows, computed from two successive scrapes of `/metrics` and nothing
//! else, so it is tested without a terminal: one row per component (events in and out per
//! second, errors, discarded, buffer depth) and, for each Conversions API sink, its user_data key
//! coverage, retries by reason and delivery per pixel.

use std::collections::BTreeMap;

use super::prometheus::Sample;

/// The type of the Conversions API sink, whose own metrics get a section.
pub const CAPI_SINK: &str = "facebook_pixel_server_side";

/// The counters and gauges of one scrape that `top` reads, by component.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// Seconds on a monotonic clock when it was taken.
    pub at: f64,
    components: BTreeMap<String, Counts>,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    kind: String,
    type_name: String,
    received: f64,
    sent: f64,
    errors: f64,
    discarded: f64,
    buffer: Option<f64>,
    /// user_data key → mapped events carrying it.
    keys: BTreeMap<String, f64>,
    /// retry reason → retries (every pixel's).
    retries: BTreeMap<String, f64>,
    pixels: BTreeMap<String, Pixel>,
}

/// One pixel's delivery, as counted by its sink.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pixel {
    /// Requests Meta accepted.
    pub accepted: f64,
    /// Requests answered with a transient error (retried).
    pub transient: f64,
    /// Requests refused for the credentials.
    pub credentials: f64,
    /// Requests rejected for their content.
    pub rejected: f64,
    /// Retries of its requests, every reason.
    pub retries: f64,
    /// `fbpixel_healthy`.
    pub healthy: Option<bool>,
    /// Accepted requests per second since the previous scrape.
    pub accepted_rate: Option<f64>,
}

impl Scrape {
    /// Read the samples of one `/metrics` answer taken at `at` seconds.
    pub fn new(samples: &[Sample], at: f64) -> Self {
        let mut components: BTreeMap<String, Counts> = BTreeMap::new();
        for s in samples {
            let Some(id) = s.label("component_id") else {
                continue;
            };
            let c = components.entry(id.to_owned()).or_default();
            if let Some(kind) = s.label("component_kind") {
                c.kind = kind.to_owned();
            }
            if let Some(type_name) = s.label("component_type") {
                c.type_name = type_name.to_owned();
            }
            let pixel = s.label("pixel");
            match s.name.as_str() {
                "component_received_events_total" => c.received += s.value,
                "component_sent_events_total" => c.sent += s.value,
                "component_errors_total" => c.errors += s.value,
                "component_discarded_events_total" => c.discarded += s.value,
                "buffer_events" => *c.buffer.get_or_insert(0.0) += s.value,
                "fbpixel_user_data_key_events_total" => {
                    if let Some(key) = s.label("key") {
                        *c.keys.entry(key.to_owned()).or_default() += s.value;
                    }
                }
                "fbpixel_retries_total" => {
                    if let Some(reason) = s.label("reason") {
                        *c.retries.entry(reason.to_owned()).or_default() += s.value;
                    }
                    if let Some(pixel) = pixel {
                        c.pixels.entry(pixel.to_owned()).or_default().retries += s.value;
                    }
                }
                "fbpixel_requests_total" => {
                    if let Some(pixel) = pixel {
                        let p = c.pixels.entry(pixel.to_owned()).or_default();
                        match s.label("outcome") {
                            Some("accepted") => p.accepted += s.value,
                            Some("transient") => p.transient += s.value,
                            Some("credentials") => p.credentials += s.value,
                            Some("rejected") => p.rejected += s.value,
                            _ => {}
                        }
                    }
                }
                "fbpixel_healthy" => {
                    if let Some(pixel) = pixel {
                        c.pixels.entry(pixel.to_owned()).or_default().healthy = Some(s.value > 0.0);
                    }
                }
                _ => {}
            }
        }
        Self { at, components }
    }
}

/// One component's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its id.
    pub id: String,
    /// `source`, `transform` or `sink`.
    pub kind: String,
    /// Its type.
    pub type_name: String,
    /// Events received per second (`None` on the first scrape).
    pub in_rate: Option<f64>,
    /// Events sent per second.
    pub out_rate: Option<f64>,
    /// Errors so far.
    pub errors: f64,
    /// Events discarded so far.
    pub discarded: f64,
    /// Events in its buffer, for a sink whose buffer reports it.
    pub buffer: Option<f64>,
}

/// A Conversions API sink's own section.
#[derive(Debug, Clone, PartialEq)]
pub struct CapiSink {
    /// The sink's id.
    pub id: String,
    /// Events it has sent.
    pub sent: f64,
    /// user_data keys carried, as a share (0 to 1) of the events sent, most common first; keys
    /// no event carried are left out.
    pub coverage: Vec<(String, f64)>,
    /// Retries by reason, most frequent first; reasons never seen are left out.
    pub retries: Vec<(String, f64)>,
    /// Delivery per pixel.
    pub pixels: Vec<(String, Pixel)>,
}

/// Everything one screen shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Sources, then transforms, then sinks, each by id.
    pub rows: Vec<Row>,
    /// Conversions API sinks, by id.
    pub capi: Vec<CapiSink>,
}

/// Per second between two readings of a counter; a counter that went down was reset (the
/// pipeline restarted), so what it counts now all happened since.
fn rate(previous: Option<f64>, current: f64, seconds: f64) -> Option<f64> {
    let previous = previous?;
    if seconds <= 0.0 {
        return None;
    }
    let delta = if current >= previous {
        current - previous
    } else {
        current
    };
    Some(delta / seconds)
}

/// The screen for `current`, with rates since `previous` when there is one.
pub fn model(previous: Option<&Scrape>, current: &Scrape) -> Model {
    let seconds = previous.map_or(0.0, |p| current.at - p.at);
    let before = |id: &str| previous.and_then(|p| p.components.get(id));
    let mut rows: Vec<Row> = current
        .components
        .iter()
        .map(|(id, c)| Row {
            id: id.clone(),
            kind: c.kind.clone(),
            type_name: c.type_name.clone(),
            in_rate: rate(before(id).map(|b| b.received), c.received, seconds),
            out_rate: rate(before(id).map(|b| b.sent), c.sent, seconds),
            errors: c.errors,
            discarded: c.discarded,
            buffer: c.buffer,
        })
        .collect();
    let order = |kind: &str| match kind {
        "source" => 0,
        "transform" => 1,
        "sink" => 2,
        _ => 3,
    };
    rows.sort_by(|a, b| (order(&a.kind), &a.id).cmp(&(order(&b.kind), &b.id)));

    let capi = current
        .components
        .iter()
        .filter(|(_, c)| c.type_name == CAPI_SINK)
        .map(|(id, c)| {
            // Nothing sent yet: no share to show.
            let mut coverage: Vec<(String, f64)> = c
                .keys
                .iter()
                .filter(|(_, n)| **n > 0.0 && c.sent > 0.0)
                .map(|(key, n)| (key.clone(), (n / c.sent).min(1.0)))
                .collect();
            coverage.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut retries: Vec<(String, f64)> = c
                .retries
                .iter()
                .filter(|(_, n)| **n > 0.0)
                .map(|(reason, n)| (reason.clone(), *n))
                .collect();
            retries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let pixels = c
                .pixels
                .iter()
                .map(|(pixel, p)| {
                    let earlier = before(id).and_then(|b| b.pixels.get(pixel));
                    let mut p = p.clone();
                    p.accepted_rate = rate(earlier.map(|e| e.accepted), p.accepted, seconds);
                    (pixel.clone(), p)
                })
                .collect();
            CapiSink {
                id: id.clone(),
                sent: c.sent,
                coverage,
                retries,
                pixels,
            }
        })
        .collect();
    Model { rows, capi }
}

#[cfg(test)]
mod tests {
    use super::super::prometheus::parse;
    use super::*;

    const L: &str = r#"component_kind="source",component_type="http_server""#;
    const S: &str = r#"component_kind="sink",component_type="facebook_pixel_server_side""#;

    fn scrape(at: f64, received: u32, sent: u32, accepted: u32) -> Scrape {
        let text = format!(
            r#"component_received_events_total{{component_id="web",{L}}} {received}
component_sent_events_total{{component_id="web",{L}}} {received}
component_received_events_total{{component_id="fb",{S}}} {received}
component_sent_events_total{{component_id="fb",{S}}} {sent}
component_errors_total{{component_id="fb",{S},error_type="mapping_rejected",stage="processing"}} 2
component_errors_total{{component_id="fb",{S},error_type="delivery_rejected",stage="processing"}} 1
component_discarded_events_total{{component_id="fb",{S},intentional="true"}} 4
component_discarded_events_total{{component_id="fb",{S},intentional="false"}} 3
buffer_events{{component_id="fb",{S}}} 12
fbpixel_user_data_key_events_total{{component_id="fb",{S},key="em"}} {sent}
fbpixel_user_data_key_events_total{{component_id="fb",{S},key="ph"}} 5
fbpixel_user_data_key_events_total{{component_id="fb",{S},key="fn"}} 0
fbpixel_retries_total{{component_id="fb",{S},pixel="111",reason="http_5xx"}} 3
fbpixel_retries_total{{component_id="fb",{S},pixel="222",reason="http_5xx"}} 1
fbpixel_retries_total{{component_id="fb",{S},pixel="222",reason="timeout"}} 6
fbpixel_retries_total{{component_id="fb",{S},pixel="222",reason="connection"}} 0
fbpixel_requests_total{{component_id="fb",{S},pixel="111",outcome="accepted"}} {accepted}
fbpixel_requests_total{{component_id="fb",{S},pixel="111",outcome="rejected"}} 1
fbpixel_healthy{{component_id="fb",{S},pixel="111"}} 1
fbpixel_healthy{{component_id="fb",{S},pixel="222"}} 0
"#
        );
        Scrape::new(&parse(&text).unwrap(), at)
    }

    #[test]
    fn rates_come_from_two_scrapes_and_the_first_one_shows_none() {
        let first = model(None, &scrape(10.0, 100, 40, 4));
        assert_eq!(first.rows[0].in_rate, None);
        let m = model(Some(&scrape(10.0, 100, 40, 4)), &scrape(12.0, 160, 50, 8));
        let ids: Vec<&str> = m.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["web", "fb"], "sources first");
        let (web, fb) = (&m.rows[0], &m.rows[1]);
        assert_eq!((web.in_rate, web.out_rate), (Some(30.0), Some(30.0)));
        assert_eq!((fb.in_rate, fb.out_rate), (Some(30.0), Some(5.0)));
        assert_eq!((fb.errors, fb.discarded, fb.buffer), (3.0, 7.0, Some(12.0)));
        assert_eq!(web.buffer, None);
        assert_eq!(m.capi[0].pixels[0].1.accepted_rate, Some(2.0));
    }

    #[test]
    fn a_counter_that_went_down_was_reset_and_counts_from_zero() {
        assert_eq!(rate(Some(100.0), 30.0, 3.0), Some(10.0));
        assert_eq!(rate(Some(1.0), 1.0, 0.0), None);
    }

    #[test]
    fn a_capi_sink_shows_key_coverage_of_sent_events_retries_by_reason_and_each_pixel() {
        let m = model(None, &scrape(1.0, 100, 50, 4));
        let fb = &m.capi[0];
        assert_eq!(fb.id, "fb");
        assert_eq!(
            fb.coverage,
            [("em".to_owned(), 1.0), ("ph".to_owned(), 0.1)],
            "keys no event carried are left out"
        );
        assert_eq!(
            fb.retries,
            [("timeout".to_owned(), 6.0), ("http_5xx".to_owned(), 4.0)]
        );
        let pixels: Vec<(&str, f64, f64, Option<bool>)> = fb
            .pixels
            .iter()
            .map(|(id, p)| (id.as_str(), p.accepted, p.retries, p.healthy))
            .collect();
        assert_eq!(
            pixels,
            [
                ("111", 4.0, 3.0, Some(true)),
                ("222", 0.0, 7.0, Some(false))
            ]
        );
        assert_eq!(fb.pixels[0].1.rejected, 1.0);
        assert!(
            model(None, &scrape(1.0, 0, 0, 0)).capi[0]
                .coverage
                .is_empty()
        );
    }
}
