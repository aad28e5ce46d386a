//! Shared by the integration tests: a sample notification, fast dispatcher options, and a
//! small scripted HTTP/1.1 receiver on 127.0.0.1 that reports every request it gets.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate_notify::{AlertEvent, AlertSeverity, Notification, NotifierOptions};

/// The longest any test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn critical_notification() -> Notification {
    Notification {
        alert_id: "a-000123".into(),
        event: AlertEvent::Opened,
        severity: AlertSeverity::Critical,
        rule: "monitor.rules.satellite_burst".into(),
        subject: "extension 1001".into(),
        summary: "12 calls to high_risk in 10 min (critical at 10)".into(),
        figures: serde_json::json!({
            "calls": 12,
            "critical_at": 10,
            "warning_at": 5,
            "window_s": 600,
            "class": "high_risk",
        }),
        action: Some("suspended extension 1001 for 1h".into()),
        at: chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000).expect("valid time"),
    }
}

/// Retries in milliseconds instead of seconds.
pub fn fast_options() -> NotifierOptions {
    NotifierOptions {
        queue_capacity: 16,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
    }
}

/// One HTTP request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Read the request, report it, then say nothing until [`HttpReceiver::release`] (or
    /// [`WAIT`]), then answer 200.
    HoldThen200,
}

/// A scripted HTTP/1.1 receiver: answers the connections in the order they come with
/// `script`, then 200; each connection on its own thread, closed after its answer.
pub struct HttpReceiver {
    pub url: String,
    pub requests: Receiver<Request>,
    release: Sender<()>,
    stop: Arc<AtomicBool>,
}

impl HttpReceiver {
    pub fn start(path: &str, script: Vec<Answer>) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let (requests_tx, requests) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            // Bounded: the receiver serves for at most a minute, or until stopped.
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until && !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let answer = script.next().unwrap_or(Answer::Status(200));
                        let requests = requests_tx.clone();
                        let release = Arc::clone(&release_rx);
                        std::thread::spawn(move || serve(stream, answer, &requests, &release));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpReceiver {
            url: format!("http://{address}{path}"),
            requests,
            release,
            stop,
        }
    }

    /// Lets one held request be answered.
    pub fn release(&self) {
        let _ = self.release.send(());
    }

    pub fn next_request(&self) -> Request {
        self.requests
            .recv_timeout(WAIT)
            .expect("the receiver got no request in time")
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.release.send(());
    }
}

fn serve(
    stream: TcpStream,
    answer: Answer,
    requests: &Sender<Request>,
    release: &Mutex<Receiver<()>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(WAIT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let _ = requests.send(Request {
        method,
        path,
        headers,
        body,
    });
    let status = match answer {
        Answer::Status(status) => status,
        Answer::HoldThen200 => {
            if let Ok(release) = release.lock() {
                let _ = release.recv_timeout(WAIT);
            }
            200
        }
    };
    let reply = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}
