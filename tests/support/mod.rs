//! Helpers shared by the whole-binary tests.

// Also compiled into examples/graph_standin.rs and the sink's unit tests, which use other
// parts of it.
#[allow(dead_code)]
pub mod graph;
pub mod nats;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `fbpixel` binary with `args`, feeding `stdin`, with a clean environment apart from
/// `env`.
pub fn fbpixel(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fbpixel"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fbpixel starts");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // Write from a thread so a large input cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().expect("fbpixel runs");
    match writer.join().unwrap() {
        // The command may exit (a config error) before reading its input.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("stdin written"),
    }
    output
}

/// Compares `actual` with the file at `path`; with `UPDATE_GOLDEN=1`, rewrites the file instead.
pub fn assert_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .map(|(i, (e, a))| format!("line {}:\n  expected {e}\n  actual   {a}", i + 1))
            .collect();
        panic!(
            "{} differs ({} lines expected, {} actual):\n{}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// Writes `text` to a fresh file under the target directory and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root().join("target").join("test-files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------
// Running the binary as a long-lived child process, and talking HTTP to it.
// ---------------------------------------------------------------------------

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A fresh, empty directory under the target directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root()
        .join("target")
        .join("test-files")
        .join(format!("{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `condition` every 20 ms until it holds or `limit` has passed; returns whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `fbpixel` binary running as a child process, with a clean environment apart from the
/// given variables (and `NO_COLOR=1`, so log lines carry no escape codes). Its stdout and stderr
/// are collected by background threads, so the pipes never fill. Killed when dropped.
pub struct Proc {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Proc {
    /// Starts the binary with `args` and `env`; `stdin` is written and then closed (`None`:
    /// stdin is /dev/null).
    pub fn spawn(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Proc {
        Self::spawn_command(
            Command::new(env!("CARGO_BIN_EXE_fbpixel")),
            args,
            env,
            stdin,
        )
    }

    /// Like [`Proc::spawn`], under an open-file limit (`ulimit -n open_files`, set by `sh`
    /// before it execs the binary).
    pub fn spawn_with_open_file_limit(args: &[&str], open_files: u64) -> Proc {
        let mut command = Command::new("/bin/sh");
        command.args([
            "-c",
            &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_fbpixel"),
        ]);
        Self::spawn_command(command, args, &[], None)
    }

    fn spawn_command(
        mut command: Command,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Proc {
        let mut child = command
            .args(args)
            .env_clear()
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .current_dir(root())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fbpixel starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let writer = stdin.map(|bytes| {
            let mut input = child.stdin.take().unwrap();
            let bytes = bytes.to_vec();
            // Dropping `input` at the end closes the child's stdin. A child that exits early
            // (a config error) makes the write fail, which is not this helper's concern.
            std::thread::spawn(move || {
                let _ = input.write_all(&bytes);
            })
        });
        Proc {
            child,
            stdout,
            stderr,
            readers,
            writer,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Sends a signal by name (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits up to `limit` for the child to exit; once it has, also waits for the rest of its
    /// output, so that `stdout()` and `stderr()` are complete.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                if let Some(writer) = self.writer.take() {
                    let _ = writer.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like `wait_timeout`, but panics (showing stderr) when the child is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_timeout(limit) {
            Some(status) => status,
            None => panic!(
                "fbpixel did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Waits (up to 20 s) until 127.0.0.1:`port` accepts connections; panics, showing stderr,
    /// when it does not or when the child exits first.
    pub fn wait_for_port(&mut self, port: u16) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "fbpixel exited ({status}) before listening on {addr}; stderr:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "fbpixel did not listen on {addr} within 20s; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it was sent chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` with `Connection: close` and reads the whole
/// response. `headers` are sent as given; `Host`, `Content-Length` and `Connection` are added.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // A server may answer (413, 401) and close before reading the whole body; the answer is
    // still there to read, so a failed write is not an error by itself.
    let written = stream.write_all(&bytes);
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    if response.is_empty() {
        written?;
        read?;
    }
    parse_response(&response)
}

/// POSTs `body` to `/` with the given extra headers.
pub fn post(port: u16, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    http_request(port, "POST", "/", headers, body)
        .unwrap_or_else(|e| panic!("POST to 127.0.0.1:{port} failed: {e}"))
}

/// GETs `path`.
pub fn get(port: u16, path: &str) -> HttpResponse {
    http_request(port, "GET", path, &[], b"")
        .unwrap_or_else(|e| panic!("GET {path} from 127.0.0.1:{port} failed: {e}"))
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers in the response"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(&format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest).ok_or_else(|| invalid("bad chunked body"))?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| invalid("bad content-length"))?;
        if rest.len() < length {
            return Err(invalid("the body is shorter than its content-length"));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// `data` gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The value of the Prometheus sample `name{...}` whose labels include every one of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.rsplit_once("} ")?;
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().ok()).flatten()
    })
}

/// Peak resident memory of a process (`VmHWM`), in bytes; Linux only.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A Segment track call the sink maps, timestamped now, with `messageId` = `id`.
pub fn track_event(id: &str, email: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"type":"track","event":"Order Completed","messageId":"{id}","userId":"u-{id}","timestamp":"{now}","context":{{"userAgent":"Mozilla/5.0","ip":"203.0.113.9","page":{{"url":"https://shop.example/checkout"}},"traits":{{"email":"{email}"}}}},"properties":{{"revenue":12.5,"currency":"USD"}}}}"#
    )
}
