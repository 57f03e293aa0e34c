//! The rate limiter: the Rust side of the four scripts (acquires in flight together share one call,
//! see batch.rs), plus the wait-and-retry helper every caller uses instead of polling.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use registre_runtime::RedisConn;
use redis::{Script, Value};
use registre_config::RateLimitConfig;
use registre_domain::keys::RateLimitKeys;
use registre_runtime::Backoff;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batches, Waiter};
use crate::RateLimitError;

// Each script runs lua/prelude.lua first.
static ACQUIRE: LazyLock<Script> = registre_runtime::lua_script!("lua/prelude.lua", "lua/acquire.lua");
static SETTLE: LazyLock<Script> = registre_runtime::lua_script!("lua/prelude.lua", "lua/settle.lua");
static COOLDOWN: LazyLock<Script> = registre_runtime::lua_script!("lua/prelude.lua", "lua/cooldown.lua");
static STATUS: LazyLock<Script> = registre_runtime::lua_script!("lua/prelude.lua", "lua/status.lua");

/// The limits of one limiter. Every process sharing a name must use the same numbers (they are
/// arguments of each script call; the keys hold only what was granted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Keys live under `ratelimit:{<name>}:`.
    pub name: String,
    pub requests_per_window: u64,
    pub tokens_per_window: u64,
    /// The rolling window (60 s in production; shorter in tests). Whole milliseconds.
    pub window: Duration,
    /// How much later than its grant a call may reach the API (OCR_RATE_LIMIT_MARGIN_MS, 1 s by
    /// default). The API counts a call when it arrives, not when Redis granted it: a call granted
    /// at t and arriving at t + d shares the API's window with calls granted up to t + d + window.
    /// So every grant keeps its place for window + margin ([`RateLimitSettings::held_window`]):
    /// calls that reach the API at most `margin` after their grant then never exceed the limits in
    /// any rolling `window` of the API's. Zero: grants are held exactly one window.
    pub arrival_margin: Duration,
}

impl RateLimitSettings {
    /// OCR_RATE_LIMIT_NAME / _RPM / _TPM / _WINDOW_MS.
    pub fn from_config(config: &RateLimitConfig) -> RateLimitSettings {
        RateLimitSettings {
            name: config.name.clone(),
            requests_per_window: config.requests_per_window,
            tokens_per_window: config.tokens_per_window,
            window: config.window,
            arrival_margin: config.arrival_margin,
        }
    }

    /// How long each grant and charge counts: window + arrival margin.
    pub fn held_window(&self) -> Duration {
        self.window.saturating_add(self.arrival_margin)
    }

    /// The oldest a grant may be when its answer comes back for the call to still be made on it:
    /// half the arrival margin, leaving the other half for the request to reach the API. None
    /// when the margin is zero (no such promise is made then).
    pub fn max_grant_age(&self) -> Option<Duration> {
        (!self.arrival_margin.is_zero()).then(|| self.arrival_margin / 2)
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis().min(u64::MAX as u128) as u64
    }

    /// What the scripts are told the window is (they hold every entry this long).
    fn held_window_ms(&self) -> u64 {
        self.held_window().as_millis().min(u64::MAX as u128) as u64
    }
}

/// A granted request. Settle it with the tokens the API reported ([`RateLimiter::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    id: u64,
    granted_at_ms: u64,
    estimated_tokens: u64,
    /// Which limiter granted it (a hash of its key prefix): a settle goes to that limiter only.
    limiter: u64,
}

impl Reservation {
    /// Never handed out twice by one limiter, even after it was idle long enough for its keys to
    /// expire (ids grow from the Redis clock, see acquire.lua).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// When Redis granted it, on the Redis server clock (ms since the Unix epoch).
    pub fn granted_at_ms(&self) -> u64 {
        self.granted_at_ms
    }
    pub fn estimated_tokens(&self) -> u64 {
        self.estimated_tokens
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// A cooldown after an HTTP 429 is running.
    Cooldown,
    /// The window already holds RPM requests.
    Requests,
    /// The estimate does not fit the tokens left in the window.
    Tokens,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Cooldown => "cooldown",
            WaitReason::Requests => "requests",
            WaitReason::Tokens => "tokens",
        }
    }
}

/// The answer of one acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Granted(Reservation),
    /// Nothing was reserved; the request would fit after `wait` if nothing else is granted meanwhile.
    Wait { wait: Duration, reason: WaitReason },
}

/// What a settle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The reservation is now charged exactly the actual tokens: `at_grant` at its grant time, and
    /// `extra` (an under-estimate's excess) at `extra_at_ms`, the earliest time it fit the window.
    Settled { at_grant: u64, extra: u64, extra_at_ms: Option<u64> },
    /// The settle came after the grant had left the window (a call slower than the window): the
    /// grant-time charge no longer counts, so all `tokens` were charged at `at_ms`, the earliest
    /// time (now or later) where they fit. A second late settle of the same reservation changes
    /// nothing and reports the same charge. `at_ms` is None when nothing was charged (0 tokens).
    Late { tokens: u64, at_ms: Option<u64> },
    /// The reservation was granted by another limiter: nothing changed.
    Unknown,
}

/// The current rolling window, as the Redis server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub requests_in_window: u64,
    pub tokens_in_window: u64,
    pub requests_per_window: u64,
    pub tokens_per_window: u64,
    /// The span the counts cover: the window plus the arrival margin (each grant is held that long).
    pub window: Duration,
    /// The arrival margin included in `window`; `window - arrival_margin` is the API's own window.
    pub arrival_margin: Duration,
    /// Time left of a running cooldown.
    pub cooldown_remaining: Option<Duration>,
    /// Redis server time of the reading (ms).
    pub now_ms: u64,
}

/// Cheap to clone: clones share one self-reconnecting connection.
#[derive(Clone)]
pub struct RateLimiter {
    conn: RedisConn,
    settings: Arc<RateLimitSettings>,
    keys: Arc<RateLimitKeys>,
    /// Tag of the reservations this limiter grants (hash of the key prefix).
    tag: u64,
    /// The acquires waiting for the next script call (see batch.rs).
    batches: Arc<Batches>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Refuses limits of zero (nothing could ever be admitted) and windows under 1 ms.
    pub fn new(conn: impl Into<RedisConn>, settings: RateLimitSettings) -> Result<RateLimiter, RateLimitError> {
        if settings.requests_per_window == 0 || settings.tokens_per_window == 0 {
            return Err(RateLimitError::InvalidSettings(format!(
                "{}: requests and tokens per window must be at least 1 (got {} and {})",
                settings.name, settings.requests_per_window, settings.tokens_per_window
            )));
        }
        if settings.window_ms() == 0 {
            return Err(RateLimitError::InvalidSettings(format!("{}: the window must be at least 1 ms", settings.name)));
        }
        // Lua numbers are doubles: keep every amount exact.
        const EXACT: u64 = 1 << 52;
        if settings.tokens_per_window > EXACT || settings.requests_per_window > EXACT || settings.held_window_ms() > EXACT {
            return Err(RateLimitError::InvalidSettings(format!("{}: limits above 2^52 are not supported", settings.name)));
        }
        let keys = RateLimitKeys::for_name(&settings.name);
        let tag = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            keys.requests.hash(&mut h);
            h.finish()
        };
        Ok(RateLimiter { conn: conn.into(), settings: Arc::new(settings), keys: Arc::new(keys), tag, batches: Arc::default() })
    }

    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    pub fn keys(&self) -> &RateLimitKeys {
        &self.keys
    }

    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.as_array() {
            inv.key(key);
        }
        inv.arg(self.settings.held_window_ms()).arg(self.settings.requests_per_window).arg(self.settings.tokens_per_window);
        inv
    }

    fn too_large(&self, estimated_tokens: u64) -> RateLimitError {
        RateLimitError::EstimateTooLarge {
            name: self.settings.name.clone(),
            estimated_tokens,
            tokens_per_window: self.settings.tokens_per_window,
        }
    }

    /// One decision: granted now, or how long to wait. One script call, which also decides the
    /// other acquires of this process in flight at the same moment (in arrival order, atomically:
    /// see batch.rs); a lone acquire is sent at once.
    /// An estimate above the whole tokens budget is refused with [`RateLimitError::EstimateTooLarge`].
    pub async fn acquire(&self, estimated_tokens: u64) -> Result<Decision, RateLimitError> {
        if estimated_tokens > self.settings.tokens_per_window {
            return Err(self.too_large(estimated_tokens));
        }
        if self.batches.try_lead() {
            let mut lead = Lead { limiter: self, done: false };
            let decided = self.decide(&[estimated_tokens]).await;
            lead.done = true;
            self.finish_lead();
            return decided?.pop().unwrap_or_else(|| Err(self.reply_error("no decision")));
        }
        let (reply, answer) = oneshot::channel();
        if self.batches.push(Waiter { estimate: estimated_tokens, reply }) {
            // The sender runs on its own, so a caller that stops waiting (a timeout around acquire)
            // never strands the others' decisions. Without a runtime to spawn on, it runs here.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(self.clone().send_batches())),
                Err(_) => self.clone().send_batches().await,
            }
        }
        answer.await.unwrap_or_else(|_| Err(RateLimitError::Abandoned { name: self.settings.name.clone() }))
    }

    /// A leading acquire is done (or was dropped): the acquires queued meanwhile get a sender.
    fn finish_lead(&self) {
        if self.batches.finish_lead() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(self.clone().send_batches())),
                Err(_) => self.batches.abandon_slot(),
            }
        }
    }

    fn reply_error(&self, detail: &str) -> RateLimitError {
        RateLimitError::Reply { script: "acquire", detail: detail.to_string() }
    }

    /// Sends the queued acquires, at most [`crate::batch::MAX_BATCH`] per script call, one call at
    /// a time (another sender or leader may have a call of its own on the way), until none is left.
    async fn send_batches(self) {
        let mut slot = self.batches.slot();
        while let Some(batch) = slot.next_batch() {
            let estimates: Vec<u64> = batch.iter().map(|w| w.estimate).collect();
            match self.decide(&estimates).await {
                Ok(decisions) => {
                    for (waiter, decision) in batch.into_iter().zip(decisions) {
                        // A caller that stopped waiting just drops its decision (a grant then
                        // counts in the window unused, as a lost reply always did).
                        let _ = waiter.reply.send(decision);
                    }
                }
                Err(e) => {
                    for waiter in batch {
                        let _ = waiter.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// One call of acquire.lua for `batch` (estimates): a decision per estimate, in order.
    async fn decide(&self, batch: &[u64]) -> Result<Vec<Result<Decision, RateLimitError>>, RateLimitError> {
        let mut inv = self.invocation(&ACQUIRE);
        for estimate in batch {
            inv.arg(*estimate);
        }
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| RateLimitError::Redis { operation: "acquire", source })?;
        if reply.len() != 1 + 2 * batch.len() {
            return Err(RateLimitError::Reply {
                script: "acquire",
                detail: format!("{} items for {} requests (expected {})", reply.len(), batch.len(), 1 + 2 * batch.len()),
            });
        }
        let now = int_at(&reply, 0, "acquire")?;
        let mut decisions = Vec::with_capacity(batch.len());
        for (i, &estimate) in batch.iter().enumerate() {
            let value = int_at(&reply, 2 + 2 * i, "acquire")?;
            let wait = |reason| Ok(Decision::Wait { wait: Duration::from_millis(value), reason });
            decisions.push(match signed_at(&reply, 1 + 2 * i, "acquire")? {
                1 => Ok(Decision::Granted(Reservation { id: value, granted_at_ms: now, estimated_tokens: estimate, limiter: self.tag })),
                2 => wait(WaitReason::Requests),
                3 => wait(WaitReason::Tokens),
                4 => wait(WaitReason::Cooldown),
                // The script's own copy of the check (it sees the same limits as this process).
                5 => Err(self.too_large(estimate)),
                n => return Err(RateLimitError::Reply { script: "acquire", detail: format!("item {}: unknown outcome {n}", 1 + 2 * i) }),
            });
        }
        Ok(decisions)
    }

    /// Acquires, sleeping exactly the wait Redis returned (plus a little jitter so waiters do not
    /// wake in lock-step) between attempts, until granted. `Ok(None)` if `cancel` fired first.
    /// Redis errors are logged and retried with capped backoff (never a panic, never a busy loop);
    /// the only error returned is [`RateLimitError::EstimateTooLarge`], which no wait can cure.
    pub async fn acquire_wait(&self, estimated_tokens: u64, cancel: &CancellationToken) -> Result<Option<Reservation>, RateLimitError> {
        if estimated_tokens > self.settings.tokens_per_window {
            return Err(self.too_large(estimated_tokens));
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let delay = match self.acquire(estimated_tokens).await {
                Ok(Decision::Granted(reservation)) => return Ok(Some(reservation)),
                Ok(Decision::Wait { wait, reason }) => {
                    backoff.reset();
                    tracing::debug!(limiter = %self.settings.name, reason = reason.as_str(), "rate limited: waiting {} ms", wait.as_millis());
                    wait + jitter(wait)
                }
                Err(e @ RateLimitError::EstimateTooLarge { .. }) => return Err(e),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(limiter = %self.settings.name, "rate limiter unavailable ({e}): retrying in {} ms", delay.as_millis());
                    delay
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Charges `reservation` the tokens the API reported. Absolute and idempotent (a retry with the
    /// same numbers changes nothing). A settle after the grant left the window still charges the
    /// tokens ([`Settlement::Late`]): the ledger holds what the API really used, however slow the
    /// call. A reservation of another limiter is left alone ([`Settlement::Unknown`]).
    pub async fn settle(&self, reservation: &Reservation, actual_tokens: u64) -> Result<Settlement, RateLimitError> {
        if reservation.limiter != self.tag {
            return Ok(Settlement::Unknown);
        }
        let mut inv = self.invocation(&SETTLE);
        inv.arg(reservation.id).arg(actual_tokens).arg(reservation.granted_at_ms);
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| RateLimitError::Redis { operation: "settle", source })?;
        match signed_at(&reply, 0, "settle")? {
            1 => {
                let extra_at = signed_at(&reply, 3, "settle")?;
                Ok(Settlement::Settled {
                    at_grant: int_at(&reply, 1, "settle")?,
                    extra: int_at(&reply, 2, "settle")?,
                    extra_at_ms: (extra_at >= 0).then_some(extra_at as u64),
                })
            }
            2 => {
                let at = signed_at(&reply, 3, "settle")?;
                Ok(Settlement::Late { tokens: int_at(&reply, 2, "settle")?, at_ms: (at >= 0).then_some(at as u64) })
            }
            n => Err(RateLimitError::Reply { script: "settle", detail: format!("unknown outcome {n}") }),
        }
    }

    /// After an HTTP 429: nothing is admitted anywhere for `duration` (a running cooldown is only
    /// ever extended). Returns the end of the cooldown on the Redis clock (ms).
    pub async fn cooldown(&self, duration: Duration) -> Result<u64, RateLimitError> {
        let mut inv = self.invocation(&COOLDOWN);
        inv.arg(duration.as_millis().min(1 << 52) as u64);
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| RateLimitError::Redis { operation: "cooldown", source })?;
        int_at(&reply, 0, "cooldown")
    }

    pub async fn status(&self) -> Result<RateLimitStatus, RateLimitError> {
        let reply: Vec<Value> = self
            .invocation(&STATUS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| RateLimitError::Redis { operation: "status", source })?;
        let cooldown_ms = int_at(&reply, 2, "status")?;
        Ok(RateLimitStatus {
            requests_in_window: int_at(&reply, 0, "status")?,
            tokens_in_window: int_at(&reply, 1, "status")?,
            requests_per_window: self.settings.requests_per_window,
            tokens_per_window: self.settings.tokens_per_window,
            window: self.settings.held_window(),
            arrival_margin: self.settings.arrival_margin,
            cooldown_remaining: (cooldown_ms > 0).then(|| Duration::from_millis(cooldown_ms)),
            now_ms: int_at(&reply, 3, "status")?,
        })
    }
}

/// A leading acquire in progress: if its caller drops it before it is done, the acquires queued
/// behind it still get a sender.
struct Lead<'a> {
    limiter: &'a RateLimiter,
    done: bool,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.finish_lead();
        }
    }
}

/// 0 to 2 % of the wait, at least up to 2 ms and at most 20 ms: enough to spread waiters that got
/// the same answer, small enough not to waste capacity.
fn jitter(wait: Duration) -> Duration {
    let cap = (wait.as_micros() as u64 / 50).clamp(2_000, 20_000);
    Duration::from_micros(rand::random_range(0..=cap))
}

fn signed_at(reply: &[Value], i: usize, script: &'static str) -> Result<i64, RateLimitError> {
    registre_runtime::script::signed_at(reply, i).map_err(|detail| RateLimitError::Reply { script, detail })
}

fn int_at(reply: &[Value], i: usize, script: &'static str) -> Result<u64, RateLimitError> {
    registre_runtime::script::int_at(reply, i).map_err(|detail| RateLimitError::Reply { script, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_small() {
        for ms in [0u64, 1, 50, 1000, 60_000] {
            let j = jitter(Duration::from_millis(ms));
            assert!(j <= Duration::from_millis(20), "{ms} ms → {j:?}");
        }
    }
}
