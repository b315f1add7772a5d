//! Limits against hostile clients, end to end without services (no broker listens on
//! the configured address; the agent accepts events into its queue all the same):
//! connection idle deadlines and HTTP/2 stream limits, spoken as raw HTTP/2 frames so
//! the test sees exactly what the server sends.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running agent, killed when dropped.
struct Agent {
    child: Child,
    addr: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the agent with `env` (`EDGE_AGENT_...` overrides) and waits until it accepts.
fn start(env: &[(&str, &str)]) -> Agent {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["--brokers", "127.0.0.1:1", "--listen", &addr])
        .env("EDGE_AGENT_LOG__LEVEL", "error")
        .env("EDGE_AGENT_SERVER__SHUTDOWN_TIMEOUT_MS", "1000")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let mut agent = Agent { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            agent.child.try_wait().expect("status").is_none(),
            "the agent exited"
        );
        assert!(Instant::now() < deadline, "the agent never listened");
        if TcpStream::connect(&agent.addr).is_ok() {
            return agent;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 3;
const REFUSED_STREAM: u32 = 7;

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// An HTTP/2 client connection that speaks raw frames over TCP (h2c, prior knowledge).
struct H2 {
    tcp: TcpStream,
}

impl H2 {
    /// Connects and sends the client preface and an empty SETTINGS frame.
    fn connect(addr: &str) -> H2 {
        let tcp = TcpStream::connect(addr).expect("connect");
        let mut h2 = H2 { tcp };
        h2.tcp.write_all(PREFACE).expect("preface");
        h2.send(SETTINGS, 0, 0, &[]);
        h2
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        self.tcp.write_all(&frame).expect("send a frame");
    }

    /// Sends a request head on `stream` (HPACK literals, no Huffman coding).
    fn request(&mut self, stream: u32, headers: &[(&str, &str)], end_stream: bool) {
        let mut block = Vec::new();
        for (name, value) in headers {
            block.push(0); // literal without indexing, new name
            block.push(name.len() as u8);
            block.extend(name.as_bytes());
            block.push(value.len() as u8);
            block.extend(value.as_bytes());
        }
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.send(HEADERS, flags, stream, &block);
    }

    /// The next frame, answering PINGs and acknowledging SETTINGS on the way (both are
    /// still returned); [`Closed`] once the server has closed the connection, or when
    /// nothing came within `wait`.
    fn next(&mut self, wait: Duration) -> Result<Frame, Closed> {
        self.tcp.set_read_timeout(Some(wait)).expect("read timeout");
        let mut head = [0u8; 9];
        match self.tcp.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Closed::Quiet)
            }
            Err(_) => return Err(Closed::Eof),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.tcp.read_exact(&mut payload).map_err(|_| Closed::Eof)?;
        let frame = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        };
        if frame.kind == PING && frame.flags & ACK == 0 {
            let payload = frame.payload.clone();
            let _ = self
                .tcp
                .write_all(&[&[0, 0, 8, PING, ACK, 0, 0, 0, 0][..], &payload].concat());
        }
        if frame.kind == SETTINGS && frame.flags & ACK == 0 {
            self.send(SETTINGS, ACK, 0, &[]);
        }
        Ok(frame)
    }
}

#[derive(Debug, PartialEq)]
enum Closed {
    /// Nothing arrived within the wait.
    Quiet,
    /// The server closed the connection.
    Eof,
}

/// Reads frames until the server closes the connection; panics if that takes longer
/// than `within`. Returns the frames seen on the way.
fn wait_for_close(h2: &mut H2, within: Duration) -> Vec<Frame> {
    let deadline = Instant::now() + within;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the connection is still open after {within:?}: {frames:?}"
        );
        match h2.next(left) {
            Ok(frame) => frames.push(frame),
            Err(Closed::Eof) => return frames,
            Err(Closed::Quiet) => {}
        }
    }
}

/// An HTTP/2 connection that never sends a request is closed after the head deadline;
/// one that sent a request and then goes quiet is closed after the idle timeout, with
/// a GOAWAY first (the client answers the keep-alive pings, which do not count as
/// activity), and not before.
#[test]
fn idle_http2_connections_are_closed() {
    let agent = start(&[
        ("EDGE_AGENT_SERVER__HEADER_TIMEOUT_MS", "1000"),
        ("EDGE_AGENT_SERVER__IDLE_TIMEOUT_MS", "2500"),
    ]);

    // Preface and settings only.
    let mut silent = H2::connect(&agent.addr);
    let opened = Instant::now();
    wait_for_close(&mut silent, Duration::from_secs(6));
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );

    // One request, then nothing.
    let mut h2 = H2::connect(&agent.addr);
    h2.request(
        1,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/health/live"),
            (":authority", "agent"),
        ],
        true,
    );
    let answered = loop {
        let frame = h2.next(Duration::from_secs(5)).expect("an answer");
        if frame.stream == 1 && frame.flags & END_STREAM != 0 {
            assert!(matches!(frame.kind, DATA | HEADERS), "{frame:?}");
            break Instant::now();
        }
    };
    // Past the head deadline, still open: an idle connection gets the idle timeout.
    loop {
        match h2.next(Duration::from_millis(100)) {
            Ok(frame) => assert_ne!(frame.kind, GOAWAY, "closed too early"),
            Err(Closed::Quiet) => {}
            Err(Closed::Eof) => panic!("closed after {:?}", answered.elapsed()),
        }
        if answered.elapsed() > Duration::from_millis(1800) {
            break;
        }
    }
    let frames = wait_for_close(&mut h2, Duration::from_secs(6));
    let took = answered.elapsed();
    assert!(
        took >= Duration::from_millis(2300),
        "closed too early: {took:?}"
    );
    assert!(
        frames.iter().any(|f| f.kind == GOAWAY),
        "no GOAWAY before the close: {frames:?}"
    );

    // The agent still serves new connections.
    let mut fresh = H2::connect(&agent.addr);
    fresh.request(
        1,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/health/live"),
        ],
        true,
    );
    loop {
        let frame = fresh.next(Duration::from_secs(5)).expect("an answer");
        if frame.stream == 1 && frame.kind == HEADERS {
            break;
        }
    }
}

/// The server advertises `server.http2_max_concurrent_streams` and refuses a stream
/// opened beyond it (`REFUSED_STREAM`); the default is 64.
#[test]
fn http2_streams_per_connection_are_limited() {
    fn advertised(h2: &mut H2) -> Option<u32> {
        loop {
            let frame = h2.next(Duration::from_secs(5)).expect("server settings");
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                return frame.payload.chunks_exact(6).find_map(|s| {
                    (u16::from_be_bytes([s[0], s[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS)
                        .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
                });
            }
        }
    }

    {
        let agent = start(&[]);
        let mut h2 = H2::connect(&agent.addr);
        assert_eq!(advertised(&mut h2), Some(64));
    }

    let agent = start(&[
        ("EDGE_AGENT_SERVER__HTTP2_MAX_CONCURRENT_STREAMS", "4"),
        ("EDGE_AGENT_SERVER__BODY_TIMEOUT_MS", "10000"),
    ]);
    let mut h2 = H2::connect(&agent.addr);
    assert_eq!(advertised(&mut h2), Some(4));
    // Our SETTINGS ACK went out with the server's settings; wait for the server's ACK
    // of ours, so both sides have applied their settings.
    loop {
        let frame = h2.next(Duration::from_secs(5)).expect("settings ack");
        if frame.kind == SETTINGS && frame.flags & ACK != 0 {
            break;
        }
    }
    // Five requests whose bodies never come: the first four stay open.
    for i in 0..5 {
        h2.request(
            1 + 2 * i,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/api/events/product-view"),
                ("content-type", "application/json"),
            ],
            false,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let reset = loop {
        assert!(
            Instant::now() < deadline,
            "the fifth stream was not refused"
        );
        match h2.next(Duration::from_millis(200)) {
            Ok(frame) if frame.kind == RST_STREAM => break frame,
            Ok(frame) => assert!(
                frame.stream == 0,
                "a frame on a stream that should be waiting for its body: {frame:?}"
            ),
            Err(Closed::Quiet) => {}
            Err(Closed::Eof) => panic!("the connection closed"),
        }
    };
    assert_eq!(reset.stream, 9, "{reset:?}");
    let code = u32::from_be_bytes(reset.payload[..4].try_into().expect("4 bytes"));
    assert_eq!(code, REFUSED_STREAM, "{reset:?}");
}

/// An HTTP/1.1 keep-alive connection waiting for its next request is closed at the
/// idle deadline, not the head deadline; a head that starts arriving on it is still
/// held to the head deadline, counted from its first byte.
#[test]
fn idle_http1_keep_alive_connections_get_the_idle_timeout() {
    let agent = start(&[
        ("EDGE_AGENT_SERVER__HEADER_TIMEOUT_MS", "1000"),
        ("EDGE_AGENT_SERVER__IDLE_TIMEOUT_MS", "3000"),
    ]);
    let request = b"GET /health/live HTTP/1.1\r\nHost: agent\r\n\r\n";
    let read_answer = |tcp: &mut TcpStream| {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        while !String::from_utf8_lossy(&got).contains("alive") {
            let n = tcp.read(&mut buf).expect("an answer");
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    };
    // Closed when `wait` is over, not before `not_before`.
    let closed_within =
        |tcp: &mut TcpStream, since: Instant, not_before: Duration, wait: Duration| {
            tcp.set_read_timeout(Some(wait)).expect("timeout");
            let mut buf = [0u8; 1024];
            match tcp.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!("still open after {:?}: {other:?}", since.elapsed()),
            }
            let took = since.elapsed();
            assert!(took >= not_before, "closed too early: {took:?}");
        };

    // Idle after one request: open past the head deadline, closed at the idle one.
    let mut tcp = TcpStream::connect(&agent.addr).expect("connect");
    tcp.write_all(request).expect("request");
    read_answer(&mut tcp);
    let answered = Instant::now();
    closed_within(
        &mut tcp,
        answered,
        Duration::from_millis(2800),
        Duration::from_secs(6),
    );

    // A slow head after one request: dropped at the head deadline from its first byte.
    let mut tcp = TcpStream::connect(&agent.addr).expect("connect");
    tcp.write_all(request).expect("request");
    read_answer(&mut tcp);
    std::thread::sleep(Duration::from_millis(1500));
    tcp.write_all(b"GET /health/live HTTP/1.1\r\n")
        .expect("a head starts");
    let started = Instant::now();
    closed_within(
        &mut tcp,
        started,
        Duration::from_millis(800),
        Duration::from_millis(2500),
    );
}

/// A client that pipelines requests and never reads the answers is dropped within
/// the idle timeout of the agent's last write to it (or the head deadline of a request
/// it could not take yet), not kept for ever with a request in flight.
#[test]
fn a_client_that_does_not_read_its_answers_is_dropped() {
    let agent = start(&[
        ("EDGE_AGENT_SERVER__HEADER_TIMEOUT_MS", "1000"),
        ("EDGE_AGENT_SERVER__IDLE_TIMEOUT_MS", "1500"),
    ]);
    let open_connections = || {
        let mut tcp = TcpStream::connect(&agent.addr).expect("connect");
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut text = String::new();
        tcp.read_to_string(&mut text).expect("metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("edge_http_connections "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the edge_http_connections gauge")
    };
    // `/metrics` answers are kilobytes: the agent's send buffer fills after some
    // hundreds of them, and the requests are written until the agent stops reading.
    let mut flood = TcpStream::connect(&agent.addr).expect("connect");
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("write timeout");
    let batch = b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n".repeat(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while flood.write_all(&batch).is_ok() {
        assert!(Instant::now() < deadline, "the agent never stopped reading");
    }
    let stalled = Instant::now();
    loop {
        // This connection and the one asking.
        if open_connections() <= 1.0 {
            break;
        }
        assert!(
            stalled.elapsed() < Duration::from_secs(8),
            "the connection that does not read is still open after {:?}",
            stalled.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
