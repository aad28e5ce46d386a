//! Malformed, truncated, oversized and slow input: the server never panics (every test ends
//! by checking the summary), never hangs (each connection is closed within a bound), and
//! keeps serving other connections.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::{fast_settings, read_until_closed, Asterisk, Env, Mode, Server, TestHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_agi::AgiSettings;

const AUTHORIZE: &str = "authorize?extension=1001&number=%2B442071234567&ip=203.0.113.45";

/// Settings whose read timeout is long, so a quick close proves a limit worked, not a timer.
fn patient_settings() -> AgiSettings {
    AgiSettings {
        read_timeout_ms: 20_000,
        session_timeout_ms: 30_000,
        ..AgiSettings::default()
    }
}

/// A normal request still gets its answer.
async fn still_serves(server: &Server) {
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("allow"));
}

/// Sends `bytes` (ignoring a reset: the server may close before reading everything), then
/// waits for the server to close; returns what it sent and how long it took.
async fn send_and_wait(server: &Server, bytes: Vec<u8>, close_write: bool) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writer = async {
        let _ = write.write_all(&bytes).await;
        if close_write {
            let _ = write.shutdown().await;
        }
    };
    let reader = async {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(support::WAIT, read.read_to_end(&mut out))
            .await
            .expect("the server closes the connection in time");
        out
    };
    let ((), sent) = tokio::join!(writer, reader);
    (sent, started.elapsed())
}

#[tokio::test]
async fn environment_cut_mid_line_then_eof() {
    let server = Server::start(TestHandler::new(Mode::Policy), patient_settings()).await;
    let mut block = Env::asterisk20(AUTHORIZE).bytes();
    block.truncate(block.len() / 2);
    let (sent, took) = send_and_wait(&server, block, true).await;
    assert!(sent.is_empty());
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Cut right after a full line, too.
    let (sent, _) = send_and_wait(&server, b"agi_network: yes\n".to_vec(), true).await;
    assert!(sent.is_empty());
    still_serves(&server).await;
    let summary = server.stop().await;
    assert_eq!((summary.failed, summary.completed), (2, 1));
}

#[tokio::test]
async fn environment_without_its_empty_line_times_out() {
    let server = Server::start(TestHandler::new(Mode::Policy), fast_settings()).await;
    let mut block = Env::asterisk20(AUTHORIZE).bytes();
    block.pop();
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&block).await.unwrap();
    // The connection stays open on our side; the server gives up after read_timeout_ms.
    let sent = read_until_closed(&mut stream).await;
    let took = started.elapsed();
    assert!(sent.is_empty());
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_one_megabyte_line_is_cut_at_the_line_limit() {
    let server = Server::start(TestHandler::new(Mode::Policy), patient_settings()).await;
    let mut line = b"agi_network_script: authorize?extension=".to_vec();
    line.resize(1024 * 1024, b'1');
    line.push(b'\n');
    let (sent, took) = send_and_wait(&server, line, false).await;
    assert!(sent.is_empty());
    assert!(took < Duration::from_secs(5), "{took:?}");
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn ten_thousand_variables_are_cut_at_the_variable_limit() {
    let server = Server::start(TestHandler::new(Mode::Policy), patient_settings()).await;
    let mut block = Env::asterisk20(AUTHORIZE).bytes();
    block.pop();
    for i in 0..10_000 {
        block.extend_from_slice(format!("agi_arg_{}: x\n", i + 1).as_bytes());
    }
    block.push(b'\n');
    let (sent, took) = send_and_wait(&server, block, false).await;
    assert!(sent.is_empty());
    assert!(took < Duration::from_secs(5), "{took:?}");
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn non_utf8_bytes() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), patient_settings()).await;

    // In a value (a caller name in Latin-1): replaced, and the call is decided.
    let mut asterisk = Asterisk::new();
    let mut block = Env::asterisk20(AUTHORIZE)
        .remove("agi_calleridname")
        .bytes();
    block.pop();
    block.extend_from_slice(b"agi_calleridname: Jos\xe9 \xff\xfe\n\n");
    asterisk.call(server.addr, &block).await;
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("allow"));

    // In a value the decision needs: the number is passed on as replaced text, for the
    // engine to refuse; it never becomes another number.
    let mut asterisk = Asterisk::new();
    let mut block = Env::asterisk20("authorize?extension=1001&ip=203.0.113.45")
        .remove("agi_extension")
        .bytes();
    block.pop();
    block.extend_from_slice(b"agi_extension: +44\xff20\n\n");
    asterisk.call(server.addr, &block).await;
    assert_eq!(handler.authorized().last().unwrap().number, "+44\u{fffd}20");

    // In a name: not Asterisk, the connection is closed.
    let mut block = Env::asterisk20(AUTHORIZE).bytes();
    block.pop();
    block.extend_from_slice(b"agi_\xff\xfe: x\n\n");
    let (sent, _) = send_and_wait(&server, block, false).await;
    assert!(sent.is_empty());
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn client_closing_early() {
    let handler = TestHandler::new(Mode::Slow(Duration::from_millis(100)));
    let server = Server::start(handler.clone(), fast_settings()).await;
    // Closes right after the environment, before any reply.
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(&Env::asterisk20(AUTHORIZE).bytes())
            .await
            .unwrap();
        drop(stream);
    }
    // Reads the first command, then leaves.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&Env::asterisk20(AUTHORIZE).bytes())
        .await
        .unwrap();
    let mut first = [0u8; 8];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"SET VARI");
    drop(stream);

    // Connects and leaves at once.
    drop(TcpStream::connect(server.addr).await.unwrap());

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("allow"));
    let summary = server.stop().await;
    assert_eq!(summary.accepted, 8);
    assert_eq!(summary.completed, 1, "{summary:?}");
}

#[tokio::test]
async fn a_slowloris_connection_does_not_hold_up_others_and_is_cut() {
    let server = Server::start(TestHandler::new(Mode::Policy), fast_settings()).await;
    let addr = server.addr;
    // One byte every 100 ms: each read succeeds, so only the block-wide timeout stops it.
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let block = Env::asterisk20(AUTHORIZE).bytes();
        for byte in block {
            if stream.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(5) {
                panic!("the slow connection was never cut");
            }
        }
        let _ = read_until_closed(&mut stream).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    for _ in 0..3 {
        still_serves(&server).await;
    }
    let took = slow.await.unwrap();
    assert!(took < Duration::from_secs(2), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let settings = AgiSettings {
        max_connections: 2,
        ..fast_settings()
    };
    let server = Server::start(TestHandler::new(Mode::Policy), settings).await;
    let idle_a = TcpStream::connect(server.addr).await.unwrap();
    let idle_b = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert!(asterisk.commands.is_empty(), "refused: no decision set");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Once the idle ones time out, there is room again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    still_serves(&server).await;
    drop((idle_a, idle_b));
    let summary = server.stop().await;
    assert_eq!(summary.refused, 1, "{summary:?}");
    assert_eq!(summary.accepted, 3, "{summary:?}");
}

#[tokio::test]
async fn peers_outside_allowed_peers_are_closed_at_once() {
    let settings = AgiSettings {
        allowed_peers: vec!["192.0.2.0/24".parse().unwrap()],
        ..fast_settings()
    };
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), settings).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert!(asterisk.commands.is_empty());
    assert!(handler.authorized().is_empty());
    let summary = server.stop().await;
    assert_eq!((summary.accepted, summary.refused), (0, 1));
}

#[tokio::test]
async fn asterisk_that_never_answers_a_command() {
    let server = Server::start(TestHandler::new(Mode::Policy), fast_settings()).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&Env::asterisk20(AUTHORIZE).bytes())
        .await
        .unwrap();
    let sent = read_until_closed(&mut stream).await;
    assert_eq!(sent, b"SET VARIABLE TOLLGATE_MAX_SECONDS \"3600\"\n");
    assert!(started.elapsed() < Duration::from_secs(2));
    let summary = server.stop().await;
    assert_eq!(summary.failed, 1);
}

#[tokio::test]
async fn garbage_replies_end_the_script() {
    let server = Server::start(TestHandler::new(Mode::Policy), patient_settings()).await;
    for reply in [
        "OK".to_owned(),
        "200 result=yes".to_owned(),
        "2".repeat(10_000),
        "\u{0}\u{0}\u{0}".to_owned(),
    ] {
        let mut asterisk = Asterisk::new();
        asterisk.answer = Some(Box::new(move |_, _| Some(vec![reply.clone()])));
        asterisk
            .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
            .await;
        assert_eq!(asterisk.commands.len(), 1);
    }
    // An endless usage block.
    let mut asterisk = Asterisk::new();
    asterisk.answer = Some(Box::new(|_, _| {
        let mut lines = vec!["520-Invalid command syntax.".to_owned()];
        lines.extend((0..1000).map(|i| format!("usage line {i}")));
        Some(lines)
    }));
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(asterisk.commands.len(), 1);
    still_serves(&server).await;
    let summary = server.stop().await;
    assert_eq!((summary.failed, summary.completed), (5, 1));
}

#[tokio::test]
async fn shutdown_waits_for_connections_in_flight_and_stops_accepting() {
    let handler = TestHandler::new(Mode::Slow(Duration::from_millis(200)));
    let server = Server::start(handler.clone(), fast_settings()).await;
    let addr = server.addr;
    let call = tokio::spawn(async move {
        let mut asterisk = Asterisk::new();
        asterisk
            .call(addr, &Env::asterisk20(AUTHORIZE).bytes())
            .await;
        asterisk.var("TOLLGATE_DECISION").map(str::to_owned)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let summary = server.stop().await;
    assert_eq!(call.await.unwrap().as_deref(), Some("allow"));
    assert_eq!(summary.completed, 1);
    assert!(TcpStream::connect(addr).await.is_err());
}
