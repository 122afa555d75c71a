//! Mapping rules end to end, grouped by SPEC section: Segment message in, server event (as
//! JSON) out.

use serde_json::{Value, json};

use chrono::{DateTime, Utc};

use crate::sinks::facebook_pixel::FacebookPixelConfig;
use crate::sinks::facebook_pixel::capi::UserDataKeys;
use crate::sinks::facebook_pixel::mapping::*;
use crate::sinks::facebook_pixel::normalize::Sha256Hex;

const NOW: &str = "2024-06-15T12:00:00Z";

fn now() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

fn mapper(settings: &str) -> Mapper {
    let config: FacebookPixelConfig = toml::from_str(settings).expect("test settings parse");
    config.mapper().expect("test settings are valid")
}

fn sha(text: &str) -> String {
    Sha256Hex::of(text).as_str().to_string()
}

/// The event as JSON, or `skipped: …` / `rejected: …`.
fn run_with_notes(mapper: &Mapper, message: &Value) -> (Result<Value, String>, Notes) {
    let mut bytes = serde_json::to_vec(message).unwrap();
    let mut out = Vec::new();
    let (outcome, notes) = mapper.map_json(&mut bytes, now(), &mut out);
    let result = match outcome {
        Outcome::Mapped(()) => Ok(serde_json::from_slice(&out).unwrap()),
        Outcome::Skipped(reason) => Err(format!("skipped: {reason}")),
        Outcome::Rejected(rejection) => Err(format!("rejected: {rejection}")),
    };
    (result, notes)
}

fn run(mapper: &Mapper, message: &Value) -> Result<Value, String> {
    run_with_notes(mapper, message).0
}

fn mapped(mapper: &Mapper, message: &Value) -> Value {
    run(mapper, message).unwrap_or_else(|e| panic!("expected a mapped event, got {e}"))
}

fn rejected(mapper: &Mapper, message: &Value) -> String {
    match run(mapper, message) {
        Err(e) if e.starts_with("rejected: ") => e["rejected: ".len()..].to_string(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn skipped(mapper: &Mapper, message: &Value) -> String {
    match run(mapper, message) {
        Err(e) if e.starts_with("skipped: ") => e["skipped: ".len()..].to_string(),
        other => panic!("expected a skip, got {other:?}"),
    }
}

/// A browser track call with everything a website event needs.
fn track(event: &str, properties: Value) -> Value {
    json!({
        "type": "track",
        "event": event,
        "messageId": "msg-1",
        "anonymousId": "anon-1",
        "timestamp": "2024-06-15T11:59:00.500Z",
        "context": {
            "userAgent": "Mozilla/5.0",
            "ip": "203.0.113.9",
            "page": { "url": "https://shop.example/p/1" }
        },
        "properties": properties
    })
}

fn with(mut message: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut node = &mut message;
    for part in parent.split('/').skip(1) {
        if node.get(part).is_none() {
            node[part] = json!({});
        }
        node = &mut node[part];
    }
    node[key] = value;
    message
}

fn without(mut message: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    if let Some(Value::Object(map)) = message.pointer_mut(parent) {
        map.remove(key);
    }
    message
}

// ---- §1 which messages are sent ----

#[test]
fn track_becomes_a_custom_event_with_the_base_fields() {
    let event = mapped(&mapper(""), &track("Video Played", json!({})));
    assert_eq!(
        event,
        json!({
            "event_name": "Video Played",
            "event_time": 1718452740,
            "event_id": "msg-1",
            "event_source_url": "https://shop.example/p/1",
            "action_source": "website",
            "user_data": {
                "external_id": [sha("anon-1")],
                "client_ip_address": "203.0.113.9",
                "client_user_agent": "Mozilla/5.0"
            }
        })
    );
}

#[test]
fn a_message_without_type_but_with_an_event_is_a_track() {
    let message = without(track("Video Played", json!({})), "/type");
    assert_eq!(mapped(&mapper(""), &message)["event_name"], "Video Played");
}

#[test]
fn other_call_types_are_skipped() {
    for kind in ["identify", "screen", "group", "alias"] {
        let message = with(track("x", json!({})), "/type", json!(kind));
        assert_eq!(
            skipped(&mapper(""), &message),
            format!("\"{kind}\" calls are not sent to the Conversions API")
        );
    }
}

#[test]
fn page_calls_are_sent_as_page_view_only_when_enabled() {
    let page = without(
        with(track("x", json!({})), "/type", json!("page")),
        "/event",
    );
    assert_eq!(
        skipped(&mapper(""), &page),
        "page calls are sent only with page_view = true"
    );
    let event = mapped(&mapper("page_view = true"), &page);
    assert_eq!(event["event_name"], "PageView");
}

#[test]
fn integrations_switches_are_honoured() {
    let m = mapper("");
    let base = track("Video Played", json!({}));
    let off = with(base.clone(), "/integrations", json!({"All": false}));
    assert_eq!(
        skipped(&m, &off),
        "the message's integrations switch this destination off"
    );
    for key in DESTINATION_KEYS {
        let on = with(
            base.clone(),
            "/integrations",
            json!({"All": false, key: true}),
        );
        assert!(run(&m, &on).is_ok(), "{key}: true");
        let on = with(
            base.clone(),
            "/integrations",
            json!({"All": false, key: {}}),
        );
        assert!(run(&m, &on).is_ok(), "{key}: object");
        let off = with(base.clone(), "/integrations", json!({key: false}));
        assert!(skipped(&m, &off).contains("integrations"), "{key}: false");
    }
    let other_off = with(base, "/integrations", json!({"Amplitude": false}));
    assert!(run(&m, &other_off).is_ok());
}

#[test]
fn non_object_messages_and_invalid_json_are_rejected() {
    let m = mapper("");
    assert_eq!(
        rejected(&m, &json!([1, 2])),
        "message: expected a JSON object, got an array"
    );
    let mut out = Vec::new();
    let (outcome, _) = m.map_json(&mut b"{\"type\":".to_vec(), now(), &mut out);
    match outcome {
        Outcome::Rejected(r) => assert!(r.to_string().starts_with("message: not valid JSON")),
        other => panic!("{other:?}"),
    }
    assert!(out.is_empty());
}

#[test]
fn structural_fields_must_be_objects() {
    let m = mapper("");
    let message = with(track("x", json!({})), "/properties", json!("oops"));
    assert_eq!(
        rejected(&m, &message),
        "properties: expected an object, got a string"
    );
    let message = with(track("x", json!({})), "/context/traits", json!([1]));
    assert_eq!(
        rejected(&m, &message),
        "context.traits: expected an object, got an array"
    );
}

#[test]
fn type_and_event_must_be_strings() {
    let m = mapper("");
    let message = with(track("x", json!({})), "/type", json!(5));
    assert_eq!(
        rejected(&m, &message),
        "type: expected a string, got a number"
    );
    let message = with(track("x", json!({})), "/event", json!({"a": 1}));
    assert_eq!(
        rejected(&m, &message),
        "event: expected a string, got an object"
    );
    let message = without(track("x", json!({})), "/event");
    assert!(rejected(&m, &message).starts_with("event: missing"));
    let message = without(without(track("x", json!({})), "/event"), "/type");
    assert!(rejected(&m, &message).starts_with("type: missing"));
}

#[test]
fn consent_gating_skips_events_without_the_required_categories() {
    let gated = mapper("consent.required_categories = [\"Advertising\", \"Analytics\"]");
    let granted = |ads: bool| {
        with(
            track("x", json!({})),
            "/context/consent",
            json!({"categoryPreferences": {"Advertising": ads, "Analytics": true}}),
        )
    };
    assert!(run(&gated, &granted(true)).is_ok());
    assert!(skipped(&gated, &granted(false)).contains("consent.required_categories"));
    let (_, notes) = run_with_notes(&gated, &granted(false));
    assert_eq!(
        notes.user_data_keys,
        UserDataKeys::default(),
        "nothing mapped"
    );

    let any = mapper(
        "consent.required_categories = [\"Advertising\", \"Analytics\"]\nconsent.match = \"any\"",
    );
    assert!(run(&any, &granted(false)).is_ok(), "Analytics is enough");

    // No consent object: sent by default, skipped with when_missing = "skip".
    assert!(run(&gated, &track("x", json!({}))).is_ok());
    let strict =
        mapper("consent.required_categories = [\"Advertising\"]\nconsent.when_missing = \"skip\"");
    assert!(skipped(&strict, &track("x", json!({}))).contains("consent"));
    // Without required categories nothing is gated.
    assert!(run(&mapper(""), &granted(false)).is_ok());
}

#[test]
fn a_consent_denied_message_is_not_learned_by_enrichment() {
    use crate::sinks::facebook_pixel::enrichment::Identities;
    let gated = mapper(
        "consent.required_categories = [\"Advertising\"]\naction_source = \"system_generated\"",
    );
    let mut memory = Identities::new(100, 3600);
    let denied = json!({
        "type": "identify", "userId": "u-1", "timestamp": NOW,
        "traits": {"email": "ada@example.com"},
        "context": {"consent": {"categoryPreferences": {"Advertising": false}}}
    });
    let later = json!({
        "type": "track", "event": "x", "userId": "u-1", "timestamp": NOW,
        "context": {"consent": {"categoryPreferences": {"Advertising": true}}}
    });
    let map = |message: &Value, memory: &mut Identities| {
        let mut bytes = serde_json::to_vec(message).unwrap();
        let mut out = Vec::new();
        let (outcome, notes) = gated.map_json_remembering(&mut bytes, now(), &mut out, memory);
        (outcome, notes, out)
    };
    let (outcome, _, _) = map(&denied, &mut memory);
    assert_eq!(outcome, Outcome::Skipped(SkipReason::Consent));
    let (outcome, notes, out) = map(&later, &mut memory);
    assert_eq!(outcome, Outcome::Mapped(()));
    let event: Value = serde_json::from_slice(&out).unwrap();
    assert!(event["user_data"].get("em").is_none(), "{event}");
    assert_eq!(notes.enriched, UserDataKeys::default());
    // The same identify with consent is learned.
    let granted = with(
        denied,
        "/context/consent/categoryPreferences/Advertising",
        json!(true),
    );
    map(&granted, &mut memory);
    let (_, notes, out) = map(&later, &mut memory);
    let event: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(event["user_data"]["em"], json!([sha("ada@example.com")]));
    assert!(notes.enriched.iter().any(|k| k == "em"));
}

#[test]
fn pixel_id_field_picks_a_configured_pixel_per_event() {
    let m = mapper(
        "pixel_id = \"111\"\npixel_id_field = \"context.pixel_id\"\npixels = { \"222\" = \"t2\", \"333\" = \"t3\" }",
    );
    assert_eq!(m.pixels(), ["111", "222", "333"]);
    let (_, notes) = run_with_notes(&m, &track("x", json!({})));
    assert_eq!(
        notes.pixel, 0,
        "no pixel_id in the event: the sink's pixel_id"
    );
    for (given, index) in [
        (json!("333"), 2),
        (json!(222), 1),
        (json!("111"), 0),
        (json!(""), 0),
    ] {
        let message = with(track("x", json!({})), "/context/pixel_id", given.clone());
        let (result, notes) = run_with_notes(&m, &message);
        assert!(result.is_ok(), "{given}: {result:?}");
        assert_eq!(notes.pixel, index, "{given}");
    }
    let unknown = with(track("x", json!({})), "/context/pixel_id", json!("999"));
    assert_eq!(
        rejected(&m, &unknown),
        "context.pixel_id: pixel 999 has no access token: add it to the sink's `pixels` table (pixel ID = token), or fix the event"
    );
    let not_digits = with(
        track("x", json!({})),
        "/context/pixel_id",
        json!("ada@example.com"),
    );
    let reason = rejected(&m, &not_digits);
    assert!(
        reason.starts_with("context.pixel_id: is not a pixel ID"),
        "{reason}"
    );
    assert!(
        !reason.contains("ada"),
        "values other than pixel IDs are not echoed"
    );
    // A pixel picked by a property is not event data.
    let m = mapper(
        "pixel_id = \"111\"\npixel_id_field = \"properties.pixel_id\"\npixels = { \"222\" = \"t2\" }",
    );
    let (result, notes) =
        run_with_notes(&m, &track("x", json!({"pixel_id": "222", "plan": "pro"})));
    assert_eq!(notes.pixel, 1);
    assert_eq!(result.unwrap()["custom_data"], json!({"plan": "pro"}));
}

// ---- §2 server event ----

#[test]
fn screen_calls_are_sent_as_viewed_name_screen_only_with_screen_events() {
    let screen = json!({
        "type": "screen", "name": "Home", "messageId": "s-1", "anonymousId": "a-1",
        "timestamp": NOW, "properties": {"tab": "deals"},
        "context": {"os": {"name": "Android", "version": "14"}}
    });
    assert!(skipped(&mapper(""), &screen).contains("screen"));
    let m = mapper("screen_events = true\naction_source = \"app\"");
    let event = mapped(&m, &screen);
    assert_eq!(event["event_name"], "Viewed Home Screen");
    assert_eq!(event["action_source"], "app");
    assert_eq!(event["custom_data"], json!({"tab": "deals"}));
    let unnamed = without(screen.clone(), "/name");
    assert_eq!(mapped(&m, &unnamed)["event_name"], "Viewed Screen");
    let from_properties = with(unnamed, "/properties/name", json!("Cart"));
    assert_eq!(
        mapped(&m, &from_properties)["event_name"],
        "Viewed Cart Screen"
    );
    let mapped_name = mapper(
        "screen_events = true\naction_source = \"app\"\nstandard_events = { \"Viewed Home Screen\" = \"ViewContent\" }",
    );
    assert_eq!(mapped(&mapped_name, &screen)["event_name"], "ViewContent");
}

#[test]
fn app_action_source_marks_messages_from_an_app() {
    let from_app = json!({
        "type": "track", "event": "x", "anonymousId": "a-1", "timestamp": NOW,
        "context": {"app": {"name": "Shop", "version": "1.2"}, "os": {"name": "iOS", "version": "17.4"}}
    });
    let m = mapper("app_action_source = true");
    assert_eq!(
        mapped(&m, &from_app)["action_source"],
        "app",
        "no user agent or URL needed"
    );
    let told = with(
        from_app.clone(),
        "/properties/action_source",
        json!("physical_store"),
    );
    assert_eq!(
        mapped(&m, &told)["action_source"],
        "physical_store",
        "the message wins"
    );
    // Off (the default): the sink's action_source, so this website event lacks its fields.
    assert!(rejected(&mapper(""), &from_app).starts_with("action_source: website events need"));
    // Not an app: the sink's default.
    let web = track("x", json!({}));
    assert_eq!(mapped(&m, &web)["action_source"], "website");
}

#[test]
fn event_time_comes_from_the_first_present_source() {
    let m = mapper("");
    let message = without(track("x", json!({})), "/timestamp");
    let message = with(message, "/originalTimestamp", json!("2024-06-15T11:00:00Z"));
    let message = with(message, "/sentAt", json!("garbage is ignored"));
    assert_eq!(mapped(&m, &message)["event_time"], 1718449200);
    let message = without(track("x", json!({})), "/timestamp");
    assert_eq!(mapped(&m, &message)["event_time"], now().timestamp());
}

#[test]
fn unparseable_old_and_future_times_are_rejected() {
    let m = mapper("");
    let message = with(track("x", json!({})), "/timestamp", json!("soon"));
    assert_eq!(
        rejected(&m, &message),
        "timestamp: \"soon\" is not an ISO-8601 time or a Unix timestamp"
    );
    let message = with(
        track("x", json!({})),
        "/timestamp",
        json!("2024-06-01T00:00:00Z"),
    );
    assert!(rejected(&m, &message).contains("older than 7 days"));
    let message = with(
        track("x", json!({})),
        "/timestamp",
        json!("2024-06-15T13:00:00Z"),
    );
    assert!(rejected(&m, &message).contains("3600 s in the future"));
    let message = with(
        track("x", json!({})),
        "/timestamp",
        json!("2024-06-15T12:00:30Z"),
    );
    assert_eq!(mapped(&m, &message)["event_time"], now().timestamp());
}

#[test]
fn physical_store_events_may_be_62_days_old() {
    let m = mapper("action_source = \"physical_store\"");
    let message = with(
        track("x", json!({})),
        "/timestamp",
        json!("2024-05-01T00:00:00Z"),
    );
    assert!(run(&m, &message).is_ok());
    let message = with(
        track("x", json!({})),
        "/timestamp",
        json!("2024-04-01T00:00:00Z"),
    );
    assert!(rejected(&m, &message).contains("older than 62 days"));
}

#[test]
fn max_future_secs_setting_widens_the_window() {
    let m = mapper("max_future_secs = 7200");
    let message = with(
        track("x", json!({})),
        "/timestamp",
        json!("2024-06-15T13:00:00Z"),
    );
    assert_eq!(mapped(&m, &message)["event_time"], now().timestamp());
}

#[test]
fn event_id_is_omitted_without_message_id() {
    let event = mapped(&mapper(""), &without(track("x", json!({})), "/messageId"));
    assert!(event.get("event_id").is_none());
    let message = with(track("x", json!({})), "/messageId", json!([1]));
    assert_eq!(
        rejected(&mapper(""), &message),
        "messageId: expected a string, got an array"
    );
}

#[test]
fn event_source_url_falls_back_to_properties_url() {
    let message = without(
        track("x", json!({"url": "https://a.example/"})),
        "/context/page",
    );
    let event = mapped(&mapper(""), &message);
    assert_eq!(event["event_source_url"], "https://a.example/");
    assert!(event.get("custom_data").is_none(), "url never passes");
}

#[test]
fn action_source_comes_from_properties_then_the_setting() {
    let m = mapper("action_source = \"chat\"");
    let event = mapped(&m, &track("x", json!({"action_source": "email"})));
    assert_eq!(event["action_source"], "email");
    assert!(event.get("custom_data").is_none());
    let event = mapped(&m, &track("x", json!({"actionSource": "other"})));
    assert_eq!(event["action_source"], "other");
    assert_eq!(mapped(&m, &track("x", json!({})))["action_source"], "chat");
    assert!(
        rejected(&m, &track("x", json!({"action_source": "web"}))).starts_with(
            "properties.action_source: \"web\" is not a Meta action source (one of email, website,"
        )
    );
}

#[test]
fn website_events_need_user_agent_and_url() {
    let m = mapper("");
    let message = without(track("x", json!({})), "/context/userAgent");
    let reason = rejected(&m, &message);
    assert!(reason.starts_with("action_source: website events need client_user_agent and event_source_url, and this one has no context.userAgent"), "{reason}");
    assert!(reason.contains("system_generated"));
    let message = without(track("x", json!({})), "/context/page");
    assert!(rejected(&m, &message).contains("has no context.page.url"));
    let server = mapper("action_source = \"system_generated\"");
    let message = without(
        without(track("x", json!({})), "/context/page"),
        "/context/userAgent",
    );
    assert_eq!(
        mapped(&server, &message)["action_source"],
        "system_generated"
    );
}

#[test]
fn referrer_url_comes_from_the_page_then_properties_and_is_not_custom_data() {
    let message = with(
        track(
            "x",
            json!({"referrer": "https://b.example/", "plan": "pro"}),
        ),
        "/context/page/referrer",
        json!("https://a.example/"),
    );
    let event = mapped(&mapper(""), &message);
    assert_eq!(event["referrer_url"], "https://a.example/");
    assert_eq!(event["custom_data"], json!({"plan": "pro"}));
    let event = mapped(
        &mapper(""),
        &track("x", json!({"referrer": "https://b.example/"})),
    );
    assert_eq!(event["referrer_url"], "https://b.example/");
    assert!(event.get("custom_data").is_none(), "{event}");
    let event = mapped(&mapper(""), &track("x", json!({})));
    assert!(event.get("referrer_url").is_none());
}

#[test]
fn opt_out_comes_from_properties_then_context_then_the_setting() {
    let event = mapped(
        &mapper(""),
        &track("x", json!({"opt_out": true, "plan": "pro"})),
    );
    assert_eq!(event["opt_out"], true);
    assert_eq!(
        event["custom_data"],
        json!({"plan": "pro"}),
        "never custom data"
    );
    let message = with(track("x", json!({})), "/context/opt_out", json!(true));
    assert_eq!(mapped(&mapper(""), &message)["opt_out"], true);
    let message = with(
        track("x", json!({"opt_out": false})),
        "/context/opt_out",
        json!(true),
    );
    assert!(
        mapped(&mapper(""), &message).get("opt_out").is_none(),
        "properties first"
    );
    // The setting opts every event out, whatever the event says.
    let all = mapper("opt_out = true");
    assert_eq!(mapped(&all, &track("x", json!({})))["opt_out"], true);
    assert_eq!(
        mapped(&all, &track("x", json!({"opt_out": false})))["opt_out"],
        true
    );
    assert!(
        mapped(&mapper(""), &track("x", json!({})))
            .get("opt_out")
            .is_none()
    );
    assert_eq!(
        rejected(&mapper(""), &track("x", json!({"opt_out": "yes"}))),
        "properties.opt_out: expected true or false, got a string"
    );
}

// ---- §3 event name ----

#[test]
fn standard_events_setting_renames() {
    let m = mapper(r#"standard_events = { "Signed Up" = "CompleteRegistration" }"#);
    let event = mapped(&m, &track("signed_up", json!({"plan": "pro"})));
    assert_eq!(event["event_name"], "CompleteRegistration");
    assert_eq!(event["custom_data"], json!({"plan": "pro"}));
}

#[test]
fn custom_names_over_50_characters_are_rejected() {
    let m = mapper("");
    let fifty = "x".repeat(50);
    assert_eq!(mapped(&m, &track(&fifty, json!({})))["event_name"], fifty);
    let reason = rejected(&m, &track(&"é".repeat(51), json!({})));
    assert!(
        reason.starts_with(
            "event: custom event names are limited to 50 characters by Meta and this one has 51"
        ),
        "{reason}"
    );
}

// ---- §4 user_data ----

#[test]
fn email_is_normalized_and_hashed_as_meta_documents() {
    let message = with(
        track("x", json!({})),
        "/context/traits",
        json!({"email": "     John_Smith@gmail.com    "}),
    );
    let event = mapped(&mapper(""), &message);
    assert_eq!(
        event["user_data"]["em"],
        json!(["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"])
    );
}

#[test]
fn every_trait_is_hashed_from_context_traits_then_traits() {
    let message = with(
        track("x", json!({})),
        "/context/traits",
        json!({
            "Email": "A@B.co",
            "phone": 16505551234u64,
            "first_name": "Ada",
            "LASTNAME": "Lovelace",
            "gender": "Female",
            "birthday": "1990-12-31",
            "address": {"city": "San Francisco", "state": "California", "postalCode": "94105-1234", "country": "United States"}
        }),
    );
    let message = with(
        message,
        "/traits",
        json!({"email": "ignored@b.co", "city": "Ignored"}),
    );
    let user = mapped(&mapper(""), &message)["user_data"].clone();
    assert_eq!(user["em"], json!([sha("a@b.co")]));
    assert_eq!(user["ph"], json!([sha("16505551234")]));
    assert_eq!(user["fn"], json!([sha("ada")]));
    assert_eq!(user["ln"], json!([sha("lovelace")]));
    assert_eq!(user["ge"], json!([sha("f")]));
    assert_eq!(user["db"], json!([sha("19901231")]));
    assert_eq!(user["ct"], json!([sha("sanfrancisco")]));
    assert_eq!(user["st"], json!([sha("ca")]));
    assert_eq!(user["zp"], json!([sha("94105")]));
    assert_eq!(user["country"], json!([sha("us")]));
}

#[test]
fn address_fields_follow_their_lookup_order() {
    // context.traits.address.X, context.traits.X, traits.address.X, traits.X
    let message = with(
        track("x", json!({})),
        "/context/traits",
        json!({"city": "Second"}),
    );
    let message = with(
        message,
        "/traits",
        json!({"address": {"city": "Third", "zip": "ABC 12"}, "city": "Fourth", "country": "DE"}),
    );
    let user = mapped(&mapper(""), &message)["user_data"].clone();
    assert_eq!(user["ct"], json!([sha("second")]));
    assert_eq!(user["zp"], json!([sha("abc12")]));
    assert_eq!(user["country"], json!([sha("de")]));
}

#[test]
fn us_zip_codes_keep_five_characters() {
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"zipCode": "941051234", "country": "USA"}),
    );
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["zp"],
        json!([sha("94105")])
    );
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"zipCode": "941051234"}),
    );
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["zp"],
        json!([sha("941051234")])
    );
}

#[test]
fn null_trait_counts_as_absent() {
    let message = with(
        track("x", json!({})),
        "/context/traits",
        json!({"email": null}),
    );
    let message = with(message, "/traits", json!({"email": "second@b.co"}));
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["em"],
        json!([sha("second@b.co")])
    );
}

#[test]
fn array_traits_hash_each_value_once() {
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"email": ["a@b.co", " A@B.CO ", "c@d.co", null]}),
    );
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["em"],
        json!([sha("a@b.co"), sha("c@d.co")])
    );
}

#[test]
fn name_fills_only_the_missing_part() {
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"name": "Ada Byron King"}),
    );
    let user = mapped(&mapper(""), &message)["user_data"].clone();
    assert_eq!(user["fn"], json!([sha("ada")]));
    assert_eq!(user["ln"], json!([sha("byronking")]));
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"name": "Ada Lovelace", "lastName": "King"}),
    );
    let user = mapped(&mapper(""), &message)["user_data"].clone();
    assert_eq!(user["fn"], json!([sha("ada")]));
    assert_eq!(user["ln"], json!([sha("king")]));
    let message = with(track("x", json!({})), "/traits", json!({"name": "Cher"}));
    let user = mapped(&mapper(""), &message)["user_data"].clone();
    assert_eq!(user["fn"], json!([sha("cher")]));
    assert!(user.get("ln").is_none());
}

#[test]
fn already_hashed_values_pass_through() {
    let hashed = sha("a@b.co").to_uppercase();
    let message = with(track("x", json!({})), "/traits", json!({"email": hashed}));
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["em"],
        json!([sha("a@b.co")])
    );
}

#[test]
fn dropped_values_are_counted_per_field() {
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"email": "not-an-email", "gender": "x", "birthday": "1990-02-30", "phone": ["+1 650 555 1234", "n/a"]}),
    );
    let message = with(message, "/context/ip", json!("999.1.1.1"));
    let (result, notes) = run_with_notes(&mapper(""), &message);
    let user = result.unwrap()["user_data"].clone();
    assert!(user.get("em").is_none() && user.get("ge").is_none() && user.get("db").is_none());
    assert!(user.get("client_ip_address").is_none());
    assert_eq!(user["ph"], json!([sha("16505551234")]));
    let counts: Vec<_> = notes.dropped.iter().collect();
    assert_eq!(
        counts,
        vec![
            ("em", 1),
            ("ph", 1),
            ("ge", 1),
            ("db", 1),
            ("client_ip_address", 1)
        ]
    );
}

#[test]
fn phone_country_adds_the_calling_code() {
    let message = with(
        track("x", json!({})),
        "/traits",
        json!({"phone": "(650) 555-1234"}),
    );
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["ph"],
        json!([sha("6505551234")])
    );
    assert_eq!(
        mapped(&mapper("phone_country = \"US\""), &message)["user_data"]["ph"],
        json!([sha("16505551234")])
    );
}

#[test]
fn external_id_comes_from_the_setting_then_user_id_then_anonymous_id() {
    let message = with(track("x", json!({})), "/userId", json!(" User 42 "));
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["external_id"],
        json!([sha("user42")])
    );
    let m = mapper("external_id_field = \"context.traits.crm_id\"");
    let with_crm = with(message.clone(), "/context/traits", json!({"crm_id": 1234}));
    assert_eq!(
        mapped(&m, &with_crm)["user_data"]["external_id"],
        json!([sha("1234")])
    );
    // The configured path is absent: fall back to userId.
    assert_eq!(
        mapped(&m, &message)["user_data"]["external_id"],
        json!([sha("user42")])
    );
}

#[test]
fn external_id_can_stay_unhashed() {
    let m = mapper("hash_external_id = false");
    let message = with(track("x", json!({})), "/userId", json!(" User 42 "));
    assert_eq!(
        mapped(&m, &message)["user_data"]["external_id"],
        json!(["user42"])
    );
    let message = with(track("x", json!({})), "/userId", json!(42));
    assert_eq!(
        mapped(&m, &message)["user_data"]["external_id"],
        json!(["42"])
    );
}

#[test]
fn fbp_and_fbc_come_from_properties_then_context() {
    let message = with(
        track("x", json!({"fbp": "fb.1.1.p", "fbc": "fb.1.1.c"})),
        "/context/fbp",
        json!("fb.1.2.ctx"),
    );
    let event = mapped(&mapper(""), &message);
    assert_eq!(event["user_data"]["fbp"], "fb.1.1.p");
    assert_eq!(event["user_data"]["fbc"], "fb.1.1.c");
    assert!(event.get("custom_data").is_none(), "fbp and fbc never pass");
    let message = with(track("x", json!({})), "/context/fbp", json!("fb.1.2.ctx"));
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["fbp"],
        "fb.1.2.ctx"
    );
}

#[test]
fn fbc_is_built_from_the_page_url_fbclid() {
    let message = with(
        track("x", json!({})),
        "/context/page/url",
        json!("https://shop.example/?fbclid=IwAR123"),
    );
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["fbc"],
        "fb.1.1718452740500.IwAR123"
    );
}

#[test]
fn an_event_without_customer_information_is_rejected() {
    let m = mapper("action_source = \"system_generated\"");
    let message =
        json!({"type": "track", "event": "x", "timestamp": NOW, "traits": {"email": "bad"}});
    assert!(rejected(&m, &message).starts_with("user_data: nothing identifies the customer"));
    // IP without user agent is not enough; with it, it is.
    let message = with(message, "/context/ip", json!("203.0.113.9"));
    assert!(rejected(&m, &message).starts_with("user_data:"));
    let message = with(message, "/context/userAgent", json!("curl"));
    assert!(run(&m, &message).is_ok());
}

#[test]
fn fbc_keeps_the_click_time_in_milliseconds_when_event_time_is_clamped() {
    // Stamped 123 ms ahead of the clock: event_time is clamped to now, fbc keeps …123.
    let message = with(
        with(
            track("x", json!({})),
            "/timestamp",
            json!("2024-06-15T12:00:00.123Z"),
        ),
        "/context/page/url",
        json!("https://shop.example/?fbclid=IwAR123"),
    );
    let event = mapped(&mapper(""), &message);
    assert_eq!(event["event_time"], 1718452800);
    assert_eq!(event["user_data"]["fbc"], "fb.1.1718452800123.IwAR123");
}

#[test]
fn unhashed_ids_come_from_traits_then_properties_in_either_spelling() {
    let message = json!({
        "type": "track", "event": "Lead", "timestamp": NOW, "messageId": "m",
        "context": {"traits": {"leadId": 1234567890123456_u64}},
        "traits": {"subscription_id": "sub-9", "lead_id": "ignored: context.traits first"},
        "properties": {"fbLoginId": "4455", "subscriptionId": "ignored: traits first", "plan": "pro"}
    });
    let m = mapper("action_source = \"system_generated\"");
    let event = mapped(&m, &message);
    let user = &event["user_data"];
    assert_eq!(
        user["lead_id"], "1234567890123456",
        "sent as text, unhashed"
    );
    assert_eq!(user["subscription_id"], "sub-9");
    assert_eq!(user["fb_login_id"], "4455");
    assert_eq!(
        event["custom_data"],
        json!({"plan": "pro", "event_source": "crm"}),
        "ids are not custom data; a lead's stage is a CRM event"
    );
    // Each is enough customer information on its own.
    for (key, value) in [
        ("lead_id", "1"),
        ("subscription_id", "s"),
        ("fb_login_id", "2"),
    ] {
        let message =
            json!({"type": "track", "event": "x", "timestamp": NOW, "properties": {key: value}});
        let event = mapped(&m, &message);
        assert_eq!(event["user_data"], json!({key: value}), "{key}");
    }
}

#[test]
fn madid_and_anon_id_are_sent_for_app_events_only() {
    let message = json!({
        "type": "track", "event": "x", "timestamp": NOW,
        "context": {"device": {"advertisingId": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "adTrackingEnabled": true},
                    "os": {"name": "iOS", "version": "17.4"}},
        "properties": {"anon_id": "install-1", "action_source": "app"}
    });
    let event = mapped(&mapper(""), &message);
    assert_eq!(
        event["user_data"]["madid"],
        "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    );
    assert_eq!(event["user_data"]["anon_id"], "install-1");
    assert!(event.get("custom_data").is_none(), "{event}");
    // Tracking refused, or iOS's zeroed id: no madid.
    for (pointer, value) in [
        ("/context/device/adTrackingEnabled", json!(false)),
        (
            "/context/device/advertisingId",
            json!("00000000-0000-0000-0000-000000000000"),
        ),
    ] {
        let event = mapped(&mapper(""), &with(message.clone(), pointer, value));
        assert!(event["user_data"].get("madid").is_none(), "{pointer}");
    }
    // Not an app event: neither is sent.
    let web = with(
        message,
        "/properties/action_source",
        json!("system_generated"),
    );
    let web = with(web, "/userId", json!("u-1"));
    let event = mapped(&mapper(""), &web);
    assert!(event["user_data"].get("madid").is_none());
    assert!(event["user_data"].get("anon_id").is_none());
}

// ---- §5 custom_data ----

#[test]
fn product_viewed_and_added() {
    let properties = json!({
        "product_id": "sku-1", "sku": "ignored", "name": "Shoe", "category": "Shoes",
        "price": "$49.90", "quantity": "2", "currency": "eur", "brand": "Acme", "value": 99
    });
    for (event, name) in [
        ("Product Viewed", "ViewContent"),
        ("Product Added", "AddToCart"),
    ] {
        let out = mapped(&mapper(""), &track(event, properties.clone()));
        assert_eq!(out["event_name"], name);
        assert_eq!(
            out["custom_data"],
            json!({
                "value": 49.9, "currency": "EUR", "content_ids": ["sku-1"],
                "contents": [{"id": "sku-1", "quantity": 2, "item_price": 49.9}],
                "content_type": "product", "content_name": "Shoe", "content_category": "Shoes",
                "brand": "Acme"
            })
        );
    }
}

#[test]
fn value_field_setting_picks_value_instead_of_price() {
    let properties = json!({"product_id": 7, "price": 10, "value": 25});
    let out = mapped(
        &mapper("value_field = \"value\""),
        &track("Product Viewed", properties),
    );
    assert_eq!(out["custom_data"]["value"], 25);
    assert_eq!(
        out["custom_data"]["contents"],
        json!([{"id": "7", "quantity": 1, "item_price": 10}])
    );
    assert_eq!(out["custom_data"]["currency"], "USD");
}

#[test]
fn product_without_an_id_has_no_contents() {
    let out = mapped(
        &mapper(""),
        &track(
            "Product Viewed",
            json!({"product_id": "", "id": null, "name": "Shoe"}),
        ),
    );
    assert_eq!(
        out["custom_data"],
        json!({"content_type": "product", "content_name": "Shoe"})
    );
}

#[test]
fn product_list_viewed() {
    let m = mapper(r#"content_types = { "Hotels" = "hotel" }"#);
    let out = mapped(
        &m,
        &track(
            "Product List Viewed",
            json!({
                "list_id": "l1", "category": "Hotels",
                "products": [{"product_id": "a", "quantity": 3, "price": 5}, {"sku": "b"}, {"name": "no id"}, "junk"]
            }),
        ),
    );
    assert_eq!(
        out["custom_data"],
        json!({
            "content_ids": ["a", "b"],
            "contents": [{"id": "a", "quantity": 3}, {"id": "b", "quantity": 1}],
            "content_type": "hotel", "list_id": "l1"
        })
    );
    let out = mapped(
        &m,
        &track(
            "Product List Viewed",
            json!({"category": "Shoes", "products": []}),
        ),
    );
    assert_eq!(
        out["custom_data"],
        json!({"content_ids": ["Shoes"], "content_type": "product_group"})
    );
    let out = mapped(&m, &track("Product List Viewed", json!({})));
    assert_eq!(out["custom_data"], json!({"content_type": "product_group"}));
}

#[test]
fn order_completed() {
    let out = mapped(
        &mapper(""),
        &track(
            "Order Completed",
            json!({
                "order_id": 1001, "total": 30, "revenue": "25.00", "shipping": 5, "currency": "USD",
                "coupon": "SUMMER",
                "products": [
                    {"product_id": "p1", "quantity": 2, "price": 10, "category": "Games"},
                    {"product_id": "p2", "price": "5.00"}
                ]
            }),
        ),
    );
    assert_eq!(out["event_name"], "Purchase");
    assert_eq!(
        out["custom_data"],
        json!({
            "value": 25.0, "currency": "USD", "content_ids": ["p1", "p2"],
            "contents": [{"id": "p1", "quantity": 2, "item_price": 10}, {"id": "p2", "quantity": 1, "item_price": 5.0}],
            "content_type": "product", "num_items": 2, "order_id": "1001",
            "shipping": 5, "coupon": "SUMMER"
        })
    );
}

#[test]
fn order_completed_value_is_revenue_else_total_else_value() {
    let m = mapper("");
    let value =
        |props: Value| mapped(&m, &track("Order Completed", props))["custom_data"]["value"].clone();
    assert_eq!(value(json!({"total": 30, "value": 40})), json!(30));
    assert_eq!(value(json!({"value": 40})), json!(40));
    assert_eq!(value(json!({"revenue": null, "total": 30})), json!(30));
}

#[test]
fn purchase_without_value_is_sent_with_zero_and_counted() {
    let (out, notes) = run_with_notes(
        &mapper(""),
        &track("Order Completed", json!({"order_id": "o"})),
    );
    let out = out.unwrap();
    assert_eq!(out["custom_data"]["value"], 0);
    assert_eq!(out["custom_data"]["currency"], "USD");
    assert!(notes.purchase_value_defaulted);
    let (_, notes) = run_with_notes(
        &mapper(""),
        &track("Order Completed", json!({"revenue": 1})),
    );
    assert!(!notes.purchase_value_defaulted);
}

#[test]
fn checkout_started_uses_revenue_only_and_a_category() {
    let out = mapped(
        &mapper(r#"content_types = { "Games" = "vehicle" }"#),
        &track(
            "Checkout Started",
            json!({
                "order_id": "o1", "total": 30, "value": 3,
                "products": [{"product_id": "p1", "category": "Games"}]
            }),
        ),
    );
    assert_eq!(out["event_name"], "InitiateCheckout");
    assert_eq!(
        out["custom_data"],
        json!({
            "content_ids": ["p1"], "contents": [{"id": "p1", "quantity": 1}],
            "content_type": "vehicle", "content_category": "Games", "num_items": 1, "order_id": "o1",
            "total": 30, "value": 3, "currency": "USD"
        })
    );
}

#[test]
fn products_searched() {
    let out = mapped(
        &mapper(""),
        &track(
            "Products Searched",
            json!({"query": "blue shoes", "page": 2}),
        ),
    );
    assert_eq!(out["event_name"], "Search");
    assert_eq!(
        out["custom_data"],
        json!({"search_string": "blue shoes", "page": 2})
    );
}

#[test]
fn custom_events_take_revenue_as_value() {
    let out = mapped(
        &mapper(""),
        &track(
            "Subscription Renewed",
            json!({"revenue": 9.99, "currency": "GBP", "plan": "pro"}),
        ),
    );
    assert_eq!(
        out["custom_data"],
        json!({"value": 9.99, "currency": "GBP", "plan": "pro"})
    );
    let out = mapped(
        &mapper(""),
        &track(
            "Subscription Renewed",
            json!({"value": 3, "content_ids": ["x"]}),
        ),
    );
    assert_eq!(
        out["custom_data"],
        json!({"value": 3, "content_ids": ["x"], "currency": "USD"}),
        "not computed, so passed through"
    );
}

#[test]
fn computed_keys_win_over_passed_through_ones() {
    let out = mapped(
        &mapper(""),
        &track(
            "Order Completed",
            json!({"revenue": 5, "num_items": 99, "content_type": "x"}),
        ),
    );
    // No products: num_items is not computed, so the sender's passes through.
    assert_eq!(out["custom_data"]["num_items"], 99);
    assert_eq!(out["custom_data"]["content_type"], "product");
    let out = mapped(
        &mapper(""),
        &track(
            "Order Completed",
            json!({"revenue": 5, "products": [], "num_items": 99}),
        ),
    );
    assert_eq!(out["custom_data"]["num_items"], 0);
}

#[test]
fn content_types_match_the_category_exactly() {
    let m = mapper(r#"content_types = { "Hotels" = "hotel" }"#);
    let out = mapped(
        &m,
        &track(
            "Product Viewed",
            json!({"product_id": "h", "category": "Hotels"}),
        ),
    );
    assert_eq!(out["custom_data"]["content_type"], "hotel");
    let out = mapped(
        &m,
        &track(
            "Product Viewed",
            json!({"product_id": "h", "category": "hotels"}),
        ),
    );
    assert_eq!(out["custom_data"]["content_type"], "product");
}

#[test]
fn unreadable_money_is_rejected_naming_the_field() {
    let m = mapper("");
    assert_eq!(
        rejected(&m, &track("Order Completed", json!({"revenue": "abc"}))),
        "properties.revenue: \"abc\" is not a number"
    );
    assert_eq!(
        rejected(&m, &track("Product Viewed", json!({"price": true}))),
        "properties.price: true is not a number"
    );
    assert_eq!(
        rejected(&m, &track("Thing", json!({"revenue": ""}))),
        "properties.revenue: \"\" is not a number"
    );
}

#[test]
fn unknown_currency_is_rejected() {
    assert_eq!(
        rejected(
            &mapper(""),
            &track("Thing", json!({"revenue": 1, "currency": "BTC"}))
        ),
        "properties.currency: \"BTC\" is not an ISO 4217 currency code"
    );
}

#[test]
fn default_currency_setting_fills_in_when_there_is_a_value() {
    let m = mapper("default_currency = \"eur\"");
    let out = mapped(&m, &track("Thing", json!({"revenue": 1})));
    assert_eq!(out["custom_data"]["currency"], "EUR");
    let out = mapped(&m, &track("Thing", json!({"plan": "a"})));
    assert!(out["custom_data"].get("currency").is_none());
}

#[test]
fn products_must_be_an_array() {
    assert_eq!(
        rejected(
            &mapper(""),
            &track("Order Completed", json!({"products": {"a": 1}}))
        ),
        "properties.products: expected an array of products, got an object"
    );
}

#[test]
fn personal_data_properties_are_dropped_allowed_or_hashed() {
    let props = json!({"Email": "A@B.co", "phone_number": "1", "first_name": "Ada", "city": "Paris", "plan": "pro"});
    let (out, notes) = run_with_notes(&mapper(""), &track("Thing", props.clone()));
    assert_eq!(
        out.unwrap()["custom_data"],
        json!({"phone_number": "1", "plan": "pro"})
    );
    assert_eq!(notes.properties_dropped, 3);
    let m = mapper(
        r#"allow_pii_properties = ["city"]
hash_properties = ["email", "FirstName", "city"]"#,
    );
    let out = mapped(&m, &track("Thing", props));
    assert_eq!(
        out["custom_data"],
        json!({
            "Email": sha("a@b.co"), "phone_number": "1", "first_name": sha("ada"),
            "city": sha("paris"), "plan": "pro"
        })
    );
}

#[test]
fn net_revenue_and_predicted_ltv_are_sent_on_any_event_as_amounts() {
    let event = mapped(
        &mapper(""),
        &track(
            "Order Completed",
            json!({"revenue": 30, "net_revenue": "$12.50", "predicted_ltv": 400}),
        ),
    );
    assert_eq!(event["custom_data"]["net_revenue"], 12.5);
    assert_eq!(event["custom_data"]["predicted_ltv"], 400);
    let event = mapped(
        &mapper(""),
        &track("Subscribed", json!({"predicted_ltv": 90.5})),
    );
    assert_eq!(event["custom_data"]["predicted_ltv"], 90.5);
    assert_eq!(
        rejected(&mapper(""), &track("x", json!({"net_revenue": "lots"}))),
        "properties.net_revenue: \"lots\" is not a number"
    );
}

// ---- §6 Limited Data Use ----

#[test]
fn limited_data_use_setting() {
    let out = mapped(&mapper("limited_data_use = true"), &track("x", json!({})));
    assert_eq!(out["data_processing_options"], json!(["LDU"]));
    assert_eq!(out["data_processing_options_country"], 0);
    assert_eq!(out["data_processing_options_state"], 0);
    let out = mapped(&mapper(""), &track("x", json!({})));
    assert!(out.get("data_processing_options").is_none());
}

#[test]
fn per_event_override_applies_either_way() {
    let message = with(
        track("x", json!({})),
        "/integrations",
        json!({"Facebook Conversions API": {"dataProcessingOptions": [["LDU"], 1, 1000]}}),
    );
    for settings in ["", "limited_data_use = true"] {
        let out = mapped(&mapper(settings), &message);
        assert_eq!(out["data_processing_options"], json!(["LDU"]));
        assert_eq!(out["data_processing_options_country"], 1);
        assert_eq!(out["data_processing_options_state"], 1000);
    }
    let empty = with(
        track("x", json!({})),
        "/integrations",
        json!({"Facebook Pixel Server Side": {"dataProcessingOptions": [[]]}}),
    );
    let out = mapped(&mapper("limited_data_use = true"), &empty);
    assert_eq!(out["data_processing_options"], json!([]));
}

#[test]
fn malformed_override_falls_back_to_the_setting() {
    let message = with(
        track("x", json!({})),
        "/integrations",
        json!({"Facebook Pixel Server Side": {"dataProcessingOptions": ["LDU", "x"]}}),
    );
    let out = mapped(&mapper("limited_data_use = true"), &message);
    assert_eq!(out["data_processing_options_state"], 0);
    let out = mapped(&mapper(""), &message);
    assert!(out.get("data_processing_options").is_none());
}

#[test]
fn rejections_never_contain_trait_values() {
    // Every trait is present but unusable, so the event is rejected for its user_data: the
    // reason must say why without quoting any of them.
    let m = mapper("action_source = \"system_generated\"");
    let message = json!({"type": "track", "event": "x", "timestamp": NOW,
        "traits": {"email": "secret@nowhere", "phone": "no-digits", "gender": "secretive",
                   "ip": "10.0.0.1", "birthday": "secret-day"},
        "context": {"ip": "secret-ip"}});
    let reason = rejected(&m, &message);
    assert!(reason.starts_with("user_data:"), "{reason}");
    for value in ["secret", "nowhere", "no-digits"] {
        assert!(!reason.contains(value), "{reason}");
    }
}

#[test]
fn ldu_country_and_state_settings_fix_the_state() {
    let m = mapper("limited_data_use = true\nldu_country = 1\nldu_state = 1000");
    let out = mapped(&m, &track("x", json!({})));
    assert_eq!(out["data_processing_options"], json!(["LDU"]));
    assert_eq!(out["data_processing_options_country"], 1);
    assert_eq!(out["data_processing_options_state"], 1000);
}

// ---- beyond the web: app, CRM, business messaging, value updates (issue 14) ----

fn app_track() -> Value {
    json!({
        "type": "track", "event": "Level Up", "anonymousId": "a-1", "timestamp": NOW,
        "context": {
            "app": {"name": "Shop", "version": "2.1", "build": "210", "namespace": "com.shop"},
            "device": {"model": "Pixel 8", "adTrackingEnabled": false, "advertisingId": "aaid-1"},
            "os": {"name": "Android", "version": "14"},
            "screen": {"width": 1080, "height": 2400, "density": 2.75},
            "network": {"carrier": "T-Mobile"},
            "locale": "de-DE", "timezone": "Europe/Berlin"
        }
    })
}

#[test]
fn app_events_carry_app_data_with_sixteen_extinfo_strings() {
    let m = mapper("app_action_source = true");
    let event = mapped(&m, &app_track());
    assert_eq!(event["action_source"], "app");
    assert_eq!(
        event["app_data"],
        json!({
            "advertiser_tracking_enabled": false,
            "application_tracking_enabled": true,
            "extinfo": ["a2", "com.shop", "210", "2.1", "14", "Pixel 8", "de_DE", "", "T-Mobile",
                        "1080", "2400", "2.75", "", "", "", "Europe/Berlin"]
        })
    );
    assert!(
        event["user_data"].get("madid").is_none(),
        "tracking disabled"
    );
    assert_eq!(
        event["user_data"]["anon_id"], "a-1",
        "the install's anonymousId"
    );
    assert!(event.get("event_source_url").is_none());
    let no_version = without(app_track(), "/context/os/version");
    assert_eq!(
        rejected(&m, &no_version),
        "context.os.version: missing: Meta requires the OS version in an app event's app_data.extinfo"
    );
    let web = track("x", json!({}));
    assert!(
        mapped(&m, &web).get("app_data").is_none(),
        "not an app's message"
    );
}

#[test]
fn crm_stages_of_a_lead_are_conversion_leads_events() {
    let m = mapper("lead_event_source = \"HubSpot\"");
    let stage = json!({
        "type": "track", "event": "Sales Opportunity", "timestamp": NOW,
        "properties": {"lead_id": "123456789012345", "action_source": "system_generated"}
    });
    let event = mapped(&m, &stage);
    assert_eq!(event["event_name"], "Sales Opportunity");
    assert_eq!(event["user_data"], json!({"lead_id": "123456789012345"}));
    assert_eq!(
        event["custom_data"],
        json!({"event_source": "crm", "lead_event_source": "HubSpot"})
    );
    let own = with(stage, "/properties/lead_event_source", json!("Salesforce"));
    assert_eq!(
        mapped(&m, &own)["custom_data"]["lead_event_source"],
        "Salesforce"
    );
}

#[test]
fn business_messaging_events_need_their_channel_and_its_ids() {
    let m = mapper("");
    let whatsapp = json!({
        "type": "track", "event": "Purchase", "timestamp": NOW,
        "properties": {"action_source": "business_messaging", "messaging_channel": "WhatsApp",
                       "ctwa_clid": "ARAk-1", "revenue": 5}
    });
    let event = mapped(&m, &whatsapp);
    assert_eq!(event["messaging_channel"], "whatsapp");
    assert_eq!(event["user_data"], json!({"ctwa_clid": "ARAk-1"}));
    assert_eq!(
        event["custom_data"],
        json!({"value": 5, "currency": "USD"}),
        "ids are not custom data"
    );
    assert_eq!(
        rejected(&m, &without(whatsapp.clone(), "/properties/ctwa_clid")),
        "properties: whatsapp events need ctwa_clid (in properties or context), as Meta matches them by it"
    );
    assert!(
        rejected(
            &m,
            &without(whatsapp.clone(), "/properties/messaging_channel")
        )
        .starts_with("properties.messaging_channel: missing")
    );
    assert_eq!(
        rejected(
            &m,
            &with(whatsapp, "/properties/messaging_channel", json!("sms"))
        ),
        "properties.messaging_channel: \"sms\" is not a Meta messaging channel (whatsapp, messenger or instagram)"
    );
    let messenger = json!({
        "type": "track", "event": "Lead", "timestamp": NOW,
        "context": {"messagingChannel": "messenger", "pageId": "77", "page_scoped_user_id": 8899},
        "properties": {"action_source": "business_messaging"}
    });
    let event = mapped(&m, &messenger);
    assert_eq!(
        event["user_data"],
        json!({"page_id": "77", "page_scoped_user_id": "8899"})
    );
}

#[test]
fn append_value_names_its_conversion_within_metas_rules() {
    let m = mapper(
        "standard_events = { \"LTV Predicted\" = \"AppendValue\" }\naction_source = \"system_generated\"",
    );
    let update = json!({
        "type": "track", "event": "LTV Predicted", "userId": "u-1", "timestamp": NOW,
        "properties": {"order_id": "o-1", "original_event_name": "Purchase",
                       "original_event_time": "2024-06-14T12:00:00Z", "original_event_id": "m-0",
                       "predicted_ltv": "$250"}
    });
    let event = mapped(&m, &update);
    assert_eq!(event["event_name"], "AppendValue");
    assert_eq!(
        event["original_event_data"],
        json!({"event_name": "Purchase", "event_time": 1718366400, "order_id": "o-1", "event_id": "m-0"})
    );
    assert_eq!(event["custom_data"]["predicted_ltv"], 250);
    assert_eq!(event["custom_data"]["currency"], "USD");
    assert!(event["custom_data"].get("original_event_name").is_none());
    for (pointer, value, reason) in [
        (
            "/properties/predicted_ltv",
            json!(-3),
            "properties.predicted_ltv: an AppendValue event carries",
        ),
        (
            "/properties/original_event_time",
            json!("2024-06-15T13:00:00Z"),
            "timestamp: an AppendValue must be later",
        ),
        (
            "/properties/original_event_time",
            json!("2024-06-01T12:00:00Z"),
            "timestamp: the conversion was sent 14 days ago",
        ),
    ] {
        let r = rejected(&m, &with(update.clone(), pointer, value));
        assert!(r.starts_with(reason), "{pointer}: {r}");
    }
    let app = with(update.clone(), "/properties/action_source", json!("app"));
    assert!(rejected(&m, &app).starts_with("action_source: Meta's predicted lifetime value"));
    let unnamed = without(
        without(update, "/properties/order_id"),
        "/properties/original_event_id",
    );
    assert!(rejected(&m, &unnamed).starts_with("properties.order_id: missing"));
}

// ---- found in review ----

#[test]
fn messages_that_are_not_sent_are_skipped_whatever_they_carry() {
    let identify = json!({"type": "identify", "userId": "u1", "traits": "oops"});
    assert!(skipped(&mapper(""), &identify).contains("identify"));
    let page = json!({"type": "page", "anonymousId": "a", "properties": "x"});
    assert_eq!(
        skipped(&mapper(""), &page),
        "page calls are sent only with page_view = true"
    );
    let off = with(
        with(track("x", json!({})), "/properties", json!(7)),
        "/integrations",
        json!({"All": false}),
    );
    assert!(skipped(&mapper(""), &off).contains("integrations"));
}

#[test]
fn blank_identifiers_and_non_text_traits_fall_through_to_the_next_source() {
    let message = with(track("x", json!({})), "/userId", json!(" "));
    assert_eq!(
        mapped(&mapper(""), &message)["user_data"]["external_id"],
        json!([sha("anon-1")])
    );
    let message = with(
        track("x", json!({})),
        "/context/traits",
        json!({"email": true, "firstName": false}),
    );
    let message = with(
        message,
        "/traits",
        json!({"email": "a@b.co", "name": "Ada Lovelace"}),
    );
    let user = mapped(&mapper(""), &message)["user_data"].clone();
    assert_eq!(user["em"], json!([sha("a@b.co")]));
    assert_eq!(user["fn"], json!([sha("ada")]));
}

#[test]
fn a_custom_event_mapped_to_purchase_keeps_its_value() {
    let m = mapper(r#"standard_events = { "Signed Up" = "Purchase" }"#);
    let (out, notes) = run_with_notes(&m, &track("Signed Up", json!({"value": "9.99"})));
    assert_eq!(
        out.unwrap()["custom_data"],
        json!({"value": 9.99, "currency": "USD"})
    );
    assert!(!notes.purchase_value_defaulted);
    assert_eq!(
        rejected(&m, &track("Signed Up", json!({"value": "lots"}))),
        "properties.value: \"lots\" is not a number"
    );
}

#[test]
fn a_passed_through_value_gets_the_default_currency() {
    let out = mapped(&mapper(""), &track("Quote Sent", json!({"value": 12})));
    assert_eq!(out["custom_data"], json!({"currency": "USD", "value": 12}));
}

#[test]
fn a_blank_page_url_falls_back_to_properties_url() {
    let message = with(
        track("x", json!({"url": "https://x.example/q"})),
        "/context/page/url",
        json!(""),
    );
    assert_eq!(
        mapped(&mapper(""), &message)["event_source_url"],
        "https://x.example/q"
    );
}

#[test]
fn hashed_zip_properties_follow_the_us_rule() {
    let m = mapper(r#"hash_properties = ["zip"]"#);
    let message = with(
        track("x", json!({"zip": "941071234"})),
        "/traits",
        json!({"country": "US"}),
    );
    assert_eq!(
        mapped(&m, &message)["custom_data"]["zip"],
        json!(sha("94107"))
    );
}

#[test]
fn blank_categories_and_non_object_first_products_give_no_category() {
    let out = mapped(
        &mapper(""),
        &track("Product List Viewed", json!({"category": " "})),
    );
    assert_eq!(out["custom_data"], json!({"content_type": "product_group"}));
    let m = mapper(r#"content_types = { "Games" = "vehicle" }"#);
    let out = mapped(
        &m,
        &track(
            "Checkout Started",
            json!({"products": ["junk", {"product_id": "p", "category": "Games"}]}),
        ),
    );
    assert_eq!(out["custom_data"]["content_type"], "product");
    assert!(out["custom_data"].get("content_category").is_none());
}
