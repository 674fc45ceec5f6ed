//! Sending profiles to a backend: HTTP (ureq), authentication, retries with backoff and a
//! bounded spool of profiles not sent yet, on a thread of its own so a slow or absent
//! receiver never holds up sampling.
//!
//! The spool holds at most `spool` payloads. A receiver that is down for a few intervals loses
//! nothing: payloads wait, oldest first, and go out when it is back. One that stays down
//! fills the spool; then the oldest payload is dropped, with a log line saying which. Every
//! failed attempt is one log line on stderr naming the profile, the receiver's answer and
//! what happens next.
//!
//! Several producers (one per sampled process, for a later whole-host mode) can share one
//! uploader: [`Uploader::sender`] hands out a clonable [`Sender`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// One request body to send, and what describes it in log lines.
pub struct Payload {
    /// Appended to the base URL: `/push.v1.PusherService/Push`, ...
    pub path: &'static str,
    pub content_type: String,
    /// `Content-Encoding: gzip` (the body is compressed already).
    pub gzip: bool,
    pub body: Vec<u8>,
    /// `19:20:00–19:20:10 (pid 42)`, for log lines.
    pub label: String,
}

/// How to reach the backend.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Without a trailing `/`.
    pub base_url: String,
    /// Extra request headers (authentication, `X-Scope-OrgID`, user headers).
    pub headers: Vec<(String, String)>,
    /// Per attempt: connecting, sending and reading the answer.
    pub timeout: Duration,
    /// Payloads kept while the receiver does not take them.
    pub spool: usize,
    /// The first retry's delay; doubled at each failure in a row, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// What became of the payloads, for the final summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub sent: u64,
    pub failed_attempts: u64,
    /// Dropped because the spool was full.
    pub dropped: u64,
    /// Refused by the receiver (a 4xx other than 408/429: sending it again cannot help).
    pub rejected: u64,
    /// Still in the spool when the uploader stopped.
    pub unsent: u64,
}

/// Hands payloads to the uploader thread.
#[derive(Clone)]
pub struct Sender(SyncSender<Message>);

enum Message {
    Payload(Payload),
    /// Send what is spooled, trying until the deadline, then end.
    Finish(Instant),
}

impl Sender {
    /// Queues a payload (never blocks for long: the spool is on the other side).
    pub fn send(&self, payload: Payload) {
        let _ = self.0.send(Message::Payload(payload));
    }
}

/// The uploader thread.
pub struct Uploader {
    tx: SyncSender<Message>,
    handle: JoinHandle<Outcome>,
}

impl Uploader {
    pub fn start(endpoint: Endpoint) -> Result<Uploader, String> {
        // Room for a spool's worth: producers (one per process with `--all`) do not wait for
        // an upload in progress, however many payloads an interval makes.
        let (tx, rx) = mpsc::sync_channel(endpoint.spool.clamp(64, 1 << 16));
        let handle = std::thread::Builder::new()
            .name("pyspy-upload".into())
            .spawn(move || Worker::new(endpoint).run(rx))
            .map_err(|e| format!("cannot start the upload thread: {e}"))?;
        Ok(Uploader { tx, handle })
    }

    pub fn sender(&self) -> Sender {
        Sender(self.tx.clone())
    }

    /// Sends what is spooled, for at most `grace`, and ends the thread.
    pub fn finish(self, grace: Duration) -> Outcome {
        let _ = self.tx.send(Message::Finish(Instant::now() + grace));
        drop(self.tx);
        self.handle.join().unwrap_or_default()
    }
}

/// Why an attempt failed.
enum Failure {
    /// Worth trying again (no connection, a timeout, 5xx, 408, 429).
    Retry(String),
    /// Not worth it (the receiver refuses this request).
    Reject(String),
}

struct Worker {
    endpoint: Endpoint,
    agent: ureq::Agent,
    spool: VecDeque<Payload>,
    outcome: Outcome,
    /// Failures in a row (for the backoff), and when the next attempt may be made.
    streak: u32,
    next_attempt: Instant,
}

impl Worker {
    fn new(endpoint: Endpoint) -> Worker {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(endpoint.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("pyspy/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Worker {
            endpoint,
            agent,
            spool: VecDeque::new(),
            outcome: Outcome::default(),
            streak: 0,
            next_attempt: Instant::now(),
        }
    }

    fn run(mut self, rx: Receiver<Message>) -> Outcome {
        let mut deadline: Option<Instant> = None;
        loop {
            // Take what arrived; wait for more only while nothing can be sent.
            let wait = match (self.spool.is_empty(), deadline) {
                (true, Some(_)) => break,
                (true, None) => Duration::from_secs(3600),
                (false, _) => self.next_attempt.saturating_duration_since(Instant::now()),
            };
            let wait = match deadline {
                Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                None => wait,
            };
            match rx.recv_timeout(wait) {
                Ok(Message::Payload(p)) => {
                    self.push(p);
                    continue;
                }
                Ok(Message::Finish(at)) => {
                    deadline = Some(at);
                    // Flush now rather than after the backoff.
                    self.next_attempt = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    deadline.get_or_insert_with(Instant::now);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if !self.spool.is_empty() && Instant::now() >= self.next_attempt {
                self.attempt(deadline);
            }
        }
        self.outcome.unsent = self.spool.len() as u64;
        for p in &self.spool {
            eprintln!(
                "pyspy: push: gave up on the profile of {}: the receiver did not take it before pyspy ended",
                p.label
            );
        }
        self.outcome
    }

    fn push(&mut self, payload: Payload) {
        if self.spool.len() >= self.endpoint.spool.max(1) {
            if let Some(old) = self.spool.pop_front() {
                self.outcome.dropped += 1;
                eprintln!(
                    "pyspy: push: spool full ({} profiles): dropped the oldest, {} ({} dropped so far); the receiver at {} has not taken a profile for a while",
                    self.endpoint.spool, old.label, self.outcome.dropped, self.endpoint.base_url
                );
            }
        }
        self.spool.push_back(payload);
    }

    /// Tries to send the oldest spooled payload.
    fn attempt(&mut self, deadline: Option<Instant>) {
        let Some(payload) = self.spool.front() else {
            return;
        };
        match self.post(payload) {
            Ok(()) => {
                self.outcome.sent += 1;
                self.streak = 0;
                self.next_attempt = Instant::now();
                self.spool.pop_front();
            }
            Err(Failure::Reject(why)) => {
                self.outcome.failed_attempts += 1;
                self.outcome.rejected += 1;
                eprintln!(
                    "pyspy: push: the receiver refused the profile of {}: {why}; dropped it (sending it again cannot help)",
                    payload.label
                );
                self.spool.pop_front();
            }
            Err(Failure::Retry(why)) => {
                self.outcome.failed_attempts += 1;
                self.streak = self.streak.saturating_add(1);
                let delay = self
                    .endpoint
                    .backoff
                    .saturating_mul(1u32 << self.streak.saturating_sub(1).min(16))
                    .min(self.endpoint.max_backoff);
                self.next_attempt = Instant::now() + delay;
                let next = match deadline {
                    Some(d) if self.next_attempt >= d => "giving up: pyspy is ending".to_string(),
                    _ => format!("retrying in {:.1} s", delay.as_secs_f64()),
                };
                eprintln!(
                    "pyspy: push: sending the profile of {} failed: {why}; {next} ({} waiting)",
                    payload.label,
                    self.spool.len()
                );
            }
        }
    }

    fn post(&self, payload: &Payload) -> Result<(), Failure> {
        let url = format!("{}{}", self.endpoint.base_url, payload.path);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", &payload.content_type);
        if payload.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        for (k, v) in &self.endpoint.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let mut response = match request.send(&payload.body[..]) {
            Ok(r) => r,
            Err(e) => return Err(Failure::Retry(format!("POST {url}: {}", describe(&e)))),
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let mut text = String::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(300)
            .read_to_string(&mut text);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let why = format!(
            "HTTP {status} from POST {url}{}{}",
            if text.is_empty() { "" } else { ": " },
            text
        );
        let hint = match status {
            401 | 403 => " (check --basic-auth, --bearer-token or --tenant-id)",
            404 => " (check --url and --protocol)",
            413 => " (the profile is too large for the receiver: use a shorter --interval)",
            _ => "",
        };
        if status >= 500 || status == 408 || status == 429 {
            Err(Failure::Retry(why))
        } else {
            Err(Failure::Reject(format!("{why}{hint}")))
        }
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the receiver running and listening there?)".into()
        }
        ureq::Error::Timeout(_) => "no answer in time (--timeout)".into(),
        ureq::Error::HostNotFound => "host not found (check --url)".into(),
        other => other.to_string(),
    }
}

/// `data` gzip'd.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}

/// `Authorization: Basic ...` for `user:password`.
pub fn basic_auth(user_password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = user_password.as_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `19:20:00` (UTC) for log lines.
pub fn clock(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_credentials() {
        assert_eq!(
            basic_auth("Aladdin:open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a:b"), "Basic YTpi");
        assert_eq!(basic_auth("ab:"), "Basic YWI6");
        assert_eq!(basic_auth("u:pw"), "Basic dTpwdw==");
    }
}
