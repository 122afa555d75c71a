//! Enrichment end to end through the mapper: identify, alias and track messages in, server
//! events out.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::disk::{self, DiskStore};
use super::*;
use crate::sinks::facebook_pixel::capi::ActionSource;
use crate::sinks::facebook_pixel::mapping::{Mapper, MappingSettings, Outcome};
use crate::sinks::facebook_pixel::normalize::Sha256Hex;
use crate::telemetry::ComponentInfo;

const EMAIL: &str = "Jane.Doe@Example.com";
const PHONE: &str = "+1 (650) 555-0134";

fn t0() -> DateTime<Utc> {
    "2026-06-15T12:00:00Z".parse().unwrap()
}

fn mapper() -> Mapper {
    Mapper::new(MappingSettings {
        action_source: ActionSource::SystemGenerated,
        ..MappingSettings::default()
    })
}

fn sha(text: &str) -> String {
    Sha256Hex::of(text).as_str().to_owned()
}

/// Map `message` at `now` through `memory`: the server event, or why there is none.
fn map(memory: &mut Identities, message: Value, now: DateTime<Utc>) -> Result<Value, String> {
    let mut bytes = serde_json::to_vec(&message).unwrap();
    let mut out = Vec::new();
    match mapper()
        .map_json_remembering(&mut bytes, now, &mut out, memory)
        .0
    {
        Outcome::Mapped(()) => Ok(serde_json::from_slice(&out).unwrap()),
        Outcome::Skipped(reason) => Err(format!("skipped: {reason}")),
        Outcome::Rejected(r) => Err(format!("rejected: {r}")),
    }
}

fn identify(user_id: &str, anonymous_id: Option<&str>) -> Value {
    let mut m = json!({
        "type": "identify", "userId": user_id,
        "traits": {"email": EMAIL, "phone": PHONE},
        "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (identify)"},
        "timestamp": "2026-06-15T12:00:00Z"
    });
    if let Some(a) = anonymous_id {
        m["anonymousId"] = json!(a);
    }
    m
}

fn track(ids: Value) -> Value {
    let mut m = json!({"type": "track", "event": "Order Completed",
        "properties": {"revenue": 10, "currency": "USD"}});
    for (k, v) in ids.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn user_data(event: &Value) -> &Value {
    &event["user_data"]
}

#[test]
fn identify_then_track_without_traits_carries_the_identifys_hashes() {
    let mut memory = Identities::new(100, 3600);
    let skipped = map(&mut memory, identify("u1", None), t0());
    assert_eq!(
        skipped.unwrap_err(),
        "skipped: \"identify\" calls are not sent to the Conversions API",
        "identify is still not sent itself"
    );
    let event = map(&mut memory, track(json!({"userId": "u1"})), t0()).unwrap();
    let ud = user_data(&event);
    assert_eq!(ud["em"], json!([sha("jane.doe@example.com")]));
    assert_eq!(ud["ph"], json!([sha("16505550134")]));
    assert_eq!(ud["client_ip_address"], "203.0.113.9");
    assert_eq!(ud["client_user_agent"], "Mozilla/5.0 (identify)");
}

#[test]
fn the_events_own_values_win_over_remembered_ones() {
    let mut memory = Identities::new(100, 3600);
    map(&mut memory, identify("u1", None), t0()).unwrap_err();
    let mut own = track(json!({"userId": "u1"}));
    own["context"] = json!({"traits": {"email": "other@example.com"}, "userAgent": "Own/1.0"});
    let event = map(&mut memory, own, t0()).unwrap();
    let ud = user_data(&event);
    assert_eq!(ud["em"], json!([sha("other@example.com")]));
    assert_eq!(ud["client_user_agent"], "Own/1.0");
    assert_eq!(
        ud["ph"],
        json!([sha("16505550134")]),
        "what it lacked is added"
    );
    // The newest value is remembered: a later bare event gets the new email.
    let later = map(&mut memory, track(json!({"userId": "u1"})), t0()).unwrap();
    assert_eq!(user_data(&later)["em"], json!([sha("other@example.com")]));
}

#[test]
fn alias_links_an_anonymous_visitor_to_the_known_user() {
    let mut memory = Identities::new(100, 3600);
    map(&mut memory, identify("u1", None), t0()).unwrap_err();
    let before = map(&mut memory, track(json!({"anonymousId": "anon-1"})), t0()).unwrap();
    assert!(user_data(&before).get("em").is_none(), "not linked yet");
    let alias = json!({"type": "alias", "previousId": "anon-1", "userId": "u1"});
    assert!(map(&mut memory, alias, t0()).unwrap_err().contains("alias"));
    let after = map(&mut memory, track(json!({"anonymousId": "anon-1"})), t0()).unwrap();
    assert_eq!(
        user_data(&after)["em"],
        json!([sha("jane.doe@example.com")])
    );
}

#[test]
fn an_event_with_both_ids_links_them_as_analytics_js_sends_after_identify() {
    let mut memory = Identities::new(100, 3600);
    map(&mut memory, identify("u1", Some("anon-2")), t0()).unwrap_err();
    let event = map(&mut memory, track(json!({"anonymousId": "anon-2"})), t0()).unwrap();
    assert_eq!(
        user_data(&event)["em"],
        json!([sha("jane.doe@example.com")])
    );
}

#[test]
fn remembered_values_expire_after_ttl_secs() {
    let mut memory = Identities::new(100, 3600);
    map(&mut memory, identify("u1", None), t0()).unwrap_err();
    let fresh = map(
        &mut memory,
        track(json!({"userId": "u1"})),
        t0() + Duration::seconds(3599),
    );
    assert!(user_data(&fresh.unwrap()).get("em").is_some());
    let stale = map(
        &mut memory,
        track(json!({"userId": "u1"})),
        t0() + Duration::seconds(3600),
    );
    assert!(user_data(&stale.unwrap()).get("em").is_none());
}

#[test]
fn the_memory_bound_forgets_the_least_recently_seen_users() {
    let mut memory = Identities::new(2, 3600);
    map(&mut memory, identify("u1", None), t0()).unwrap_err();
    map(&mut memory, identify("u2", None), t0()).unwrap_err();
    // u1 is seen again, so u2 is now the least recently seen.
    map(&mut memory, track(json!({"userId": "u1"})), t0()).unwrap();
    map(&mut memory, identify("u3", None), t0()).unwrap_err();
    assert_eq!(memory.len(), 2);
    let u1 = map(&mut memory, track(json!({"userId": "u1"})), t0()).unwrap();
    assert!(user_data(&u1).get("em").is_some(), "u1 was kept");
    let u2 = map(&mut memory, track(json!({"userId": "u2"})), t0()).unwrap();
    assert!(user_data(&u2).get("em").is_none(), "u2 was evicted");
}

#[test]
fn messages_switched_off_for_this_destination_teach_nothing() {
    let mut memory = Identities::new(100, 3600);
    let mut off = identify("u1", None);
    off["integrations"] = json!({"Facebook Pixel Server Side": false});
    map(&mut memory, off, t0()).unwrap_err();
    assert!(memory.is_empty());
}

fn component() -> ComponentInfo {
    ComponentInfo {
        id: "capi".into(),
        kind: "sink",
        type_name: "facebook_pixel_server_side".into(),
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fbpixel-enrichment-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open_disk(dir: &std::path::Path, now: DateTime<Utc>) -> Identities {
    let (store, profiles) = DiskStore::open(dir, now.timestamp(), 3600, component()).unwrap();
    Identities::new(100, 3600).with_store(Box::new(store), profiles, now.timestamp())
}

#[test]
fn the_disk_store_survives_a_restart_and_holds_no_raw_personal_data() {
    let dir = temp_dir("restart");
    {
        let mut memory = open_disk(&dir, t0());
        map(&mut memory, identify("jane-user-id", Some("anon-9")), t0()).unwrap_err();
    } // Dropped: the writer flushes and closes the file.
    let mut memory = open_disk(&dir, t0() + Duration::seconds(60));
    assert_eq!(memory.len(), 2, "the user and the anonymous id");
    let event = map(&mut memory, track(json!({"anonymousId": "anon-9"})), t0()).unwrap();
    assert_eq!(
        user_data(&event)["em"],
        json!([sha("jane.doe@example.com")])
    );
    drop(memory);

    let file = std::fs::read(dir.join("users.redb")).unwrap();
    let contains = |needle: &str| file.windows(needle.len()).any(|w| w == needle.as_bytes());
    for raw in [
        EMAIL,
        "jane.doe@example.com",
        "6505550134",
        "jane-user-id",
        "anon-9",
    ] {
        assert!(!contains(raw), "the store file contains {raw:?}");
    }
    assert!(contains(&sha("jane.doe@example.com")), "it holds the hash");
}

#[test]
fn forget_erases_a_user_and_the_anonymous_ids_linked_to_it() {
    let dir = temp_dir("forget");
    {
        let mut memory = open_disk(&dir, t0());
        map(&mut memory, identify("u1", Some("anon-1")), t0()).unwrap_err();
        map(&mut memory, identify("u2", None), t0()).unwrap_err();
    }
    assert_eq!(disk::forget(&dir, "u1").unwrap(), 2);
    assert_eq!(disk::forget(&dir, "u1").unwrap(), 0, "already gone");
    let mut memory = open_disk(&dir, t0());
    for ids in [json!({"userId": "u1"}), json!({"anonymousId": "anon-1"})] {
        let event = map(&mut memory, track(ids), t0()).unwrap();
        assert!(user_data(&event).get("em").is_none());
    }
    let u2 = map(&mut memory, track(json!({"userId": "u2"})), t0()).unwrap();
    assert!(user_data(&u2).get("em").is_some(), "other users are kept");
}

#[test]
fn a_running_store_is_not_opened_twice() {
    let dir = temp_dir("locked");
    let _running = open_disk(&dir, t0());
    let e = disk::forget(&dir, "u1").unwrap_err();
    assert!(e.contains("in use") && e.contains("stop it first"), "{e}");
}

#[test]
fn profiles_round_trip_through_their_stored_form() {
    let mut memory = Identities::new(10, 3600);
    map(&mut memory, identify("u1", Some("a1")), t0()).unwrap_err();
    let (_, profile) = memory.users.iter().next().unwrap();
    let decoded = profile::Profile::decode(&profile.encode()).unwrap();
    assert_eq!(&decoded, profile);
    assert!(profile::Profile::decode(b"{not json").is_none());
}

#[test]
fn settings_are_checked_only_when_enabled() {
    let parse = |t: &str| -> EnrichmentConfig { toml::from_str(t).unwrap() };
    assert!(parse("max_users = 0").problems().is_empty());
    let bad =
        parse("enabled = true\nmax_users = 0\nttl_secs = 0\nstore = \"nats_kv\"\nbucket = \"a.b\"");
    let problems = bad.problems().join("\n");
    for key in [
        "max_users",
        "ttl_secs",
        "enrichment.url",
        "enrichment.bucket",
    ] {
        assert!(problems.contains(key), "{problems}");
    }
    let defaults = parse("enabled = true");
    assert_eq!(defaults.ttl_secs, 30 * 24 * 3600);
    assert_eq!(defaults.store, StoreKind::Memory);
    assert!(toml::from_str::<EnrichmentConfig>("store = \"redis\"").is_err());
}

#[test]
fn a_shared_device_does_not_carry_one_users_data_to_another() {
    let mut memory = Identities::new(100, 3600);
    map(&mut memory, identify("alice", Some("device-1")), t0()).unwrap_err();
    // Bob logs in on the same browser: same anonymousId, another userId.
    let bob = map(
        &mut memory,
        track(json!({"userId": "bob", "anonymousId": "device-1"})),
        t0(),
    )
    .unwrap();
    assert!(
        user_data(&bob).get("em").is_none(),
        "alice's email on bob's event"
    );
    // From now on the device is bob's: its anonymous events carry nothing of alice.
    let anonymous = map(&mut memory, track(json!({"anonymousId": "device-1"})), t0()).unwrap();
    assert!(user_data(&anonymous).get("em").is_none());
}

#[test]
fn forget_follows_aliases_to_every_linked_profile() {
    let dir = temp_dir("forget-alias");
    {
        let mut memory = open_disk(&dir, t0());
        // anon-1 belonged to the old user id, which was then aliased to the new one.
        map(&mut memory, identify("old-id", Some("anon-1")), t0()).unwrap_err();
        let alias = json!({"type": "alias", "previousId": "old-id", "userId": "new-id"});
        map(&mut memory, alias, t0()).unwrap_err();
    }
    // new-id ← user:old-id (alias) ← anon-1; and anon:old-id (alias).
    assert_eq!(disk::forget(&dir, "new-id").unwrap(), 3);
    let mut memory = open_disk(&dir, t0());
    assert!(memory.is_empty(), "{} profiles left", memory.len());
    let event = map(&mut memory, track(json!({"anonymousId": "anon-1"})), t0()).unwrap();
    assert!(user_data(&event).get("em").is_none());
}

#[test]
fn ids_that_teach_nothing_take_no_room() {
    let mut memory = Identities::new(100, 3600);
    let bare = json!({"type": "track", "event": "Ping", "userId": "u9"});
    map(&mut memory, bare, t0()).unwrap();
    assert!(memory.is_empty());
}
