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
        // Sent, so that a landing's fbc can be read off its PageView.
        page_view: true,
        ..MappingSettings::default()
    })
}

fn sha(text: &str) -> String {
    Sha256Hex::of(text).as_str().to_owned()
}

/// Map `message` at `now` through `memory`: the server event, or why there is none.
fn map(memory: &mut Identities, message: Value, now: DateTime<Utc>) -> Result<Value, String> {
    map_noting(memory, message, now).0
}

/// [`map`], and the names of the keys enrichment set (`notes.enriched`).
fn map_noting(
    memory: &mut Identities,
    message: Value,
    now: DateTime<Utc>,
) -> (Result<Value, String>, Vec<&'static str>) {
    let mut bytes = serde_json::to_vec(&message).unwrap();
    let mut out = Vec::new();
    let (outcome, notes) = mapper().map_json_remembering(&mut bytes, now, &mut out, memory);
    let event = match outcome {
        Outcome::Mapped(()) => Ok(serde_json::from_slice(&out).unwrap()),
        Outcome::Skipped(reason) => Err(format!("skipped: {reason}")),
        Outcome::Rejected(r) => Err(format!("rejected: {r}")),
    };
    (event, notes.enriched.iter().collect())
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

/// A page view by `anonymous_id` landing at `at` from the ad click `fbclid` (the mapping builds
/// the event's `fbc` from it, dated `at`).
fn landing(anonymous_id: &str, fbclid: &str, at: DateTime<Utc>) -> Value {
    json!({
        "type": "page", "anonymousId": anonymous_id, "timestamp": at.to_rfc3339(),
        "context": {"page": {"url": format!("https://shop.example/?fbclid={fbclid}")}}
    })
}

/// The `fbc` of the click `fbclid` first seen at `at`.
fn fbc(fbclid: &str, at: DateTime<Utc>) -> String {
    format!("fb.1.{}.{fbclid}", at.timestamp_millis())
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

// `fbc` and `fbp` keep the creation time their id was first seen with.

#[test]
fn a_later_page_view_of_the_same_click_is_sent_with_the_first_click_time() {
    let mut memory = Identities::new(100, 3600);
    let (first, enriched) = map_noting(&mut memory, landing("anon-1", "AbC-1", t0()), t0());
    assert_eq!(user_data(&first.unwrap())["fbc"], fbc("AbC-1", t0()));
    assert!(enriched.is_empty(), "{enriched:?}");
    // The visitor comes back to the landing URL: the mapping rebuilds the fbc, dated now.
    let later = t0() + Duration::seconds(3000);
    let (again, enriched) = map_noting(&mut memory, landing("anon-1", "AbC-1", later), later);
    assert_eq!(
        user_data(&again.unwrap())["fbc"],
        fbc("AbC-1", t0()),
        "the click is dated by its first sight"
    );
    assert_eq!(enriched, ["fbc"], "what is sent came from memory");
    // Past the TTL of the first sight, within that of the second: seeing it again kept it alive.
    let bare = map(
        &mut memory,
        track(json!({"anonymousId": "anon-1"})),
        t0() + Duration::seconds(4000),
    );
    assert_eq!(
        user_data(&bare.unwrap())["fbc"],
        fbc("AbC-1", t0()),
        "the profile kept the first"
    );
}

#[test]
fn a_new_click_replaces_the_remembered_one() {
    let mut memory = Identities::new(100, 3600);
    let (t1, t2) = (t0() + Duration::seconds(60), t0() + Duration::seconds(120));
    map(&mut memory, landing("anon-1", "AbC-1", t0()), t0()).unwrap();
    let (new, enriched) = map_noting(&mut memory, landing("anon-1", "XyZ-2", t1), t1);
    assert_eq!(user_data(&new.unwrap())["fbc"], fbc("XyZ-2", t1));
    assert!(enriched.is_empty(), "{enriched:?}");
    let again = map(&mut memory, landing("anon-1", "XyZ-2", t2), t2).unwrap();
    assert_eq!(
        user_data(&again)["fbc"],
        fbc("XyZ-2", t1),
        "the new click is kept"
    );
    let bare = map(&mut memory, track(json!({"anonymousId": "anon-1"})), t2).unwrap();
    assert_eq!(user_data(&bare)["fbc"], fbc("XyZ-2", t1));
}

#[test]
fn an_earlier_sighting_of_the_click_delivered_late_dates_it() {
    let mut memory = Identities::new(100, 3600);
    let later = t0() + Duration::seconds(600);
    map(&mut memory, landing("anon-1", "AbC-1", later), later).unwrap();
    // The landing itself arrives after a later page view (a retry, a replay).
    let now = later + Duration::seconds(60);
    let (late, enriched) = map_noting(&mut memory, landing("anon-1", "AbC-1", t0()), now);
    assert_eq!(user_data(&late.unwrap())["fbc"], fbc("AbC-1", t0()));
    assert!(enriched.is_empty(), "its own fbc: {enriched:?}");
    let bare = map(&mut memory, track(json!({"anonymousId": "anon-1"})), now).unwrap();
    assert_eq!(user_data(&bare)["fbc"], fbc("AbC-1", t0()));
}

#[test]
fn the_browser_id_keeps_its_first_creation_time_too() {
    let mut memory = Identities::new(100, 3600);
    let with_fbp = |fbp: &str| track(json!({"anonymousId": "anon-1", "context": {"fbp": fbp}}));
    let first = "fb.1.1781524800000.1098115397";
    let (sent, _) = map_noting(&mut memory, with_fbp(first), t0());
    assert_eq!(user_data(&sent.unwrap())["fbp"], first);
    // The same cookie, re-created with a later time (and here on another subdomain).
    let (sent, enriched) = map_noting(&mut memory, with_fbp("fb.2.1781524900000.1098115397"), t0());
    assert_eq!(user_data(&sent.unwrap())["fbp"], first);
    assert_eq!(enriched, ["fbp"]);
    // A new random number is a new browser id.
    let new = "fb.1.1781525000000.2233445566";
    let (sent, enriched) = map_noting(&mut memory, with_fbp(new), t0());
    assert_eq!(user_data(&sent.unwrap())["fbp"], new);
    assert!(enriched.is_empty(), "{enriched:?}");
    let bare = map(&mut memory, track(json!({"anonymousId": "anon-1"})), t0()).unwrap();
    assert_eq!(user_data(&bare)["fbp"], new);
}

#[test]
fn an_fbc_or_fbp_not_in_metas_format_is_sent_and_remembered_as_it_is() {
    for (remembered, own) in [
        ("fb.1.1781524800000.42", "fb.1.1781524900000"),
        ("fb.1.1781524800000.42", "fb.1.1781524900000."),
        ("fb.1.1781524800000.42", "fb.x.1781524900000.42"),
        ("fb.1.1781524800000.42", "fb.1.+1781524900000.42"),
        ("FB.1.1781524800000.42", "fb.1.1781524900000.42"),
        ("42", "fb.1.1781524900000.42"),
    ] {
        for key in ["fbc", "fbp"] {
            let mut memory = Identities::new(100, 3600);
            let with =
                |value: &str| track(json!({"anonymousId": "anon-1", "context": {key: value}}));
            map(&mut memory, with(remembered), t0()).unwrap();
            let (sent, enriched) = map_noting(&mut memory, with(own), t0());
            assert_eq!(
                user_data(&sent.unwrap())[key],
                own,
                "{key} {remembered} then {own}"
            );
            assert!(enriched.is_empty(), "{enriched:?}");
            let bare = map(&mut memory, track(json!({"anonymousId": "anon-1"})), t0()).unwrap();
            assert_eq!(user_data(&bare)[key], own, "the latest is remembered");
        }
    }
}

/// A shared bucket as [`Identities::sync`] reads it: what other instances wrote.
struct Bucket(Vec<Change>);

impl Persist for Bucket {
    fn save(&mut self, _: &profile::Key, _: Option<&profile::Profile>) {}

    fn save_order(&mut self, _: &profile::Key, _: &OriginalEvent) {}

    fn drop_order(&mut self, _: &profile::Key) {}

    fn remote_changes(&mut self, _: usize) -> Vec<Change> {
        std::mem::take(&mut self.0)
    }
}

#[test]
fn instances_sharing_a_bucket_keep_the_first_click_time_whichever_wrote_last() {
    let key = profile::anonymous_key("anon-1");
    let written_by = |message: Value, now: DateTime<Utc>| {
        let mut other = Identities::new(100, 3600);
        map(&mut other, message, now).unwrap();
        other.users.peek(&key).unwrap().clone()
    };
    let later = t0() + Duration::seconds(60);
    // Another instance saw a later page view of the click before this one's write reached it.
    let theirs = written_by(landing("anon-1", "AbC-1", later), later);
    let bucket = Bucket(vec![Change::Profile(key, Some(theirs))]);
    let mut memory =
        Identities::new(100, 3600).with_store(Box::new(bucket), Vec::new(), t0().timestamp());
    map(&mut memory, landing("anon-1", "AbC-1", t0()), t0()).unwrap();
    memory.sync();
    let bare = map(&mut memory, track(json!({"anonymousId": "anon-1"})), later).unwrap();
    assert_eq!(user_data(&bare)["fbc"], fbc("AbC-1", t0()));
    // A new click written elsewhere replaces it, as any newer value does.
    let then = later + Duration::seconds(60);
    let theirs = written_by(landing("anon-1", "XyZ-2", then), then);
    memory.persist = Some(Box::new(Bucket(vec![Change::Profile(key, Some(theirs))])));
    memory.sync();
    let bare = map(&mut memory, track(json!({"anonymousId": "anon-1"})), then).unwrap();
    assert_eq!(user_data(&bare)["fbc"], fbc("XyZ-2", then));
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
    open_disk_bounded(dir, now, 100)
}

fn open_disk_bounded(dir: &std::path::Path, now: DateTime<Utc>, max_users: usize) -> Identities {
    let (store, profiles) = DiskStore::open(dir, now.timestamp(), 3600, component()).unwrap();
    Identities::new(max_users, 3600).with_store(Box::new(store), profiles, now.timestamp())
}

#[test]
fn the_disk_store_survives_a_restart_and_holds_no_raw_personal_data() {
    let dir = temp_dir("restart");
    {
        let mut memory = open_disk(&dir, t0());
        map(&mut memory, identify("jane-user-id", Some("anon-9")), t0()).unwrap_err();
        map(&mut memory, landing("anon-9", "AbC-1", t0()), t0()).unwrap();
    } // Dropped: the writer flushes and closes the file.
    let mut memory = open_disk(&dir, t0() + Duration::seconds(60));
    assert_eq!(memory.len(), 2, "the user and the anonymous id");
    let event = map(&mut memory, track(json!({"anonymousId": "anon-9"})), t0()).unwrap();
    assert_eq!(
        user_data(&event)["em"],
        json!([sha("jane.doe@example.com")])
    );
    // The click's first time came back from the file too.
    let later = t0() + Duration::seconds(120);
    let again = map(&mut memory, landing("anon-9", "AbC-1", later), later).unwrap();
    assert_eq!(user_data(&again)["fbc"], fbc("AbC-1", t0()));
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

// Orders remembered for AppendValue (Meta's `original_event_data`).

use super::nats_kv::{self, Entry};
use super::order::{self, ORDER_WINDOW_SECS, order_key};

/// The Purchase sent (and remembered) at `sent_at`, with the message id `event_id`.
fn purchase(event_id: &str, sent_at: i64) -> OriginalEvent {
    OriginalEvent {
        event_name: "Purchase".into(),
        event_time: sent_at - 30,
        event_id: Some(event_id.into()),
        sent_at,
    }
}

fn ts() -> i64 {
    t0().timestamp()
}

#[test]
fn an_order_remembered_is_recalled_and_an_unknown_one_is_not() {
    let mut memory = Identities::new(100, 3600);
    memory.remember_order("ORD-1", purchase("msg-1", ts()), ts());
    assert_eq!(
        memory.recall_order("ORD-1", ts() + 3600),
        Some(purchase("msg-1", ts()))
    );
    assert_eq!(memory.recall_order("ORD-2", ts()), None);
    assert_eq!(memory.recall_order("ord-1", ts()), None, "ids are exact");
    assert!(memory.is_empty(), "orders are not profiles");
}

#[test]
fn the_first_conversion_of_an_order_is_kept_until_its_window_ends() {
    let mut memory = Identities::new(100, 3600);
    memory.remember_order("ORD-1", purchase("msg-1", ts()), ts());
    let later = ts() + 600;
    memory.remember_order("ORD-1", purchase("msg-2", later), later);
    assert_eq!(
        memory.recall_order("ORD-1", later),
        Some(purchase("msg-1", ts()))
    );
    // Past the first one's window, a new conversion of the same id takes its place.
    let past = ts() + ORDER_WINDOW_SECS;
    memory.remember_order("ORD-1", purchase("msg-3", past), past);
    assert_eq!(
        memory.recall_order("ORD-1", past + 1),
        Some(purchase("msg-3", past))
    );
}

#[test]
fn an_order_is_not_recalled_seven_days_after_it_was_sent_and_is_pruned() {
    let mut memory = Identities::new(100, 3600);
    memory.remember_order("ORD-1", purchase("msg-1", ts()), ts());
    memory.remember_order("ORD-2", purchase("msg-2", ts() + 10), ts() + 10);
    let last_second = ts() + ORDER_WINDOW_SECS - 1;
    assert!(memory.recall_order("ORD-1", last_second).is_some());
    assert_eq!(memory.recall_order("ORD-1", ts() + ORDER_WINDOW_SECS), None);
    assert!(!memory.orders.contains(&order_key("ORD-1")), "pruned");
    // Nobody asks for ORD-2 again: the next order sent prunes it from the old end.
    let much_later = ts() + 2 * ORDER_WINDOW_SECS;
    memory.remember_order("ORD-3", purchase("msg-3", much_later), much_later);
    assert_eq!(memory.orders.len(), 1);
    assert!(memory.orders.contains(&order_key("ORD-3")));
}

#[test]
fn the_order_bound_drops_the_oldest_order_first() {
    let mut memory = Identities::new(2, 3600);
    memory.remember_order("ORD-1", purchase("msg-1", ts()), ts());
    memory.remember_order("ORD-2", purchase("msg-2", ts() + 1), ts() + 1);
    // A recall does not promote: ORD-1 still has the least of its window left.
    assert!(memory.recall_order("ORD-1", ts() + 2).is_some());
    memory.remember_order("ORD-3", purchase("msg-3", ts() + 3), ts() + 3);
    assert_eq!(memory.orders.len(), 2);
    assert_eq!(memory.recall_order("ORD-1", ts() + 4), None);
    assert!(memory.recall_order("ORD-2", ts() + 4).is_some());
    assert!(memory.recall_order("ORD-3", ts() + 4).is_some());
    // Users have their own bound: two of them fit beside the two orders.
    map(&mut memory, identify("u1", None), t0()).unwrap_err();
    map(&mut memory, identify("u2", None), t0()).unwrap_err();
    assert_eq!((memory.len(), memory.orders.len()), (2, 2));
}

#[test]
fn orders_round_trip_through_their_stored_form() {
    let sent = purchase("msg-1", ts());
    assert_eq!(order::decode(&order::encode(&sent)), Some(sent));
    let bare = OriginalEvent {
        event_id: None,
        ..purchase("", ts())
    };
    assert_eq!(order::decode(&order::encode(&bare)), Some(bare));
    assert_eq!(order::decode(b"{not json"), None);
    assert_ne!(
        order_key("42"),
        profile::user_key("42"),
        "an order and a user with the same id are apart"
    );
}

#[test]
fn the_disk_store_keeps_orders_across_a_restart_for_their_window_only() {
    let dir = temp_dir("orders");
    {
        let mut memory = open_disk(&dir, t0());
        memory.remember_order("ORD-secret-77", purchase("msg-1", ts()), ts());
        map(&mut memory, identify("u1", None), t0()).unwrap_err();
    }
    let later = t0() + Duration::seconds(60);
    let mut memory = open_disk(&dir, later);
    assert_eq!((memory.len(), memory.orders.len()), (1, 1), "profiles too");
    assert_eq!(
        memory.recall_order("ORD-secret-77", later.timestamp()),
        Some(purchase("msg-1", ts()))
    );
    drop(memory);

    let file = std::fs::read(dir.join("users.redb")).unwrap();
    let contains = |needle: &str| file.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        !contains("ORD-secret-77"),
        "the store file holds the order id"
    );
    assert!(contains("msg-1"), "it holds the event id");

    // A week after it was sent, a restart leaves it out, and deletes it from the file.
    let past = t0() + Duration::seconds(ORDER_WINDOW_SECS);
    let memory = open_disk(&dir, past);
    assert!(memory.orders.is_empty());
    drop(memory);
    // Opened as of its sending again, the file no longer has it.
    let mut reopened = open_disk(&dir, t0());
    assert_eq!(
        reopened.recall_order("ORD-secret-77", ts()),
        None,
        "deleted"
    );
}

#[test]
fn the_disk_store_forgets_the_orders_memory_drops() {
    let dir = temp_dir("orders-bound");
    {
        let mut memory = open_disk_bounded(&dir, t0(), 1);
        memory.remember_order("ORD-1", purchase("msg-1", ts()), ts());
        memory.remember_order("ORD-2", purchase("msg-2", ts() + 1), ts() + 1);
        // Past its window on a recall: gone from the file too.
        let past = ts() + 1 + ORDER_WINDOW_SECS;
        memory.remember_order("ORD-3", purchase("msg-3", ts() + 2), ts() + 2);
        memory.remember_order("ORD-4", purchase("msg-4", ts() + 3), ts() + 3);
        assert_eq!(memory.recall_order("ORD-4", past + 2), None);
    }
    // With room for more, nothing comes back: ORD-1‥3 were dropped for room, ORD-4 expired.
    let memory = open_disk(&dir, t0());
    assert!(
        memory.orders.is_empty(),
        "{} orders left",
        memory.orders.len()
    );
}

/// A bucket key and what was put under it (`None`: purged).
type Written = (String, Option<Vec<u8>>);

/// A bucket several instances share, as the `nats_kv` store sees it: every write in order,
/// named and encoded as the store writes it, and read back by every instance from the start
/// (its own writes included, as a watch echoes them).
#[derive(Clone, Default)]
struct SharedBucket {
    log: std::sync::Arc<std::sync::Mutex<Vec<Written>>>,
    read: usize,
}

impl SharedBucket {
    fn instance(&self) -> Identities {
        let persist = Box::new(SharedBucket {
            log: self.log.clone(),
            read: 0,
        });
        Identities::new(100, 3600).with_store(persist, Vec::new(), ts())
    }

    fn put(&self, name: String, value: Option<Vec<u8>>) {
        self.log.lock().unwrap().push((name, value));
    }
}

impl Persist for SharedBucket {
    fn save(&mut self, key: &profile::Key, profile: Option<&profile::Profile>) {
        self.put(
            nats_kv::entry_name(Entry::Profile, key),
            profile.map(profile::Profile::encode),
        );
    }

    fn evict(&mut self, _: &profile::Key) {}

    fn save_order(&mut self, key: &profile::Key, order: &OriginalEvent) {
        self.put(
            nats_kv::entry_name(Entry::Order, key),
            Some(order::encode(order)),
        );
    }

    fn drop_order(&mut self, _: &profile::Key) {}

    fn remote_changes(&mut self, max: usize) -> Vec<Change> {
        let log = self.log.lock().unwrap();
        let new: Vec<_> = log[self.read..].iter().take(max).collect();
        self.read += new.len();
        new.into_iter()
            .filter_map(|(name, value)| nats_kv::change(name, value.as_deref()))
            .collect()
    }
}

#[test]
fn an_order_one_instance_sent_is_recalled_by_another_sharing_the_bucket() {
    let bucket = SharedBucket::default();
    let (mut a, mut b) = (bucket.instance(), bucket.instance());
    a.remember_order("ORD-1", purchase("msg-a", ts()), ts());
    // A profile written beside it stays a profile.
    map(&mut a, identify("u1", None), t0()).unwrap_err();
    b.sync();
    assert_eq!(
        b.recall_order("ORD-1", ts() + 60),
        Some(purchase("msg-a", ts()))
    );
    let event = map(&mut b, track(json!({"userId": "u1"})), t0()).unwrap();
    assert_eq!(
        user_data(&event)["em"],
        json!([sha("jane.doe@example.com")])
    );
    // Its own write echoed back changes nothing.
    a.sync();
    assert_eq!(a.orders.len(), 1);
    assert!(a.recall_order("ORD-1", ts()).is_some());
    assert!(
        bucket
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|(name, _)| name.starts_with("order.")),
        "orders have keys of their own"
    );
}

#[test]
fn instances_sharing_a_bucket_agree_on_the_first_conversion_of_an_order() {
    let bucket = SharedBucket::default();
    let (mut a, mut b) = (bucket.instance(), bucket.instance());
    a.remember_order("ORD-1", purchase("msg-a", ts()), ts());
    // B sends the same order a moment later, before A's write reached it.
    b.remember_order("ORD-1", purchase("msg-b", ts() + 5), ts() + 5);
    a.sync();
    b.sync();
    for memory in [&mut a, &mut b] {
        assert_eq!(
            memory.recall_order("ORD-1", ts() + 10),
            Some(purchase("msg-a", ts()))
        );
    }
    // Past the window, one instance's new conversion of the id replaces it in the other too,
    // even before that one has seen the time pass.
    let past = ts() + ORDER_WINDOW_SECS;
    a.remember_order("ORD-1", purchase("msg-new", past), past);
    b.sync();
    assert_eq!(
        b.recall_order("ORD-1", ts() + 20),
        Some(purchase("msg-new", past))
    );
}

#[test]
fn an_instance_joining_late_skips_the_buckets_orders_past_their_window() {
    let bucket = SharedBucket::default();
    let mut a = bucket.instance();
    a.remember_order("ORD-old", purchase("msg-1", ts()), ts());
    let later = ts() + ORDER_WINDOW_SECS + 60;
    a.remember_order("ORD-new", purchase("msg-2", later), later);
    let persist = Box::new(SharedBucket {
        log: bucket.log.clone(),
        read: 0,
    });
    let mut c = Identities::new(100, 3600).with_store(persist, Vec::new(), later);
    c.sync();
    assert_eq!(
        c.orders.len(),
        1,
        "the replayed history's old order is left out"
    );
    assert!(c.recall_order("ORD-new", later).is_some());
}
