//! A scripted Asterisk for the tests: it connects to the server, sends the environment block
//! Asterisk 20 sends (the lines and order of `launch_netscript` and `setup_env` in
//! `res/res_agi.c`), then reads each command, splits it into words exactly as Asterisk's
//! `parse_args` does, and answers as `agi_handle_command` would. Plus a test handler and a
//! server started on 127.0.0.1:0. Every wait is bounded so a bug fails a test, not hangs it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate_agi::{
    serve, AgiDecision, AgiHandler, AgiSettings, AuthorizeArgs, EndArgs, ServeSummary,
    SettingsError,
};

/// The longest any test waits for anything.
pub const WAIT: Duration = Duration::from_secs(10);

/// Asterisk's `parse_args` (res_agi.c), byte for byte: double quotes group (and start a word
/// when they open after whitespace, so `""` is an empty word), a backslash makes the next byte
/// literal, spaces and tabs outside quotes separate words.
pub fn parse_args(line: &[u8]) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let (mut quoted, mut escaped, mut whitespace) = (false, false, true);
    for &c in line {
        let normal = match c {
            b'"' if !escaped => {
                quoted = !quoted;
                if quoted && whitespace {
                    words.push(Vec::new());
                    whitespace = false;
                }
                escaped = false;
                false
            }
            b' ' | b'\t' if !quoted && !escaped => {
                whitespace = true;
                false
            }
            b'\\' if !escaped => {
                escaped = true;
                false
            }
            _ => true,
        };
        if normal {
            if whitespace {
                words.push(Vec::new());
                whitespace = false;
            }
            if let Some(word) = words.last_mut() {
                word.push(c);
            }
            escaped = false;
        }
    }
    words
}

/// The environment block of Asterisk 20.8 for a PJSIP call from endpoint 1001 dialing
/// +44 20 7123 4567 through `AGI(agi://127.0.0.1:4573/<script>,<args>)`.
pub struct Env {
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn asterisk20(script: &str) -> Env {
        let vars = [
            ("agi_network", "yes"),
            ("agi_network_script", script),
            ("agi_request", &format!("agi://127.0.0.1:4573/{script}")),
            ("agi_channel", "PJSIP/1001-0000002a"),
            ("agi_language", "en"),
            ("agi_type", "PJSIP"),
            ("agi_uniqueid", "1718012345.42"),
            ("agi_version", "20.8.1"),
            ("agi_callerid", "1001"),
            ("agi_calleridname", "Alice Martin"),
            ("agi_callingpres", "0"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", "+442071234567"),
            ("agi_rdnis", "unknown"),
            ("agi_context", "outbound"),
            ("agi_extension", "+442071234567"),
            ("agi_priority", "3"),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", ""),
            ("agi_threadid", "139872464172736"),
        ];
        Env {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The block for `script` with `agi_arg_1..` set to `args`.
    pub fn with_args(script: &str, args: &[&str]) -> Env {
        let mut env = Env::asterisk20(script);
        for (i, arg) in args.iter().enumerate() {
            env.vars
                .push((format!("agi_arg_{}", i + 1), (*arg).to_owned()));
        }
        env
    }

    pub fn set(mut self, name: &str, value: &str) -> Env {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    pub fn remove(mut self, name: &str) -> Env {
        self.vars.retain(|(k, _)| k != name);
        self
    }

    /// `name: value\n` per variable (`name: \n` for an empty one, as `ast_agi_send` writes
    /// it), then the empty line.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.vars {
            out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        out.push(b'\n');
        out
    }
}

/// How the fake Asterisk answers one command: the lines to send (each gets its `\n`).
pub type Answer = Box<dyn FnMut(usize, &[String]) -> Option<Vec<String>> + Send>;

/// The scripted Asterisk.
pub struct Asterisk {
    /// What `GET VARIABLE` returns (variables and functions, by name as sent).
    pub channel: BTreeMap<String, String>,
    /// Overrides the answer to command number `n` (from 0): `Some(lines)` to send those.
    pub answer: Option<Answer>,
    /// Lines to send before the reply to the first command (`HANGUP`).
    pub before_first_reply: Vec<String>,
    /// Every command line received, without its newline.
    pub commands: Vec<String>,
    /// Every `SET VARIABLE` received, name and value as Asterisk would store them.
    pub set: Vec<(String, String)>,
}

/// How a conversation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection: the script is over.
    Closed,
    /// The server reset the connection.
    Reset,
}

impl Default for Asterisk {
    fn default() -> Self {
        Asterisk::new()
    }
}

impl Asterisk {
    pub fn new() -> Asterisk {
        Asterisk {
            channel: BTreeMap::new(),
            answer: None,
            before_first_reply: Vec::new(),
            commands: Vec::new(),
            set: Vec::new(),
        }
    }

    /// The last value set for `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The names set, in order.
    pub fn names_set(&self) -> Vec<&str> {
        self.set.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Connects, sends `env`, answers commands until the server closes. Panics after
    /// [`WAIT`].
    pub async fn call(&mut self, addr: SocketAddr, env: &[u8]) -> End {
        tokio::time::timeout(WAIT, self.converse(addr, env))
            .await
            .expect("the server neither finished nor closed the connection in time")
    }

    async fn converse(&mut self, addr: SocketAddr, env: &[u8]) -> End {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (read, mut write) = stream.into_split();
        // The server may close before reading all of it (refused connections).
        let _ = write.write_all(env).await;
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => return End::Closed,
                Ok(_) => {}
                Err(_) => return End::Reset,
            }
            assert_eq!(line.pop(), Some(b'\n'), "a command without its newline");
            let text = String::from_utf8(line.clone()).expect("commands are UTF-8");
            let n = self.commands.len();
            self.commands.push(text);
            let words: Vec<String> = parse_args(&line)
                .into_iter()
                .map(|w| String::from_utf8(w).expect("UTF-8 word"))
                .collect();
            let mut reply = Vec::new();
            if n == 0 {
                reply.append(&mut self.before_first_reply);
            }
            let scripted = self.answer.as_mut().and_then(|a| a(n, &words));
            match scripted {
                Some(lines) => reply.extend(lines),
                None => reply.push(self.execute(&words)),
            }
            for r in reply {
                if write.write_all(format!("{r}\n").as_bytes()).await.is_err() {
                    return End::Reset;
                }
            }
        }
    }

    /// What Asterisk 20 answers (`handle_setvariable`, `handle_getvariable`,
    /// `handle_verbose`, `find_command`).
    fn execute(&mut self, words: &[String]) -> String {
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        match upper.as_slice() {
            ["SET", "VARIABLE", ..] => {
                if let (Some(name), Some(value)) = (words.get(2), words.get(3)) {
                    self.set.push((name.clone(), value.clone()));
                }
                "200 result=1".to_owned()
            }
            ["GET", "VARIABLE", _] => match self.channel.get(&words[2]) {
                Some(value) => format!("200 result=1 ({value})"),
                None => "200 result=0".to_owned(),
            },
            ["GET", "VARIABLE", ..] => {
                "520 Invalid command syntax.  Proper usage not available.".to_owned()
            }
            ["VERBOSE", ..] => "200 result=1".to_owned(),
            _ => "510 Invalid or unknown command".to_owned(),
        }
    }
}

/// Which decisions the test handler makes.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Satellite (+881, +882) denied, everything else allowed for an hour.
    Policy,
    /// Allows with this many seconds.
    AllowFor(u64),
    /// Denies with this reason.
    DenyWith(String),
    /// Sleeps this long before allowing.
    Slow(Duration),
    /// Fails with this message.
    Fail(String),
}

/// A handler that records what it is asked.
pub struct TestHandler {
    pub mode: Mode,
    pub authorized: Mutex<Vec<AuthorizeArgs>>,
    pub ended: Mutex<Vec<EndArgs>>,
}

impl TestHandler {
    pub fn new(mode: Mode) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            mode,
            authorized: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
        })
    }

    pub fn authorized(&self) -> Vec<AuthorizeArgs> {
        self.authorized.lock().unwrap().clone()
    }

    pub fn ended(&self) -> Vec<EndArgs> {
        self.ended.lock().unwrap().clone()
    }
}

impl AgiHandler for TestHandler {
    async fn authorize(&self, request: AuthorizeArgs) -> Result<AgiDecision, String> {
        let number = request.number.clone();
        self.authorized.lock().unwrap().push(request);
        match &self.mode {
            Mode::Policy if number.starts_with("+881") || number.starts_with("+882") => {
                Ok(AgiDecision::deny(
                    "class_not_allowed",
                    "extension 1001: class satellite is not allowed (extension 1001 rules.allowed_classes)",
                ))
            }
            Mode::Policy => Ok(AgiDecision::allow(
                3600,
                "rate uk-landline 0.0125/min: 3600 s reserve 0.75 of 20.00 daily",
            )),
            Mode::AllowFor(s) => Ok(AgiDecision::allow(*s, "allowed")),
            Mode::DenyWith(reason) => Ok(AgiDecision::deny("destination_blocked", reason)),
            Mode::Slow(d) => {
                tokio::time::sleep(*d).await;
                Ok(AgiDecision::allow(60, "late"))
            }
            Mode::Fail(message) => Err(message.clone()),
        }
    }

    async fn end(&self, request: EndArgs) -> Result<(), String> {
        let fail = matches!(self.mode, Mode::Fail(_));
        self.ended.lock().unwrap().push(request);
        match &self.mode {
            Mode::Slow(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            _ if fail => Err("store unavailable".into()),
            _ => Ok(()),
        }
    }
}

/// Short timeouts so that tests of timeouts are quick.
pub fn fast_settings() -> AgiSettings {
    AgiSettings {
        decision_timeout_ms: 300,
        read_timeout_ms: 500,
        session_timeout_ms: 3000,
        max_connections: 32,
        ..AgiSettings::default()
    }
}

/// A server on 127.0.0.1:0.
pub struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<ServeSummary, SettingsError>>,
}

impl Server {
    pub async fn start<H: AgiHandler>(handler: Arc<H>, settings: AgiSettings) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, handler, settings, async move {
            let _ = stopped.await;
        }));
        Server { addr, stop, task }
    }

    /// Stops the server and returns its summary; fails the test if a connection panicked.
    pub async fn stop(self) -> ServeSummary {
        let _ = self.stop.send(());
        let summary = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic")
            .expect("valid settings");
        assert_eq!(summary.panicked, 0, "{summary:?}");
        summary
    }
}

/// Reads until the server closes (or resets) the connection, within [`WAIT`]; returns what
/// it sent.
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the server closes the connection in time")
        {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}
