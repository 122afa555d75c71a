//! nats-server alone, with the load the `nats` sink and source put on it: publishes `--messages`
//! messages of `--size` bytes (each with its own `Nats-Msg-Id`, `--inflight` PubAcks
//! outstanding) to a JetStream stream, then pulls them with a durable consumer and acks each one,
//! and prints both rates; with `--server-pid`, also nats-server's CPU seconds per 100,000
//! messages in each phase (from /proc), to tell what nats-server costs per message without
//! fbpixel (scripts/nats-server-bench.sh runs it).
//!
//! ```text
//! cargo run --release --example nats_bench -- --url nats://127.0.0.1:4222 \
//!   [--messages 200000] [--size 700] [--inflight 500] [--pull 500] [--server-pid PID]
//! ```

use std::time::Instant;

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, stream};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (mut url, mut messages, mut size, mut inflight, mut pull_batch) = (
        "nats://127.0.0.1:4222".to_string(),
        200_000usize,
        700usize,
        500usize,
        500usize,
    );
    let mut server_pid = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<usize>().expect("a number");
        match flag.as_str() {
            "--url" => url = value.clone(),
            "--messages" => messages = number(),
            "--size" => size = number(),
            "--inflight" => inflight = number(),
            "--pull" => pull_batch = number(),
            "--server-pid" => server_pid = Some(number()),
            other => panic!("unknown flag {other}"),
        }
    }
    let client = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(inflight + 1)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let _ = js.delete_stream("NATSBENCH").await;
    let stream = js
        .create_stream(stream::Config {
            name: "NATSBENCH".into(),
            subjects: vec!["natsbench.events".into()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
    // A JSON-ish payload of the events' size; unique ids as the sink's messageIds are.
    let payload = bytes::Bytes::from(format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(size.saturating_sub(10))
    ));

    let per_100k = |before: f64| {
        server_pid.map_or(String::new(), |pid| {
            format!(
                "; nats-server {:.3} cpu-s per 100k messages",
                (cpu_secs(pid) - before) * 100_000.0 / messages as f64
            )
        })
    };
    let before = server_pid.map_or(0.0, cpu_secs);
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..messages {
        if pending.len() >= inflight {
            pending.next().await;
        }
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(format!("bench-{i}"));
        let ack = js
            .send_publish("natsbench.events", message)
            .await
            .expect("publish");
        pending.push(async move { ack.await.expect("a PubAck") });
    }
    while pending.next().await.is_some() {}
    let published = started.elapsed().as_secs_f64();
    println!(
        "published {messages} messages of {size} bytes ({inflight} PubAcks outstanding): {published:.2} s, {:.0} messages/s{}",
        messages as f64 / published,
        per_100k(before)
    );

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .expect("create the consumer");
    let before = server_pid.map_or(0.0, cpu_secs);
    let started = Instant::now();
    let mut stream = consumer
        .stream()
        .max_messages_per_batch(pull_batch)
        .messages()
        .await
        .expect("pull");
    for _ in 0..messages {
        let message = stream.next().await.expect("a message").expect("pulled");
        let reply = message.message.reply.clone().expect("a reply subject");
        client
            .publish(reply, jetstream::AckKind::Ack.into())
            .await
            .expect("ack");
    }
    client.flush().await.expect("flush");
    let consumed = started.elapsed().as_secs_f64();
    println!(
        "pulled and acked {messages} messages ({pull_batch} a pull): {consumed:.2} s, {:.0} messages/s{}",
        messages as f64 / consumed,
        per_100k(before)
    );
    let _ = js.delete_stream("NATSBENCH").await;
}

/// User + system CPU seconds of process `pid` (fields 14 and 15 of /proc/PID/stat, after the
/// parenthesised command name; clock ticks of 1/100 s, as on Linux everywhere).
fn cpu_secs(pid: usize) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc stat");
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}
