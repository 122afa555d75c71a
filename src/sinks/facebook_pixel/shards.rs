//! Mapping on several cores (`mapping.workers`): the sink's input is spread over workers, each
//! with its own batches, because mapping one event at a time on one task is what limits a sink
//! whose Graph API keeps up.
//!
//! A dispatcher (the sink's own task) reads each chunk and hands it to the *first* worker whose
//! queue has room. A worker's queue holds one chunk besides the one it maps, so a queued chunk
//! means that worker is busy: at low rates the first worker does everything and its batches stay
//! as full as with one worker; under load every worker maps. Order between chunks is not kept
//! (nor needed: each event keeps its own finalizer, so acknowledgements are exact whichever
//! worker sends it). Workers share each pixel's delivery, so `request.concurrency` and the
//! flow control stay per pixel for the whole sink.

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::worker::{Chunks, Worker};
use crate::component::EventStream;
use crate::event::EventArray;

/// Chunks a worker's queue holds besides the one it maps: one, so that a full queue means a
/// busy worker (see the module doc), and memory grows by at most two chunks per worker.
const QUEUE: usize = 1;

/// Run `workers` over `input` until it ends and every worker has delivered what it mapped.
/// One worker reads the input itself, as the sink always did.
pub(super) async fn run(mut input: EventStream, mut workers: Vec<Worker>) {
    if workers.len() <= 1 {
        if let Some(worker) = workers.pop() {
            worker.run(Chunks::Input(Box::new(input))).await;
        }
        return;
    }
    // A JoinSet, so that a sink task aborted (a forced shutdown) takes its workers with it.
    let mut running = JoinSet::new();
    let queues: Vec<mpsc::Sender<EventArray>> = workers
        .into_iter()
        .map(|worker| {
            let (tx, rx) = mpsc::channel(QUEUE);
            running.spawn(worker.run(Chunks::Queue(rx)));
            tx
        })
        .collect();
    while let Some(chunk) = input.next().await {
        // Only when every worker has stopped, which only a panic does; the chunk's
        // finalizers, dropped unreported, fail its events.
        if hand(chunk, &queues).await.is_err() {
            break;
        }
    }
    // Closing the queues ends each worker once it has mapped what it holds.
    drop(queues);
    let mut panic = None;
    while let Some(done) = running.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            panic.get_or_insert(e.into_panic());
        }
    }
    // A worker's panic is the sink's, as it was when the sink mapped on its own task.
    if let Some(panic) = panic {
        std::panic::resume_unwind(panic);
    }
}

/// Give `chunk` to the first queue with room, or, when all are full, to the first that has
/// room again. `Err(chunk)` when every queue is closed.
async fn hand<T: Send>(mut chunk: T, queues: &[mpsc::Sender<T>]) -> Result<(), T> {
    for queue in queues {
        match queue.try_send(chunk) {
            Ok(()) => return Ok(()),
            Err(
                mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back),
            ) => {
                chunk = back;
            }
        }
    }
    let mut open: Vec<&mpsc::Sender<T>> = queues.iter().filter(|q| !q.is_closed()).collect();
    while !open.is_empty() {
        let waits = open.iter().map(|&q| Box::pin(q.reserve()));
        let (reserved, i, _) = futures_util::future::select_all(waits).await;
        match reserved {
            Ok(permit) => {
                permit.send(chunk);
                return Ok(());
            }
            Err(_) => {
                open.swap_remove(i);
            }
        }
    }
    Err(chunk)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_chunk_goes_to_the_first_queue_with_room() {
        let (a, mut a_rx) = mpsc::channel(1);
        let (b, mut b_rx) = mpsc::channel(1);
        let queues = [a, b];
        hand(1, &queues).await.unwrap();
        hand(2, &queues).await.unwrap();
        assert_eq!(a_rx.try_recv().unwrap(), 1);
        assert_eq!(b_rx.try_recv().unwrap(), 2);
        // An idle first worker takes everything, one chunk at a time.
        for n in 3..6 {
            hand(n, &queues).await.unwrap();
            assert_eq!(a_rx.try_recv().unwrap(), n);
        }
        assert!(b_rx.try_recv().is_err(), "the second worker stayed idle");
    }

    #[tokio::test]
    async fn when_every_queue_is_full_the_first_to_free_takes_the_chunk() {
        let (a, mut a_rx) = mpsc::channel(1);
        let (b, mut b_rx) = mpsc::channel(1);
        let queues = [a, b];
        hand(1, &queues).await.unwrap();
        hand(2, &queues).await.unwrap();
        let waiting = tokio::spawn(async move { hand(3, &queues).await.map(|()| queues) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "no queue has room: the dispatcher waits"
        );
        assert_eq!(b_rx.recv().await, Some(2));
        let _queues = waiting.await.unwrap().unwrap();
        assert_eq!(b_rx.try_recv().unwrap(), 3, "the second queue freed first");
        assert_eq!(a_rx.try_recv().unwrap(), 1);
        assert!(a_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_closed_queue_is_passed_over_and_all_closed_gives_the_chunk_back() {
        let (a, a_rx) = mpsc::channel::<u32>(1);
        let (b, mut b_rx) = mpsc::channel(1);
        drop(a_rx);
        let queues = [a, b];
        hand(1, &queues).await.unwrap();
        assert_eq!(b_rx.try_recv().unwrap(), 1);
        // Full and closed: waiting for room skips the closed one.
        hand(2, &queues).await.unwrap();
        let waiting = tokio::spawn(async move { hand(3, &queues).await.map(|()| queues) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(b_rx.recv().await, Some(2));
        let queues = waiting.await.unwrap().unwrap();
        assert_eq!(b_rx.try_recv().unwrap(), 3);
        drop(b_rx);
        assert_eq!(hand(4, &queues).await, Err(4));
    }
}
