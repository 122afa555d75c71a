//! What asks `fbpixel run` to reload its configuration: SIGHUP, always, and with
//! `--watch-config` a change to any file it loaded (those of a `--config-dir` folder included,
//! and a file added to or removed from such a folder), found by comparing their contents every
//! second. Polling needs no dependency and sees every kind of edit alike: an editor that
//! writes a new file and renames it over the old one, a Kubernetes ConfigMap's swapped link.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::ConfigPaths;

/// How often the files are compared.
const POLL: Duration = Duration::from_secs(1);

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A config file changed (`--watch-config`).
    FileChanged,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChanged => "config file changed",
        }
    }
}

/// The sources of reload requests, installed before the pipeline starts.
pub struct Reloads {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    /// `--watch-config`: the paths to compare and what they held last time.
    watched: Option<(ConfigPaths, Snapshot)>,
}

/// Every config file the paths name, with its contents (`None`: unreadable).
type Snapshot = Vec<(PathBuf, Option<Vec<u8>>)>;

fn snapshot(paths: &ConfigPaths) -> Snapshot {
    let (files, _) = paths.expand();
    files
        .into_iter()
        .map(|file| {
            let contents = std::fs::read(&file).ok();
            (file, contents)
        })
        .collect()
}

impl Reloads {
    /// SIGHUP handling, and the watch of `paths` when `watch` is set (their contents now are
    /// what the running configuration was loaded from).
    pub fn install(paths: &ConfigPaths, watch: bool) -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot handle SIGHUP")?,
            watched: watch.then(|| (paths.clone(), snapshot(paths))),
        })
    }

    /// Take the files as they are now as the ones loaded: a reload reads them, whatever asked
    /// for it, so a change it has seen does not ask again.
    pub fn loaded(&mut self) {
        if let Some((paths, last)) = &mut self.watched {
            *last = snapshot(paths);
        }
    }

    /// Resolves at the next SIGHUP or change of a watched file.
    pub async fn next(&mut self) -> Trigger {
        #[cfg(unix)]
        let Self { hangup, watched } = self;
        #[cfg(not(unix))]
        let Self { watched } = self;
        let watch = async {
            let Some((paths, last)) = watched else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(POLL).await;
                let probe = paths.clone();
                let now = tokio::task::spawn_blocking(move || snapshot(&probe))
                    .await
                    .unwrap_or_default();
                if now != *last {
                    *last = now;
                    return Trigger::FileChanged;
                }
            }
        };
        #[cfg(unix)]
        {
            tokio::select! {
                _ = hangup.recv() => Trigger::Signal,
                trigger = watch => trigger,
            }
        }
        #[cfg(not(unix))]
        watch.await
    }
}
