//! Scripted peers for the protocol tests: a std `TcpListener` on 127.0.0.1:0 and a thread
//! that plays one connection's script, written from the servers' documented transcripts.
//! The script asserts the exact bytes it receives and returns what went wrong as an
//! error, which [`Peer::finish`] turns into a test failure. Every read has a timeout, so a
//! client that stalls fails the test instead of hanging it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tollgate_hangup::{CallTerminator, HangupConfig};

/// How long a peer waits for the client's next bytes before it fails the test.
pub const PEER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub type Script = Box<dyn FnOnce(&mut TcpStream) -> Result<(), String> + Send>;

/// A listening peer and the thread that plays its script.
pub struct Peer {
    pub addr: SocketAddr,
    thread: JoinHandle<Result<(), String>>,
}

impl Peer {
    /// Listens on 127.0.0.1:0 and plays `script` on the first connection.
    pub fn start(script: Script) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
            stream
                .set_read_timeout(Some(PEER_READ_TIMEOUT))
                .map_err(|e| e.to_string())?;
            script(&mut stream)
        });
        Peer { addr, thread }
    }

    /// Waits for the script to end and fails the test if it found a problem.
    pub fn finish(self) {
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => panic!("the scripted peer found a problem: {problem}"),
            Err(_) => panic!("the scripted peer panicked"),
        }
    }
}

/// Reads up to and including `end` (e.g. `"\r\n\r\n"`), byte by byte so nothing after it is
/// consumed; at most 64 KiB.
pub fn read_until(stream: &mut TcpStream, end: &str) -> Result<String, String> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end.as_bytes()) {
        if got.len() > 64 * 1024 {
            return Err(format!(
                "no {end:?} in 64 KiB: {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "the client closed before {end:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
            Ok(_) => got.push(byte[0]),
            Err(e) => {
                return Err(format!(
                    "reading before {end:?}: {e}; got {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
    }
    String::from_utf8(got).map_err(|e| e.to_string())
}

/// Reads one message ended by `end` and checks it is exactly `expected`.
pub fn expect(stream: &mut TcpStream, end: &str, expected: &str) -> Result<(), String> {
    let got = read_until(stream, end)?;
    if got == expected {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {got:?}"))
    }
}

pub fn send(stream: &mut TcpStream, text: &str) -> Result<(), String> {
    stream
        .write_all(text.as_bytes())
        .map_err(|e| format!("writing {text:?}: {e}"))
}

/// Waits until the client closes (or the read timeout passes): a peer that holds the
/// connection open and says nothing.
pub fn hold_until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// Sends an endless line (no line break): 4 MiB at most, stopping when the client closes.
pub fn flood_without_newline(stream: &mut TcpStream, prefix: &str) {
    let _ = stream.write_all(prefix.as_bytes());
    let chunk = vec![b'A'; 64 * 1024];
    for _ in 0..64 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
}

/// Builds the one terminator `[hangup]` `section` (TOML) configures, with its secret files
/// written in `dir`.
pub fn build(dir: &Path, section: &str, secrets: &[(&str, &str)]) -> Arc<dyn CallTerminator> {
    for (file, content) in secrets {
        std::fs::write(dir.join(file), content).unwrap();
    }
    let mut config: HangupConfig = toml::from_str(section).unwrap();
    config.resolve_paths(dir);
    let mut built = config.build().unwrap();
    assert_eq!(built.len(), 1, "{section}");
    built.remove(0)
}
