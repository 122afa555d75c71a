//! The strict Graph API stand-in (`support::graph`, [`GraphStandin::strict`]) holds events to
//! Meta's rules for app events, business messaging and value updates (issue 14): every rule is
//! shown here refusing an event that breaks it and passing one that keeps it, first on events
//! written by hand, then over HTTP, then on what `fbpixel map` makes of Segment's mobile
//! libraries' messages (`tests/data/segment-mobile/`).
//!
//! The malformed events are each a good one with one change, so a refusal can only come from
//! that change, and each case names the parameter the refusal must name: a check that refused
//! for the wrong reason would pass a looser test.

use crate::support;
use crate::support::graph::{self, GraphStandin, INVALID_PARAMETER_SUBCODE, STRICT_TRACE};

use serde_json::{Value, json};

fn ios_extinfo() -> Value {
    json!([
        "i2",
        "com.acme.shop",
        "4.12.0",
        "4120",
        "17.4.1",
        "iPhone16,1",
        "en_US",
        "EST",
        "",
        "393",
        "852",
        "",
        "",
        "",
        "",
        "America/New_York"
    ])
}

/// An iOS app's purchase, as Meta's app-events guide shows one.
fn app_event() -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": 1773512527,
        "event_id": "B7D3A1E9-4C2F-4E8B-9A6D-5F0C1E3B7A92",
        "action_source": "app",
        "user_data": {
            "madid": "A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF",
            "anon_id": "3E5F9C2A-8B14-4D6E-A7F0-1C9B2D4E6F80"
        },
        "app_data": {
            "advertiser_tracking_enabled": true,
            "application_tracking_enabled": true,
            "extinfo": ios_extinfo()
        },
        "custom_data": {"value": 22.5, "currency": "USD"}
    })
}

fn messaging_event(channel: &str, ids: Value) -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": 1773512527,
        "action_source": "business_messaging",
        "messaging_channel": channel,
        "user_data": ids,
        "custom_data": {"value": 40, "currency": "BRL"}
    })
}

fn whatsapp_event() -> Value {
    messaging_event(
        "whatsapp",
        json!({"ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a"}),
    )
}

fn messenger_event() -> Value {
    messaging_event(
        "messenger",
        json!({"page_id": "104757145342346", "page_scoped_user_id": "6254383024660171"}),
    )
}

fn instagram_event() -> Value {
    messaging_event(
        "instagram",
        json!({"ig_account_id": "17841400008460056", "ig_sid": "1386349668790346"}),
    )
}

/// A value update of an order sent earlier, from the web.
fn append_value_event() -> Value {
    json!({
        "event_name": "AppendValue",
        "event_time": 1773512527,
        "action_source": "website",
        "event_source_url": "https://shop.example/account",
        "user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"},
        "original_event_data": {"event_name": "Purchase", "order_id": "ord-1"},
        "custom_data": {"predicted_ltv": 120.5, "currency": "USD"}
    })
}

/// `event` with the value at `pointer` replaced (`Some`) or removed (`None`).
fn changed(mut event: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = event
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{pointer}: no parent"));
    match (parent, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key)
                .unwrap_or_else(|| panic!("{pointer}: nothing to remove"));
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        (other, _) => panic!("{pointer}: {other} holds nothing"),
    }
    event
}

/// Makes a good event, for a case to change.
type Good = fn() -> Value;

fn assert_accepted(what: &str, event: &Value) {
    if let Err(invalid) = graph::check_event(event) {
        panic!("{what} was refused: {invalid:?}\n{event:#}");
    }
}

fn assert_refused(what: &str, event: &Value, parameter: &str) {
    match graph::check_event(event) {
        Ok(()) => panic!("{what} was accepted\n{event:#}"),
        Err(invalid) => assert_eq!(invalid.parameter, parameter, "{what}: {invalid:?}"),
    }
}

#[test]
fn app_events_keep_metas_app_data_rules() {
    assert_accepted("an iOS app event", &app_event());
    let mut android = ios_extinfo();
    android[0] = json!("a2");
    android[4] = json!("14");
    assert_accepted(
        "an Android app event",
        &changed(app_event(), "/app_data/extinfo", Some(android)),
    );
    // Meta's own examples send the flags as 1 and 0.
    let numeric = changed(
        app_event(),
        "/app_data/advertiser_tracking_enabled",
        Some(json!(0)),
    );
    let numeric = changed(
        numeric,
        "/app_data/application_tracking_enabled",
        Some(json!(1)),
    );
    assert_accepted("flags as 0 and 1", &numeric);
    assert_accepted(
        "tracking refused",
        &changed(
            app_event(),
            "/app_data/advertiser_tracking_enabled",
            Some(json!(false)),
        ),
    );

    let extinfo = "['app_data']['extinfo']";
    let cases: &[(&str, &str, Option<Value>, &str)] = &[
        ("no app_data", "/app_data", None, "['app_data']"),
        (
            "app_data not an object",
            "/app_data",
            Some(json!("i2,com.acme.shop")),
            "['app_data']",
        ),
        (
            "no advertiser_tracking_enabled",
            "/app_data/advertiser_tracking_enabled",
            None,
            "['app_data']['advertiser_tracking_enabled']",
        ),
        (
            "advertiser_tracking_enabled as a string",
            "/app_data/advertiser_tracking_enabled",
            Some(json!("true")),
            "['app_data']['advertiser_tracking_enabled']",
        ),
        (
            "advertiser_tracking_enabled as 2",
            "/app_data/advertiser_tracking_enabled",
            Some(json!(2)),
            "['app_data']['advertiser_tracking_enabled']",
        ),
        (
            "no application_tracking_enabled",
            "/app_data/application_tracking_enabled",
            None,
            "['app_data']['application_tracking_enabled']",
        ),
        (
            "application_tracking_enabled null",
            "/app_data/application_tracking_enabled",
            Some(Value::Null),
            "['app_data']['application_tracking_enabled']",
        ),
        ("no extinfo", "/app_data/extinfo", None, extinfo),
        (
            "extinfo as one comma-separated string",
            "/app_data/extinfo",
            Some(json!(
                "i2,com.acme.shop,4.12.0,4120,17.4.1,iPhone16,1,en_US,EST,,393,852,,,,,America/New_York"
            )),
            extinfo,
        ),
        ("15 extinfo slots", "/app_data/extinfo/15", None, extinfo),
        (
            "no extinfo slots",
            "/app_data/extinfo",
            Some(json!([])),
            extinfo,
        ),
        (
            "a number in an extinfo slot",
            "/app_data/extinfo/9",
            Some(json!(393)),
            "['app_data']['extinfo'][9]",
        ),
        (
            "null for an unknown slot",
            "/app_data/extinfo/8",
            Some(Value::Null),
            "['app_data']['extinfo'][8]",
        ),
        (
            "the platform for the version",
            "/app_data/extinfo/0",
            Some(json!("ios")),
            "['app_data']['extinfo'][0]",
        ),
        (
            "an old extinfo version",
            "/app_data/extinfo/0",
            Some(json!("i1")),
            "['app_data']['extinfo'][0]",
        ),
        (
            "an upper-case version",
            "/app_data/extinfo/0",
            Some(json!("A2")),
            "['app_data']['extinfo'][0]",
        ),
        (
            "no OS version",
            "/app_data/extinfo/4",
            Some(json!("")),
            "['app_data']['extinfo'][4]",
        ),
    ];
    for (what, pointer, value, parameter) in cases {
        assert_refused(
            what,
            &changed(app_event(), pointer, value.clone()),
            parameter,
        );
    }

    let mut long = ios_extinfo();
    long.as_array_mut().unwrap().push(json!(""));
    assert_refused(
        "17 extinfo slots",
        &changed(app_event(), "/app_data/extinfo", Some(long)),
        extinfo,
    );
    // The rules are the app's: the same event from a website needs no app_data.
    let web = changed(app_event(), "/action_source", Some(json!("website")));
    assert_accepted("a website event", &changed(web, "/app_data", None));
}

#[test]
fn business_messaging_events_name_their_channel_and_its_unhashed_ids() {
    assert_accepted("a WhatsApp event", &whatsapp_event());
    assert_accepted("a Messenger event", &messenger_event());
    assert_accepted("an Instagram event", &instagram_event());

    let hashed = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let cases: &[(&str, Good, &str, Option<Value>, &str)] = &[
        (
            "no channel",
            whatsapp_event,
            "/messaging_channel",
            None,
            "['messaging_channel']",
        ),
        (
            "an unknown channel",
            whatsapp_event,
            "/messaging_channel",
            Some(json!("sms")),
            "['messaging_channel']",
        ),
        (
            "a capitalised channel",
            whatsapp_event,
            "/messaging_channel",
            Some(json!("WhatsApp")),
            "['messaging_channel']",
        ),
        (
            "the channel inside user_data",
            messenger_event,
            "/messaging_channel",
            None,
            "['messaging_channel']",
        ),
        (
            "WhatsApp without ctwa_clid",
            whatsapp_event,
            "/user_data/ctwa_clid",
            None,
            "['user_data']['ctwa_clid']",
        ),
        (
            "WhatsApp with an empty ctwa_clid",
            whatsapp_event,
            "/user_data/ctwa_clid",
            Some(json!("")),
            "['user_data']['ctwa_clid']",
        ),
        (
            "a hashed ctwa_clid",
            whatsapp_event,
            "/user_data/ctwa_clid",
            Some(json!(hashed)),
            "['user_data']['ctwa_clid']",
        ),
        (
            "Messenger without page_id",
            messenger_event,
            "/user_data/page_id",
            None,
            "['user_data']['page_id']",
        ),
        (
            "Messenger without page_scoped_user_id",
            messenger_event,
            "/user_data/page_scoped_user_id",
            None,
            "['user_data']['page_scoped_user_id']",
        ),
        (
            "a page_scoped_user_id in an array, as hashed keys are sent",
            messenger_event,
            "/user_data/page_scoped_user_id",
            Some(json!(["6254383024660171"])),
            "['user_data']['page_scoped_user_id']",
        ),
        (
            "a hashed page_scoped_user_id",
            messenger_event,
            "/user_data/page_scoped_user_id",
            Some(json!(hashed)),
            "['user_data']['page_scoped_user_id']",
        ),
        (
            "Instagram without ig_account_id",
            instagram_event,
            "/user_data/ig_account_id",
            None,
            "['user_data']['ig_account_id']",
        ),
        (
            "Instagram without ig_sid",
            instagram_event,
            "/user_data/ig_sid",
            None,
            "['user_data']['ig_sid']",
        ),
        (
            "no user_data",
            instagram_event,
            "/user_data",
            None,
            "['user_data']['ig_account_id']",
        ),
    ];
    for (what, event, pointer, value, parameter) in cases {
        assert_refused(what, &changed(event(), pointer, value.clone()), parameter);
    }
    // Each channel's ids are its own: Messenger's do not make a WhatsApp event.
    assert_refused(
        "WhatsApp with Messenger's ids",
        &changed(
            messenger_event(),
            "/messaging_channel",
            Some(json!("whatsapp")),
        ),
        "['user_data']['ctwa_clid']",
    );
}

#[test]
fn value_updates_name_the_original_event_and_carry_a_predicted_ltv() {
    assert_accepted("an AppendValue by order_id", &append_value_event());
    let by_event_id = changed(append_value_event(), "/original_event_data/order_id", None);
    assert_accepted(
        "an AppendValue by event_id",
        &changed(
            by_event_id,
            "/original_event_data/event_id",
            Some(json!("m-41")),
        ),
    );
    let app_append = changed(app_event(), "/event_name", Some(json!("AppendValue")));
    let app_append = changed(
        app_append,
        "/original_event_data",
        Some(json!({"event_name": "Purchase", "event_id": "m-41"})),
    );
    let app_append = changed(
        app_append,
        "/custom_data",
        Some(json!({"predicted_ltv": 80, "currency": "EUR"})),
    );
    assert_accepted("an app's AppendValue", &app_append);

    let original = "['original_event_data']";
    let cases: &[(&str, &str, Option<Value>, &str)] = &[
        (
            "no original_event_data",
            "/original_event_data",
            None,
            original,
        ),
        (
            "original_event_data as the event id",
            "/original_event_data",
            Some(json!("m-41")),
            original,
        ),
        (
            "no original event_name",
            "/original_event_data/event_name",
            None,
            "['original_event_data']['event_name']",
        ),
        (
            "an empty original event_name",
            "/original_event_data/event_name",
            Some(json!("")),
            "['original_event_data']['event_name']",
        ),
        (
            "neither order_id nor event_id",
            "/original_event_data/order_id",
            None,
            original,
        ),
        (
            "an empty order_id",
            "/original_event_data/order_id",
            Some(json!("")),
            original,
        ),
        (
            "no predicted_ltv",
            "/custom_data/predicted_ltv",
            None,
            "['custom_data']['predicted_ltv']",
        ),
        (
            "a zero predicted_ltv",
            "/custom_data/predicted_ltv",
            Some(json!(0)),
            "['custom_data']['predicted_ltv']",
        ),
        (
            "a negative predicted_ltv",
            "/custom_data/predicted_ltv",
            Some(json!(-5.5)),
            "['custom_data']['predicted_ltv']",
        ),
        (
            "predicted_ltv as a string",
            "/custom_data/predicted_ltv",
            Some(json!("120.5")),
            "['custom_data']['predicted_ltv']",
        ),
        (
            "no custom_data",
            "/custom_data",
            None,
            "['custom_data']['predicted_ltv']",
        ),
        (
            "no currency",
            "/custom_data/currency",
            None,
            "['custom_data']['currency']",
        ),
        (
            "a currency symbol",
            "/custom_data/currency",
            Some(json!("$")),
            "['custom_data']['currency']",
        ),
    ];
    for (what, pointer, value, parameter) in cases {
        assert_refused(
            what,
            &changed(append_value_event(), pointer, value.clone()),
            parameter,
        );
    }
    // The rules of the event's source still hold: an app's AppendValue needs app_data too.
    assert_refused(
        "an app's AppendValue without app_data",
        &changed(app_append, "/app_data", None),
        "['app_data']",
    );
    // A value is not a predicted lifetime value.
    let value_only = changed(
        append_value_event(),
        "/custom_data",
        Some(json!({"value": 120.5, "currency": "USD"})),
    );
    assert_refused(
        "an AppendValue with value, not predicted_ltv",
        &value_only,
        "['custom_data']['predicted_ltv']",
    );
}

fn post_events(graph: &GraphStandin, body: &Value) -> (u16, Value) {
    let response = support::http_request(
        graph.port,
        "POST",
        "/v21.0/1234567890/events",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .expect("the stand-in answers");
    let json = serde_json::from_slice(&response.body).expect("a JSON answer");
    (response.status, json)
}

#[test]
fn the_strict_standin_answers_as_meta_does() {
    let graph = GraphStandin::strict();
    let good = json!({"data": [
        app_event(), whatsapp_event(), messenger_event(), instagram_event(), append_value_event(),
        {"event_name": "Lead", "event_time": 1773512527, "action_source": "system_generated",
         "user_data": {"external_id": ["a1"]}}
    ]});
    assert_eq!(
        post_events(&graph, &good),
        (
            200,
            json!({"events_received": 6, "messages": [], "fbtrace_id": STRICT_TRACE})
        )
    );

    // One bad event refuses the whole request, as Meta does, naming it by its place in `data`.
    let mut bad = good.clone();
    bad["data"][2] = changed(instagram_event(), "/user_data/ig_sid", None);
    bad["data"][4] = changed(app_event(), "/app_data/extinfo/4", Some(json!("")));
    let (status, answer) = post_events(&graph, &bad);
    assert_eq!(status, 400, "{answer}");
    let error = &answer["error"];
    assert_eq!(error["message"], "Invalid parameter");
    assert_eq!(error["type"], "OAuthException");
    assert_eq!(error["code"], 100);
    assert_eq!(error["error_subcode"], INVALID_PARAMETER_SUBCODE);
    assert_eq!(error["is_transient"], false);
    assert_eq!(error["fbtrace_id"], STRICT_TRACE);
    let message = error["error_user_msg"].as_str().unwrap();
    assert!(
        message.starts_with("The parameter $['data'][2]['user_data']['ig_sid'] is required"),
        "{message}"
    );

    let (status, answer) = post_events(&graph, &json!({"events": [app_event()]}));
    assert_eq!(status, 400);
    assert!(
        answer["error"]["error_user_msg"]
            .as_str()
            .unwrap()
            .starts_with("The parameter $['data'] is required"),
        "{answer}"
    );
    let (status, answer) = post_events(&graph, &json!({"data": ["Purchase"]}));
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["error_user_msg"],
        "The parameter $['data'][0] must be an object."
    );

    // The sink's health check reads the pixel.
    let health = support::get(graph.port, "/v21.0/1234567890?fields=id");
    assert_eq!(health.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&health.body).unwrap(),
        json!({"id": "1234567890"})
    );

    let statuses: Vec<u16> = graph.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 400, 400, 400, 200],
        "every request recorded"
    );
}

/// What `fbpixel map` makes of each message of `tests/data/segment-mobile/`, one per line, with
/// apps' messages marked as such and screens sent.
fn map_mobile_fixtures() -> (Vec<String>, Vec<Value>) {
    let dir = support::root().join("tests/data/segment-mobile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut input = String::new();
    let names: Vec<String> = files
        .iter()
        .map(|path| {
            // One message a line: the fixtures are pretty-printed.
            let message: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            input.push_str(&message.to_string());
            input.push('\n');
            path.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    let config = support::temp_file(
        "app-events.toml",
        "[sources.in]\ntype = \"stdin\"\n\n[sinks.fb]\ntype = \"facebook_pixel_server_side\"\ninputs = [\"in\"]\npixel_id = \"1234567890\"\napp_action_source = true\nscreen_events = true\n",
    );
    let output = support::fbpixel(
        &[
            "map",
            "--config",
            config.to_str().unwrap(),
            // Minutes after the fixtures' timestamps.
            "--now",
            "2026-03-14T18:30:00Z",
        ],
        input.as_bytes(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fbpixel map failed: {stderr}");
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        names.len(),
        "every fixture maps to one event; stderr:\n{stderr}"
    );
    (names, events)
}

#[test]
fn segment_mobile_messages_map_to_app_events_meta_accepts() {
    let (names, events) = map_mobile_fixtures();
    for (name, event) in names.iter().zip(&events) {
        // Otherwise the app rules would not apply and the check would pass whatever was sent.
        assert_eq!(event["action_source"], "app", "{name}: {event}");
        if let Err(invalid) = graph::check_event(event) {
            panic!("{name}: {invalid:?}\n{event:#}");
        }
        let extinfo = &event["app_data"]["extinfo"];
        let version = if name.starts_with("android") {
            "a2"
        } else {
            "i2"
        };
        assert_eq!(extinfo[0], version, "{name}: {extinfo}");
    }
    let graph = GraphStandin::strict();
    let (status, answer) = post_events(&graph, &json!({ "data": events }));
    assert_eq!(
        (status, &answer["events_received"]),
        (200, &json!(events.len())),
        "{answer}"
    );
}
