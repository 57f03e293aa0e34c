//! One rate limit for an external API (the OCR API: requests AND tokens per rolling window),
//! shared through Redis by every worker in every process on every server (docs/design.md §5).
//!
//! The story at a glance:
//! - a [`RateLimiter`] (built from [`RateLimitSettings`], usually from the OCR_RATE_LIMIT_*
//!   configuration) asks [`RateLimiter::acquire`] for `estimated_tokens` and gets a [`Decision`]:
//!   [`Decision::Granted`] with a [`Reservation`], or [`Decision::Wait`] with how long until the
//!   request would fit and why ([`WaitReason`]);
//! - callers normally use [`RateLimiter::acquire_wait`], which sleeps exactly that long and
//!   retries until granted or cancelled, so nobody polls blindly;
//! - after the call, [`RateLimiter::settle`] charges the reservation the tokens the API reported
//!   ([`Settlement`]); after an HTTP 429, [`RateLimiter::cooldown`] stops every worker everywhere;
//! - [`RateLimiter::status`] reads the current rolling window ([`RateLimitStatus`]);
//! - every failure is a [`RateLimitError`].
//!
//! Every operation is ONE Lua script run atomically by Redis on the Redis server clock, so in any
//! rolling window admitted requests ≤ RPM and charged tokens ≤ TPM under any concurrency, and
//! servers with skewed clocks agree. The acquires one process has in flight at the same moment
//! share one script call, which decides them one after the other (batch.rs). Keys ([`registre_domain::keys::RateLimitKeys`]) live under `ratelimit:{<name>}:`
//! (a Redis Cluster hash tag: one limiter's keys share a slot). State kept: one sorted-set entry
//! per request granted in the last window (at most RPM), named after its reservation and the
//! tokens charged at its grant, at most one extra charge per under-estimated reservation, and a
//! small hash of counters (count, sums, last id) so a grant reads nothing else; everything expires
//! one window after its time. See docs/rate-limiter.md for the operator's view.

mod batch;
mod limiter;

pub use limiter::{Decision, RateLimitSettings, RateLimitStatus, RateLimiter, Reservation, Settlement, WaitReason};

/// Clone: the acquires decided by one script call share its failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RateLimitError {
    /// The request could never be admitted: its estimate alone is more than a whole window allows.
    #[error(
        "rate limit {name}: estimate of {estimated_tokens} tokens exceeds the whole budget of {tokens_per_window} \
         tokens per window; it can never be admitted (split the request or raise OCR_RATE_LIMIT_TPM)"
    )]
    EstimateTooLarge { name: String, estimated_tokens: u64, tokens_per_window: u64 },
    #[error("rate limit settings refused: {0}")]
    InvalidSettings(String),
    #[error("Redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("unexpected reply from the rate-limit script {script}: {detail}")]
    Reply { script: &'static str, detail: String },
    /// The call that was to decide this acquire was dropped before it answered (its tokio
    /// runtime shut down); nothing is known about it. Asking again is safe.
    #[error("rate limit {name}: the script call deciding this acquire was abandoned (runtime shutting down)")]
    Abandoned { name: String },
}
