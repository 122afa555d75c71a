//! The Prometheus text exposition format, as far as `fbpixel top` reads it: one sample per line,
//! `name{label="value",…} value [timestamp]`, comments and blank lines skipped. A small parser of
//! our own: the line format is simple and the exporter's crate writes it but does not read it.

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name (a histogram's series keep their `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Labels,
    /// Its value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if it has one.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`; a line that cannot be read is named in the error with its number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(|e| format!("/metrics line {}: {e}", i + 1))?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a name without a value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("a sample without a value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// A sample's labels, as written.
type Labels = Vec<(String, String)>;

/// Labels up to the closing `}`, and what follows it.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("a label without `=`")?;
        let key = s[..eq].trim().to_owned();
        let quoted = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: the value is not quoted"))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key}: unterminated value")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("label {key}: unterminated value")),
            }
        };
        labels.push((key, value));
        s = &quoted[end + 1..];
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| format!("{text:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels_escapes_and_timestamps_are_read() {
        let text = r#"# HELP component_sent_events_total x
# TYPE component_sent_events_total counter
component_sent_events_total{component_id="in",component_kind="source",component_type="http_server"} 42

buffer_events{component_id="a \"b\"\\c\nd"} 3.5 1700000000000
up 1
fbpixel_request_duration_seconds_bucket{le="+Inf",pixel="1"} +Inf
"#;
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].name, "component_sent_events_total");
        assert_eq!(samples[0].label("component_type"), Some("http_server"));
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[1].label("component_id"), Some("a \"b\"\\c\nd"));
        assert_eq!(samples[1].value, 3.5);
        assert_eq!(
            samples[2],
            Sample {
                name: "up".into(),
                labels: vec![],
                value: 1.0
            }
        );
        assert_eq!(samples[3].label("le"), Some("+Inf"));
        assert!(samples[3].value.is_infinite());
    }

    #[test]
    fn a_broken_line_is_named_by_its_number() {
        let e = parse("ok 1\nbroken{a=\"x} 1\n").unwrap_err();
        assert!(
            e.starts_with("/metrics line 2: label a: unterminated value"),
            "{e}"
        );
        let e = parse("a{b=\"c\"} many\n").unwrap_err();
        assert_eq!(e, "/metrics line 1: \"many\" is not a number");
    }
}
