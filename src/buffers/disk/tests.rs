use std::time::Duration;

use super::*;
use crate::component::MIN_DISK_SIZE;
use crate::telemetry::{ComponentInfo, ComponentMetrics};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fbpixel-buffer-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn metrics() -> BufferMetrics {
    BufferMetrics::new(&ComponentMetrics::new(ComponentInfo {
        id: "capi".into(),
        kind: "sink",
        type_name: "test".into(),
    }))
}

fn events(range: Range<u32>) -> EventArray {
    range
        .map(|i| Event::from_json(Bytes::from(format!("{{\"n\":{i}}}"))))
        .collect()
}

fn numbers(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
            v["n"].as_u64().unwrap() as u32
        })
        .collect()
}

/// A running buffer with the sending half of its input.
struct Running {
    input: mpsc::Sender<EventArray>,
    output: mpsc::Receiver<EventArray>,
    closing: Closing,
}

fn start(dir: &Path, max_size: u64, when_full: WhenFull) -> Running {
    let buffer = DiskBuffer::open(dir, max_size, when_full, Permissions::Warn).unwrap();
    let (input, rx) = mpsc::channel(16);
    let (output, closing) = buffer.start(rx, Backlog::default(), metrics());
    Running {
        input,
        output,
        closing,
    }
}

async fn send(input: &mpsc::Sender<EventArray>, mut batch: EventArray) -> BatchStatus {
    let status = track(&mut batch);
    input.send(batch).await.unwrap();
    status.wait().await
}

async fn next(output: &mut mpsc::Receiver<EventArray>) -> EventArray {
    tokio::time::timeout(Duration::from_secs(5), output.recv())
        .await
        .expect("the buffer hands on its events")
        .expect("the buffer is open")
}

fn finish(events: EventArray, status: EventStatus) {
    for event in events {
        event.finalize(status);
    }
}

#[tokio::test]
async fn events_are_acknowledged_once_stored_and_handed_on_in_order() {
    let dir = temp_dir("order");
    let mut b = start(&dir, u64::MAX, WhenFull::Block);
    assert_eq!(send(&b.input, events(0..3)).await, BatchStatus::Delivered);
    assert_eq!(send(&b.input, events(3..5)).await, BatchStatus::Delivered);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = next(&mut b.output).await;
        seen.extend(numbers(&batch));
        finish(batch, EventStatus::Delivered);
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    drop(b.input);
    assert!(
        b.output.recv().await.is_none(),
        "input ended and all was read"
    );
    b.closing.wait().await.expect("the buffer closes cleanly");
    let reopened = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn).unwrap();
    assert!(reopened.is_empty(), "delivered events were removed");
}

#[tokio::test]
async fn what_the_sink_did_not_finish_is_sent_again_after_a_restart() {
    let dir = temp_dir("restart");
    let mut b = start(&dir, u64::MAX, WhenFull::Block);
    assert_eq!(send(&b.input, events(0..4)).await, BatchStatus::Delivered);
    let batch = next(&mut b.output).await;
    assert_eq!(numbers(&batch), [0, 1, 2, 3]);
    // The sink is stopped before it delivered them.
    finish(batch, EventStatus::Errored);
    drop(b.input);
    drop(b.output);
    b.closing.wait().await.expect("the buffer closes cleanly");

    let mut b = start(&dir, u64::MAX, WhenFull::Block);
    let batch = next(&mut b.output).await;
    assert_eq!(numbers(&batch), [0, 1, 2, 3], "resent in order");
    finish(batch, EventStatus::DeadLettered);
    drop(b.input);
    assert!(b.output.recv().await.is_none());
    b.closing.wait().await.expect("the buffer closes cleanly");
    assert!(
        DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn events_never_read_are_kept_across_a_restart_and_read_back_in_chunks() {
    let dir = temp_dir("unread");
    let b = start(&dir, u64::MAX, WhenFull::Block);
    assert_eq!(
        send(&b.input, events(0..2500)).await,
        BatchStatus::Delivered
    );
    // The sink never reads: the process stops with everything stored. (A
    // real `kill -9` is tested through the binary in tests/durability.rs.)
    drop(b.output);
    drop(b.input);
    b.closing.wait().await.expect("the buffer closes cleanly");
    let reopened = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn).unwrap();
    assert_eq!(reopened.len(), 2500);
    let (_input, rx) = mpsc::channel(1);
    let (mut output, _closing) = reopened.start(rx, Backlog::default(), metrics());
    let mut seen = Vec::new();
    while seen.len() < 2500 {
        let batch = next(&mut output).await;
        assert!(batch.len() <= READ_CHUNK);
        seen.extend(numbers(&batch));
        finish(batch, EventStatus::Delivered);
    }
    assert_eq!(seen, (0..2500).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_full_buffer_blocks_its_writers_until_the_sink_makes_room() {
    let dir = temp_dir("block");
    let big = "x".repeat(600 * 1024);
    let event = |i: u32| Event::from_json(Bytes::from(format!("{{\"n\":{i},\"pad\":\"{big}\"}}")));
    let mut b = start(&dir, MIN_DISK_SIZE, WhenFull::Block);
    assert_eq!(send(&b.input, vec![event(0)]).await, BatchStatus::Delivered);
    let mut second = vec![event(1)];
    let second_status = track(&mut second);
    b.input.send(second).await.unwrap();
    let mut waiting = Box::pin(second_status.wait());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "the second event does not fit in 1 MiB next to the first"
    );
    let first = next(&mut b.output).await;
    finish(first, EventStatus::Delivered);
    assert_eq!(waiting.await, BatchStatus::Delivered);
    let second = next(&mut b.output).await;
    assert_eq!(numbers(&second), [1]);
}

#[tokio::test]
async fn a_full_buffer_set_to_drop_newest_discards_the_batch_that_does_not_fit() {
    let dir = temp_dir("drop");
    let big = "x".repeat(600 * 1024);
    let event = |i: u32| Event::from_json(Bytes::from(format!("{{\"n\":{i},\"pad\":\"{big}\"}}")));
    let mut b = start(&dir, MIN_DISK_SIZE, WhenFull::DropNewest);
    assert_eq!(send(&b.input, vec![event(0)]).await, BatchStatus::Delivered);
    // Discarded as configured: the sender is not asked to retry.
    assert_eq!(send(&b.input, vec![event(1)]).await, BatchStatus::Delivered);
    let first = next(&mut b.output).await;
    assert_eq!(numbers(&first), [0]);
    finish(first, EventStatus::Delivered);
    drop(b.input);
    assert!(b.output.recv().await.is_none(), "event 1 was never stored");
}

#[test]
fn a_second_process_on_the_same_folder_is_told_to_use_its_own_data_dir() {
    let dir = temp_dir("twice");
    let _first = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn).unwrap();
    let e = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn)
        .err()
        .expect("the file is locked");
    assert!(e.contains("in use") && e.contains("data_dir"), "{e}");
}

/// Whether the file at `path` holds `needle` anywhere.
fn file_holds(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_emptied_buffer_is_compacted_so_delivered_events_leave_the_file() {
    let dir = temp_dir("compact");
    let file = dir.join(FILE_NAME);
    let buffer = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn)
        .unwrap()
        .compact_every(Duration::from_millis(50));
    let (input, rx) = mpsc::channel(16);
    let (mut output, closing) = buffer.start(rx, Backlog::default(), metrics());
    // About 4 MiB of events that each carry an email, as real ones do.
    let padding = "x".repeat(4000);
    let batch: EventArray = (0..1000)
        .map(|i| {
            Event::from_json(Bytes::from(format!(
                r#"{{"n":{i},"email":"jane-{i}@example.com","pad":"{padding}"}}"#
            )))
        })
        .collect();
    assert_eq!(send(&input, batch).await, BatchStatus::Delivered);
    let full = std::fs::metadata(&file).unwrap().len();
    assert!(
        full > 4_000_000,
        "the events are in the file ({full} bytes)"
    );
    assert!(file_holds(&file, b"jane-500@example.com"));
    let mut seen = 0;
    while seen < 1000 {
        let events = next(&mut output).await;
        seen += events.len();
        finish(events, EventStatus::Delivered);
    }
    // Compacted while running, once the deletions emptied it.
    let shrunk = || std::fs::metadata(&file).unwrap().len() < full / 10;
    for _ in 0..250 {
        if shrunk() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        shrunk(),
        "the emptied file was compacted: {} bytes, {full} when full",
        std::fs::metadata(&file).unwrap().len()
    );
    for i in [0, 500, 999] {
        let email = format!("jane-{i}@example.com");
        assert!(!file_holds(&file, email.as_bytes()), "{email} is gone");
    }
    drop(input);
    assert!(output.recv().await.is_none());
    closing.wait().await.expect("the buffer closes cleanly");
    let reopened = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn).unwrap();
    assert!(reopened.is_empty(), "a compacted file opens, empty");
}

#[tokio::test]
async fn a_buffer_emptied_just_after_a_compaction_is_compacted_when_it_closes() {
    let dir = temp_dir("compact-close");
    let file = dir.join(FILE_NAME);
    // Held back for longer than the test runs: only the close compacts.
    let buffer = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn)
        .unwrap()
        .compact_every(Duration::from_secs(3600));
    let (input, rx) = mpsc::channel(16);
    let (mut output, closing) = buffer.start(rx, Backlog::default(), metrics());
    let padding = "y".repeat(4000);
    let batch: EventArray = (0..500)
        .map(|i| Event::from_json(Bytes::from(format!(r#"{{"n":{i},"pad":"{padding}"}}"#))))
        .collect();
    assert_eq!(send(&input, batch).await, BatchStatus::Delivered);
    let full = std::fs::metadata(&file).unwrap().len();
    let mut seen = 0;
    while seen < 500 {
        let events = next(&mut output).await;
        seen += events.len();
        finish(events, EventStatus::Delivered);
    }
    drop(input);
    assert!(output.recv().await.is_none());
    closing.wait().await.expect("the buffer closes cleanly");
    let after = std::fs::metadata(&file).unwrap().len();
    assert!(
        after < full / 10,
        "compacted at close: {after} bytes, {full} when full"
    );
}

#[cfg(unix)]
#[test]
fn the_buffer_folder_and_file_are_owner_only_and_an_open_file_is_refused_when_strict() {
    use std::os::unix::fs::PermissionsExt;
    let root = temp_dir("modes");
    let dir = root.join("buffers/capi");
    let opened = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Strict).unwrap();
    drop(opened);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.join("buffers")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
    std::fs::set_permissions(dir.join(FILE_NAME), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Warn).is_ok());
    let e = DiskBuffer::open(&dir, u64::MAX, WhenFull::Block, Permissions::Strict)
        .err()
        .expect("refused");
    assert!(e.contains("buffer.redb") && e.contains("chmod 600"), "{e}");
}
