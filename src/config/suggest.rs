//! "Did you mean …?" for a name that is nearly one of the names expected, and the reading of
//! serde's "unknown field" messages that list those names.

/// The one of `candidates` that `wrong` most likely misspells, if any is close.
///
/// Close means an optimal-string-alignment (Damerau–Levenshtein) distance, ignoring case, of at
/// most 2, or 1 for names of five characters or fewer: two edits cover a dropped letter, a swap
/// or a slip in a long name (`CompleteRegistraton`, `limited_data_usage` for
/// `limited_data_use`), while short names would otherwise "match" unrelated ones (`foo` is not a
/// misspelled `fbp`). Ties go to the first candidate, so suggestions are stable.
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wrong_lower = wrong.to_lowercase();
    let limit = if wrong_lower.chars().count() <= 5 {
        1
    } else {
        2
    };
    candidates
        .into_iter()
        .filter(|c| *c != wrong)
        .map(|c| (strsim::osa_distance(&wrong_lower, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The names in the "expected …" part of serde's unknown field or variant message:
/// "one of `a`, `b`", "`a` or `b`", "`a`" (and none for "there are no fields").
pub(super) fn expected_names(expected: &str) -> Vec<&str> {
    expected.split('`').skip(1).step_by(2).collect()
}

/// What serde's `unknown field` or `unknown variant` message says: the name written and the
/// names expected, or `None` for any other message.
pub fn unknown_name(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (name, expected) = rest.split_once("`, expected ").or_else(|| {
        rest.split_once("`, there are no ")
            .map(|(name, _)| (name, ""))
    })?;
    Some((name, expected_names(expected)))
}

/// `message` with "; did you mean `x`?" appended when the name it rejects is close to one
/// expected.
pub(super) fn with_suggestion(message: &str) -> String {
    match unknown_name(message).and_then(|(name, expected)| did_you_mean(name, expected)) {
        Some(near) => format!("{message}; did you mean `{near}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested() {
        let fields = ["limited_data_use", "page_view", "pixel_id"];
        assert_eq!(
            did_you_mean("limited_data_usage", fields),
            Some("limited_data_use")
        );
        assert_eq!(did_you_mean("pixelid", fields), Some("pixel_id"));
        assert_eq!(did_you_mean("Page_View", fields), Some("page_view"));
        assert_eq!(did_you_mean("pathh", ["path", "encoding"]), Some("path"));
        assert_eq!(
            did_you_mean("CompleteRegistraton", ["Contact", "CompleteRegistration"]),
            Some("CompleteRegistration")
        );
        // A swap of two letters is one edit.
        assert_eq!(did_you_mean("pxiel_id", fields), Some("pixel_id"));
    }

    #[test]
    fn far_names_are_not_suggested() {
        assert_eq!(did_you_mean("foo", ["fbp", "path"]), None);
        assert_eq!(did_you_mean("limited", ["limited_data_use"]), None);
        assert_eq!(did_you_mean("bogus_key", ["pixel_id", "page_view"]), None);
        assert_eq!(did_you_mean("x", []), None);
    }

    #[test]
    fn the_closest_and_then_the_first_wins() {
        assert_eq!(did_you_mean("abcdef", ["abcdxy", "abcdex"]), Some("abcdex"));
        assert_eq!(did_you_mean("abcdef", ["abcdex", "abcdey"]), Some("abcdex"));
    }

    #[test]
    fn serde_messages_are_read() {
        assert_eq!(
            unknown_name("unknown field `pathh`, expected one of `path`, `encoding`"),
            Some(("pathh", vec!["path", "encoding"]))
        );
        assert_eq!(
            unknown_name("unknown field `x`, expected `path` or `codec`"),
            Some(("x", vec!["path", "codec"]))
        );
        assert_eq!(
            unknown_name("unknown variant `disc`, expected `memory` or `disk`"),
            Some(("disc", vec!["memory", "disk"]))
        );
        assert_eq!(
            unknown_name("unknown field `x`, there are no fields"),
            Some(("x", vec![]))
        );
        assert_eq!(unknown_name("missing field `path`"), None);
        assert_eq!(
            with_suggestion("unknown variant `disc`, expected `memory` or `disk`"),
            "unknown variant `disc`, expected `memory` or `disk`; did you mean `disk`?"
        );
        assert_eq!(
            with_suggestion("missing field `path`"),
            "missing field `path`"
        );
    }
}
