//! A TCP fault proxy between the processes under test and a server they need (Redis,
//! PostgreSQL): it forwards bytes both ways until told to
//! - [`FaultProxy::cut`]: close every open connection at once (as a network blip or a server-side
//!   kill of the client does); new connections are accepted again right away;
//! - [`FaultProxy::stall`]: stop moving bytes on every connection, open or new, without closing
//!   anything (as a hung network or a frozen server does), until [`FaultProxy::resume`];
//! - [`FaultProxy::refuse`]: close every connection and refuse new ones until `resume`.
//!
//! Plain threads (no runtime), so it serves async and sync tests alike. It listens on
//! 127.0.0.1 only and forwards only to the address it was given.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    stalled: AtomicBool,
    refusing: AtomicBool,
    stopped: AtomicBool,
    /// Both ends of every open connection, to close them on `cut`.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    accepted: AtomicU64,
}

pub struct FaultProxy {
    pub port: u16,
    target: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` (e.g. 127.0.0.1:6379).
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("fault proxy: bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("fault proxy: {e}"));
        let state = Arc::new(State::default());
        let s = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if s.refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let s = s.clone();
                std::thread::spawn(move || connect(s, client, target));
            }
        });
        FaultProxy { port, target, state }
    }

    /// `url` with its host and port replaced by this proxy's (`redis://127.0.0.1:6379/0` →
    /// `redis://127.0.0.1:<proxy>/0`).
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let _ = u.set_host(Some("127.0.0.1"));
        let _ = u.set_port(Some(self.port));
        u.to_string()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection (both sides); returns how many there were.
    pub fn cut(&self) -> usize {
        let open = std::mem::take(&mut *lock(&self.state.open));
        for (a, b) in open.values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        open.len()
    }

    /// Holds every byte in flight (connections stay open) until [`FaultProxy::resume`].
    pub fn stall(&self) {
        self.state.stalled.store(true, Ordering::SeqCst);
    }

    /// Closes everything and refuses new connections until [`FaultProxy::resume`].
    pub fn refuse(&self) {
        self.state.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Back to forwarding.
    pub fn resume(&self) {
        self.state.refusing.store(false, Ordering::SeqCst);
        self.state.stalled.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.resume();
        self.cut();
        // Wakes the accept loop so it sees `stopped`.
        let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_millis(200));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect(state: Arc<State>, client: TcpStream, target: SocketAddr) {
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let id = state.accepted.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone()) else {
        return;
    };
    lock(&state.open).insert(id, (c3, s3));
    let st = state.clone();
    std::thread::spawn(move || pump(st, client, server));
    pump(state.clone(), s2, c2);
    lock(&state.open).remove(&id);
}

/// Copies `from` → `to` until either side closes, holding bytes while the proxy is stalled.
fn pump(state: Arc<State>, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    // A read timeout lets a stalled pump notice `resume` and a stopped proxy end.
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    loop {
        if state.stopped.load(Ordering::SeqCst) {
            break;
        }
        if state.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                while state.stalled.load(Ordering::SeqCst) && !state.stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
