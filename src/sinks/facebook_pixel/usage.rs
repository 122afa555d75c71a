//! Meta's rate-limit usage headers, read from every Graph API answer.
//!
//! The shapes follow Meta's "Rate Limits" page
//! (<https://developers.facebook.com/docs/graph-api/overview/rate-limiting>):
//! - `X-App-Usage`: `{"call_count": 28, "total_time": 25, "total_cputime": 25}`, each an integer
//!   percentage of the app's allowance over the rolling window.
//! - `X-Ad-Account-Usage`: `{"acc_id_util_pct": 9.67, "reset_time_duration": 100, …}`: the
//!   percentage of the ad account's allowance used.
//! - `X-Business-Use-Case-Usage` (what system-user tokens, the Conversions API's, are held to):
//!   `{"<business-object-id>": [{"type": "…", "call_count": 100, "total_cputime": 25,
//!   "total_time": 25, "estimated_time_to_regain_access": 19}]}`, the last field in minutes.
//!
//! A header that is missing or unreadable counts as no reading: usage only ever slows delivery
//! down, so a garbled header must not stop it.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::HeaderMap;
use serde::Deserialize;

/// `X-Business-Use-Case-Usage`, as the `header` label of the usage gauge names it.
pub const BUSINESS_USE_CASE: &str = "x-business-use-case-usage";
/// `X-App-Usage`.
pub const APP: &str = "x-app-usage";
/// `X-Ad-Account-Usage`.
pub const AD_ACCOUNT: &str = "x-ad-account-usage";

/// The three percentages of `X-App-Usage` and of each `X-Business-Use-Case-Usage` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub struct Percents {
    /// Share of the calls allowed.
    #[serde(default)]
    pub call_count: f64,
    /// Share of the CPU time allowed.
    #[serde(default)]
    pub total_cputime: f64,
    /// Share of the total time allowed.
    #[serde(default)]
    pub total_time: f64,
}

impl Percents {
    fn max(&self) -> f64 {
        self.call_count.max(self.total_cputime).max(self.total_time)
    }

    fn worst(self, other: Percents) -> Percents {
        Percents {
            call_count: self.call_count.max(other.call_count),
            total_cputime: self.total_cputime.max(other.total_cputime),
            total_time: self.total_time.max(other.total_time),
        }
    }

    /// `(metric, percent)` for the gauge.
    pub fn figures(&self) -> [(&'static str, f64); 3] {
        [
            ("call_count", self.call_count),
            ("total_cputime", self.total_cputime),
            ("total_time", self.total_time),
        ]
    }
}

#[derive(Deserialize)]
struct BusinessUseCase {
    #[serde(flatten)]
    percents: Percents,
    /// Minutes.
    #[serde(default)]
    estimated_time_to_regain_access: f64,
}

#[derive(Deserialize)]
struct AdAccount {
    #[serde(default)]
    acc_id_util_pct: f64,
}

/// What one answer's headers say of the budget left.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// `X-Business-Use-Case-Usage`, the worst of its entries per figure.
    pub business_use_case: Option<Percents>,
    /// `X-App-Usage`.
    pub app: Option<Percents>,
    /// `X-Ad-Account-Usage`'s `acc_id_util_pct`.
    pub ad_account: Option<f64>,
    /// How long Meta says to wait: the longest `estimated_time_to_regain_access` or a
    /// `Retry-After` in seconds.
    pub wait: Option<Duration>,
}

impl Usage {
    /// Read the usage headers of an answer.
    pub fn from_headers(headers: &HeaderMap) -> Usage {
        let json = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let mut usage = Usage::default();
        let mut wait = Duration::ZERO;
        if let Some(entries) = json(BUSINESS_USE_CASE)
            .and_then(|v| serde_json::from_slice::<BTreeMap<String, Vec<BusinessUseCase>>>(v).ok())
        {
            for entry in entries.values().flatten() {
                usage.business_use_case = Some(
                    usage
                        .business_use_case
                        .unwrap_or_default()
                        .worst(entry.percents),
                );
                wait = wait.max(minutes(entry.estimated_time_to_regain_access));
            }
        }
        usage.app = json(APP).and_then(|v| serde_json::from_slice::<Percents>(v).ok());
        usage.ad_account = json(AD_ACCOUNT)
            .and_then(|v| serde_json::from_slice::<AdAccount>(v).ok())
            .map(|a| a.acc_id_util_pct);
        // Only the delay-seconds form: an HTTP date would need the clocks to agree.
        if let Some(secs) = headers
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        {
            wait = wait.max(Duration::from_secs(secs));
        }
        usage.wait = (!wait.is_zero()).then_some(wait);
        usage
    }

    /// The highest figure of any header, in percent; `None` without any.
    pub fn max_percent(&self) -> Option<f64> {
        [
            self.business_use_case.map(|p| p.max()),
            self.app.map(|p| p.max()),
            self.ad_account,
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max)
    }
}

/// Minutes as a duration; nonsense (negative, NaN, beyond a day) as none or a day.
fn minutes(m: f64) -> Duration {
    if m.is_finite() && m > 0.0 {
        Duration::from_secs_f64(m.min(24.0 * 60.0) * 60.0)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn business_use_case_entries_are_read_as_metas_documentation_shows_them() {
        // The example of Meta's "Rate Limits" page, two objects.
        let usage = Usage::from_headers(&headers(&[(
            "x-business-use-case-usage",
            r#"{"66782684":[{"type":"ads_management","call_count":95,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":0}],"10153848260347724":[{"type":"ads_insights","call_count":10,"total_cputime":23,"total_time":23,"estimated_time_to_regain_access":19}]}"#,
        )]));
        assert_eq!(
            usage.business_use_case,
            Some(Percents {
                call_count: 95.0,
                total_cputime: 23.0,
                total_time: 23.0
            })
        );
        assert_eq!(usage.wait, Some(Duration::from_secs(19 * 60)));
        assert_eq!(usage.max_percent(), Some(95.0));
    }

    #[test]
    fn app_and_ad_account_usage_and_retry_after_are_read() {
        let usage = Usage::from_headers(&headers(&[
            (
                "x-app-usage",
                r#"{"call_count":28,"total_time":25,"total_cputime":25}"#,
            ),
            (
                "x-ad-account-usage",
                r#"{"acc_id_util_pct":9.67,"reset_time_duration":100,"ads_api_access_tier":"standard_access"}"#,
            ),
            ("retry-after", "7"),
        ]));
        assert_eq!(usage.app.map(|p| p.call_count), Some(28.0));
        assert_eq!(usage.ad_account, Some(9.67));
        assert_eq!(usage.business_use_case, None);
        assert_eq!(usage.wait, Some(Duration::from_secs(7)));
        assert_eq!(usage.max_percent(), Some(28.0));
    }

    #[test]
    fn missing_or_garbled_headers_are_no_reading() {
        assert_eq!(Usage::from_headers(&HeaderMap::new()), Usage::default());
        let usage = Usage::from_headers(&headers(&[
            ("x-app-usage", "not json"),
            ("x-business-use-case-usage", r#"{"1":"x"}"#),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]));
        assert_eq!(usage, Usage::default());
        assert_eq!(usage.max_percent(), None);
    }
}
