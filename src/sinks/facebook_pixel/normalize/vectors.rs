//! Meta's normalization test vectors, checked end to end (normalize and hash).

use std::fmt::Write as _;

use serde::Deserialize;

use super::{EventFacts, HashedField, Normalizer};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/meta_normalization_vectors.json"
));

/// The vectors carry no event facts: they are read as a non-US event (zip codes such as
/// "K1A0A6" keep all six characters) with birthdays well inside the year range.
const FACTS: EventFacts = EventFacts {
    current_year: 2025,
    country_is_us: false,
};

#[derive(Deserialize)]
struct Vector {
    field: String,
    input: String,
    normalized: Option<String>,
    sha256: Option<String>,
}

#[test]
fn all_meta_vectors_pass() {
    let vectors: Vec<Vector> = match serde_json::from_str(VECTORS) {
        Ok(vectors) => vectors,
        Err(err) => panic!("vectors file is not valid JSON: {err}"),
    };
    assert_eq!(vectors.len(), 729, "unexpected number of vectors");

    let normalizer = Normalizer::default();
    let mut failures = String::new();
    let mut failed = 0;
    for v in &vectors {
        let Some(field) = HashedField::from_key(&v.field) else {
            failed += 1;
            let _ = writeln!(failures, "unknown field {:?}", v.field);
            continue;
        };
        let normalized = normalizer
            .normalize(field, &v.input, FACTS)
            .map(|n| n.into_owned());
        let hashed = normalizer
            .hash(field, &v.input, FACTS)
            .map(|h| h.as_str().to_owned());
        if normalized != v.normalized || hashed != v.sha256 {
            failed += 1;
            let _ = writeln!(
                failures,
                "{} {:?}: expected normalized {:?} sha256 {:?}, got {:?} {:?}",
                v.field, v.input, v.normalized, v.sha256, normalized, hashed
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{failed} of {} vectors failed:\n{failures}",
        vectors.len()
    );
}
