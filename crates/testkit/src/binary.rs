//! Driving a release binary from a test: a plain HTTP/1.0 call to what it serves, waiting until it
//! answers (polled until a deadline, never a fixed sleep), and stopping it with SIGTERM to collect
//! its exit status and everything it wrote. Also [`raw_request`]: a request written by hand to a
//! server in the test's own process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// (status code, body) of `GET path` on 127.0.0.1:port with `Host: localhost`, or None while
/// nothing answers there.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_call(port, "GET", path, &[], "")
}

/// (status code, body) of `method path` on 127.0.0.1:port with `Host: localhost`, the extra
/// `headers` and `body` (with its Content-Length, except on a GET without a body), or None while
/// nothing answers there.
pub fn http_call(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    if method != "GET" || !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// Polls `GET path` until it answers 200 within `within`; panics naming `what` and, if the child
/// ended meanwhile, its exit status and output.
pub fn wait_for_200(child: &mut Child, port: u16, path: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while http_get(port, path).map(|r| r.0) != Some(200) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} ended ({status}) before answering {path}: {}", output_of(child));
        }
        assert!(Instant::now() < deadline, "{what} did not answer {path} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM and waits (up to 60 s) for the child to end: its exit status and what it wrote on
/// stdout and stderr (when they were piped).
pub fn stop_with_sigterm(mut child: Child) -> (ExitStatus, String) {
    // SAFETY: kill(2) on the id of a child this test spawned and has not reaped yet.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM could not be sent");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("waiting for the child: {e}")) {
            break status;
        }
        assert!(Instant::now() < deadline, "the child did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, output_of(&mut child))
}

fn output_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(out) = child.stdout.as_mut() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(err) = child.stderr.as_mut() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

/// One HTTP request written by hand to `addr` (host:port; the request line, Host and every header
/// exactly as given, which an HTTP client would not allow): the whole answer, head and body, as
/// text, once the server closes the connection.
pub async fn raw_request(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}
