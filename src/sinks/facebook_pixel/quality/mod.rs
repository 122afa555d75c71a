//! Meta's own verdict on the data: the sink's `quality` poller reads Meta's Dataset Quality API
//! for each pixel and exports what it says (Event Match Quality, match-key and dedup-key
//! coverage, freshness, diagnostics) as gauges; `fbpixel quality` reports the same beside the
//! sink's own per-key coverage, with hints.
//!
//! - [`dataset`]: Meta's request and answer, as documented.
//! - [`poller`]: the background task and its metrics; it never touches delivery.
//! - [`report`]: the pure report of `fbpixel quality`.

pub(crate) mod dataset;
pub(crate) mod poller;
pub(crate) mod report;

use serde::Deserialize;

pub use poller::{Poller, Target};

/// The variable that lowers the shortest `quality.interval_secs` accepted, for tests that
/// watch several polls; not for production, where Meta's metrics change over hours and days.
pub const MIN_INTERVAL_VAR: &str = "FBPIXEL_QUALITY_MIN_INTERVAL_SECS";

/// The shortest `quality.interval_secs` accepted without [`MIN_INTERVAL_VAR`].
pub const MIN_INTERVAL_SECS: u64 = 60;

/// The sink's `quality` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Poll Meta's Dataset Quality API.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between two polls of a pixel.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
}

fn default_interval() -> u64 {
    3600
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_secs: default_interval(),
        }
    }
}

impl QualityConfig {
    /// What is wrong with the table, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let min = std::env::var(MIN_INTERVAL_VAR)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(MIN_INTERVAL_SECS)
            .max(1);
        if self.interval_secs < min {
            vec![format!(
                "quality.interval_secs: {} is below {min}; Meta's metrics change over hours (the default, 3600, is one request per pixel an hour): use at least {min}",
                self.interval_secs
            )]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_at_least_a_minute_and_defaults_to_an_hour() {
        let config: QualityConfig = toml::from_str("enabled = true").unwrap();
        assert_eq!(config.interval_secs, 3600);
        assert!(config.problems().is_empty());
        let short = QualityConfig {
            enabled: true,
            interval_secs: 5,
        };
        let problems = short.problems();
        assert!(
            problems[0].starts_with("quality.interval_secs: 5 is below 60"),
            "{problems:?}"
        );
        assert!(!QualityConfig::default().enabled);
    }
}
