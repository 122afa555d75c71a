//! The signal that tells sources to stop accepting input.

use tokio::sync::watch;

/// Triggers shutdown of every source; dropping it does not.
#[derive(Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Held by each source: resolves once shutdown has begun.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

/// A new trigger and the signal it drives.
pub fn shutdown_pair() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    /// Tell every source to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown begins (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone: the pipeline is being torn down.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
