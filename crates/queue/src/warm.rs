//! Connections kept warm between queue calls. sqlx 0.8 pings every connection that goes back to
//! its pool (a task spawned on drop runs a Sync round trip), so a claim, a complete and the next
//! claim each cost two round trips, a task and the client CPU of both. [`Warm`] keeps the
//! connections a [`crate::PgQueue`] has used checked out of sqlx's pool, on a small stack its next
//! calls take from; they are still sqlx's connections, so QUEUE_PG_POOL_SIZE bounds them all.
//! A connection goes back to sqlx's pool (which pings it, applies its lifetimes and lends it to
//! anyone else waiting) once it has lain unused for [`LINGER`] or has been kept for [`REFRESH`].
//! A connection whose call did not end (timed out, cancelled, panicked) or ended in a
//! connection-level error is never reused: it is closed, and so is every warm connection beside it
//! after a connection-level error (they share the network or the server that failed).

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Postgres;
use tokio::sync::Notify;

/// How long a connection may lie unused on the stack before it goes back to sqlx's pool. Short:
/// back-to-back calls (a complete, then the worker's next claim) are microseconds apart, while
/// someone else waiting on the pool (a test's own query, a pool of one) waits at most about twice
/// this long for a connection only the stack holds.
pub(crate) const LINGER: Duration = Duration::from_millis(250);

/// How long a connection is kept out of sqlx's pool in one stretch: then it goes back (one ping)
/// so sqlx's max_lifetime and idle_timeout still apply to a connection that is never idle.
pub(crate) const REFRESH: Duration = Duration::from_secs(60);

/// The warm connections of one pool.
pub(crate) struct Warm {
    state: Mutex<State>,
    /// Signalled when a connection is put back: a call waiting on sqlx's pool meanwhile takes it
    /// (sqlx does not see it, since it never went back to its pool).
    returned: Notify,
}

struct State {
    /// Most recently used last: calls take the warmest, the sweep returns the coldest.
    idle: Vec<Idle>,
    /// A sweep task runs (it stops once the stack is empty, and is started again by a put-back).
    sweeping: bool,
}

struct Idle {
    conn: PoolConnection<Postgres>,
    since: Instant,
    /// When this stretch out of sqlx's pool began.
    taken: Instant,
}

impl Warm {
    pub(crate) fn new() -> Arc<Warm> {
        Arc::new(Warm { state: Mutex::new(State { idle: Vec::new(), sweeping: false }), returned: Notify::new() })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Only pushes and pops happen under this lock: a panic cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pop(&self) -> Option<Idle> {
        self.state().idle.pop()
    }

    /// A connection for one call: a warm one, else one of sqlx's pool (its acquire timeout and
    /// errors unchanged), whichever comes first while waiting.
    pub(crate) async fn take<'a>(self: &'a Arc<Self>, pool: &PgPool) -> Result<Held<'a>, sqlx::Error> {
        if pool.is_closed() {
            // Closing waits for every connection: hand the warm ones back, and fail as sqlx does.
            self.discard_all();
        } else if let Some(idle) = self.pop() {
            return Ok(Held::new(self, idle.conn, idle.taken));
        }
        let acquire = pool.acquire();
        tokio::pin!(acquire);
        loop {
            // Armed before looking at the stack, so a put-back in between is not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(idle) = self.pop() {
                return Ok(Held::new(self, idle.conn, idle.taken));
            }
            tokio::select! {
                biased;
                conn = &mut acquire => return conn.map(|conn| Held::new(self, conn, Instant::now())),
                _ = &mut returned => {}
            }
        }
    }

    /// Keeps `conn` for the next call, or hands it back to sqlx's pool when its stretch is over.
    fn put_back(self: &Arc<Self>, conn: PoolConnection<Postgres>, taken: Instant) {
        let now = Instant::now();
        if now.duration_since(taken) >= REFRESH || tokio::runtime::Handle::try_current().is_err() {
            release(conn);
            return;
        }
        let start_sweep = {
            let mut state = self.state();
            state.idle.push(Idle { conn, since: now, taken });
            !std::mem::replace(&mut state.sweeping, true)
        };
        if start_sweep {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
        self.returned.notify_one();
    }

    /// Closes every warm connection: one of them just failed at the connection level.
    fn discard_all(&self) {
        let idle = std::mem::take(&mut self.state().idle);
        for i in idle {
            discard(i.conn);
        }
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        for i in std::mem::take(&mut self.state().idle) {
            release(i.conn);
        }
    }
}

/// Every LINGER while the stack holds connections: those unused for LINGER go back to sqlx's pool.
/// Ends with the stack empty or the queue gone.
async fn sweep(warm: Weak<Warm>) {
    loop {
        tokio::time::sleep(LINGER).await;
        let Some(warm) = warm.upgrade() else { return };
        let (cold, more) = {
            let mut state = warm.state();
            let now = Instant::now();
            let n = state.idle.iter().take_while(|i| now.duration_since(i.since) >= LINGER).count();
            let cold: Vec<Idle> = state.idle.drain(..n).collect();
            // Cleared under the lock a put-back takes, so a put-back either sees it set or starts a new sweep.
            state.sweeping = !state.idle.is_empty();
            (cold, state.sweeping)
        };
        for i in cold {
            release(i.conn);
        }
        if !more {
            return;
        }
    }
}

/// Back to sqlx's pool, which pings it first. Without a runtime (a queue dropped after its
/// runtime) sqlx could not spawn that ping: the connection is closed and its slot freed instead.
fn release(conn: PoolConnection<Postgres>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(conn);
    } else {
        drop(conn.detach());
    }
}

/// Closed (within sqlx's 5 s bound for a graceful close), never reused; its slot in the pool is
/// freed for a new connection.
fn discard(mut conn: PoolConnection<Postgres>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        conn.close_on_drop();
        drop(conn);
    } else {
        drop(conn.detach());
    }
}

/// One call's connection. Put back on the stack when dropped only if [`Held::checked`] saw the call
/// end with a reply (a result or a row-level error); closed otherwise, which covers a call whose
/// future was dropped mid-query by the call timeout: its connection may hold half a conversation.
pub(crate) struct Held<'a> {
    warm: &'a Arc<Warm>,
    conn: ManuallyDrop<PoolConnection<Postgres>>,
    taken: Instant,
    reusable: bool,
}

impl<'a> Held<'a> {
    fn new(warm: &'a Arc<Warm>, conn: PoolConnection<Postgres>, taken: Instant) -> Held<'a> {
        Held { warm, conn: ManuallyDrop::new(conn), taken, reusable: false }
    }

    /// The connection, for one statement.
    pub(crate) fn raw(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Records how the call ended and hands its result on: a reply (even a row's error) leaves
    /// the connection reusable; a connection-level error closes it and every warm one.
    pub(crate) fn checked<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        match &result {
            Ok(_) => self.reusable = true,
            Err(e) if crate::sql_error_is_connection_level(e) => {
                self.reusable = false;
                self.warm.discard_all();
            }
            Err(_) => self.reusable = true,
        }
        result
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: `conn` is taken exactly once, here, and never used after.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        if self.reusable {
            self.warm.put_back(conn, self.taken);
        } else {
            discard(conn);
        }
    }
}
