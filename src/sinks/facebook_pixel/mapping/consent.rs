//! Consent gating: an event is sent only when the visitor granted the categories the sink's
//! `consent` settings require, read from Segment's consent object
//! (`context.consent.categoryPreferences`, a map of category → boolean).

use serde::Deserialize;

use super::message::{Part, SegmentMessage};
use crate::json::{Json, Object, member};

/// The sink's `consent` settings. No required category (the default) means no gating.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRules {
    /// Categories the visitor must have granted, e.g. `["Advertising"]`.
    #[serde(default)]
    pub required_categories: Vec<String>,
    /// Whether every required category must be granted, or one is enough.
    #[serde(default, rename = "match")]
    pub matching: ConsentMatch,
    /// What to do with a message that carries no consent preferences at all.
    #[serde(default)]
    pub when_missing: WhenMissing,
}

/// `consent.match`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMatch {
    /// Every required category is granted.
    #[default]
    All,
    /// At least one required category is granted.
    Any,
}

/// `consent.when_missing`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenMissing {
    /// Send it: events from sources without a consent manager keep flowing.
    #[default]
    Send,
    /// Skip it, as if consent was denied.
    Skip,
}

impl ConsentRules {
    /// Every invalid setting, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        self.required_categories
            .iter()
            .enumerate()
            .filter(|(_, c)| c.trim().is_empty())
            .map(|(i, _)| {
                format!("consent.required_categories[{i}]: a category name cannot be empty")
            })
            .collect()
    }

    /// Whether the message may be sent (and learned from).
    pub fn allows(&self, message: &SegmentMessage<'_>) -> bool {
        if self.required_categories.is_empty() {
            return true;
        }
        let preferences = match &message.context {
            Part::Object(context) => &context.consent,
            _ => &Part::Absent,
        };
        match preferences {
            Part::Absent => self.when_missing == WhenMissing::Send,
            // A consent object that cannot be read grants nothing: sending on a malformed one
            // could send what a visitor refused.
            Part::Not(_) => false,
            Part::Object(preferences) => self.granted(preferences),
        }
    }

    fn granted(&self, preferences: &Object<'_>) -> bool {
        // Only `true` grants: a string "true" or a missing category does not.
        let granted = |category: &String| {
            matches!(
                member(preferences, category.as_str()),
                Some(Json::Bool(true))
            )
        };
        match self.matching {
            ConsentMatch::All => self.required_categories.iter().all(granted),
            ConsentMatch::Any => self.required_categories.iter().any(granted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::facebook_pixel::mapping::message::Paths;

    fn allows(rules: &ConsentRules, message: &str) -> bool {
        let mut bytes = message.as_bytes().to_vec();
        let message = SegmentMessage::parse(&mut bytes, &Paths::default()).unwrap();
        rules.allows(&message)
    }

    fn rules(
        categories: &[&str],
        matching: ConsentMatch,
        when_missing: WhenMissing,
    ) -> ConsentRules {
        ConsentRules {
            required_categories: categories.iter().map(|c| c.to_string()).collect(),
            matching,
            when_missing,
        }
    }

    const BOTH: &str =
        r#"{"context":{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":true}}}}"#;
    const ONE: &str =
        r#"{"context":{"consent":{"categoryPreferences":{"Advertising":false,"Analytics":true}}}}"#;
    const NONE: &str = r#"{"context":{"ip":"1.2.3.4"}}"#;

    #[test]
    fn no_required_category_sends_everything() {
        let open = ConsentRules::default();
        for message in [
            BOTH,
            ONE,
            NONE,
            r#"{"context":{"consent":{"categoryPreferences":7}}}"#,
        ] {
            assert!(allows(&open, message), "{message}");
        }
    }

    #[test]
    fn all_needs_every_category_and_any_one() {
        let all = rules(
            &["Advertising", "Analytics"],
            ConsentMatch::All,
            WhenMissing::Send,
        );
        assert!(allows(&all, BOTH));
        assert!(!allows(&all, ONE));
        let any = rules(
            &["Advertising", "Analytics"],
            ConsentMatch::Any,
            WhenMissing::Send,
        );
        assert!(allows(&any, ONE));
        let any = rules(
            &["Advertising", "Marketing"],
            ConsentMatch::Any,
            WhenMissing::Send,
        );
        assert!(!allows(&any, ONE), "neither granted");
    }

    #[test]
    fn only_true_grants() {
        let ads = rules(&["Advertising"], ConsentMatch::All, WhenMissing::Send);
        for denied in [
            r#"{"context":{"consent":{"categoryPreferences":{"Advertising":"true"}}}}"#,
            r#"{"context":{"consent":{"categoryPreferences":{"Advertising":1}}}}"#,
            r#"{"context":{"consent":{"categoryPreferences":{}}}}"#,
            r#"{"context":{"consent":{"categoryPreferences":{"advertising":true}}}}"#,
        ] {
            assert!(!allows(&ads, denied), "{denied}");
        }
    }

    #[test]
    fn missing_preferences_follow_when_missing_and_malformed_ones_deny() {
        let send = rules(&["Advertising"], ConsentMatch::All, WhenMissing::Send);
        let skip = rules(&["Advertising"], ConsentMatch::All, WhenMissing::Skip);
        assert!(allows(&send, NONE));
        assert!(!allows(&skip, NONE));
        assert!(
            allows(&send, r#"{"context":{"consent":{}}}"#),
            "no categoryPreferences"
        );
        let malformed = r#"{"context":{"consent":{"categoryPreferences":["Advertising"]}}}"#;
        assert!(!allows(&send, malformed));
    }

    #[test]
    fn settings_parse_and_name_an_unknown_match() {
        let parsed: ConsentRules = toml::from_str(
            "required_categories = [\"Ads\"]\nmatch = \"any\"\nwhen_missing = \"skip\"",
        )
        .unwrap();
        assert_eq!(parsed.matching, ConsentMatch::Any);
        assert_eq!(parsed.when_missing, WhenMissing::Skip);
        let err = toml::from_str::<ConsentRules>("match = \"some\"").unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("some") && err.contains("`all`") && err.contains("`any`"),
            "names the value and both choices: {err}"
        );
        let empty = rules(&["Ads", " "], ConsentMatch::All, WhenMissing::Send);
        assert_eq!(
            empty.problems(),
            ["consent.required_categories[1]: a category name cannot be empty"]
        );
    }
}
