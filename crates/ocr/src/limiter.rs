//! What the Gemini engine needs from a rate limiter, as a trait: admit a call for an estimated
//! number of tokens, settle it with the tokens the API reported, and impose a cooldown after a 429.
//! Implemented for the shared Redis limiter ([`registre_ratelimit::RateLimiter`]) and by
//! [`Unlimited`] (no limit, for tools and tests that run without Redis).

use std::future::Future;
use std::time::Duration;

use registre_ratelimit::{Decision, RateLimitError, RateLimiter, Reservation};
#[cfg(doc)]
use registre_ratelimit::RateLimitSettings;
use registre_runtime::Backoff;

/// A limiter failure the engine cannot cure by waiting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimiterError(pub String);

impl From<RateLimitError> for LimiterError {
    fn from(e: RateLimitError) -> Self {
        LimiterError(e.to_string())
    }
}

/// A rate limiter shared by every caller of one API.
pub trait ApiLimiter: Send + Sync {
    /// Proof of admission, handed back to [`ApiLimiter::settle`].
    type Ticket: Send + Sync;

    /// Waits until a call of `estimated_tokens` is admitted.
    fn admit(&self, estimated_tokens: u64) -> impl Future<Output = Result<Self::Ticket, LimiterError>> + Send;

    /// Charges the admitted call the tokens the API reported: its totalTokenCount; 0 for a call the
    /// API did not serve (error status, never connected); the estimate when it may have served it
    /// but said nothing (connection dropped, timeout). Also after the limiter's window has passed.
    fn settle(&self, ticket: Self::Ticket, actual_tokens: u64) -> impl Future<Output = ()> + Send;

    /// After an HTTP 429: every caller everywhere holds off for `duration`.
    fn cooldown(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// The shared Redis limiter. Redis outages while waiting are retried with backoff; settle and
/// cooldown failures are logged and never fail the document (the window only over-counts or the
/// cooldown is skipped, and the API's own 429s still stop us).
impl ApiLimiter for RateLimiter {
    type Ticket = Reservation;

    /// Asks until granted: a wait is slept exactly (plus a little jitter), a Redis error is
    /// retried with capped backoff. Each grant is held for the window plus the arrival margin
    /// (OCR_RATE_LIMIT_MARGIN_MS), which covers a call reaching the API up to that margin after
    /// its grant. A grant whose answer took longer than half the margin to come back (a stalled
    /// connection, a frozen process; [`RateLimitSettings::max_grant_age`]) is not used: the call
    /// could land after the margin and share the API's window with the next window's calls. Its
    /// request slot stays counted (no call is made on it) and a fresh grant is asked.
    async fn admit(&self, estimated_tokens: u64) -> Result<Reservation, LimiterError> {
        let started = std::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let max_age = self.settings().max_grant_age();
        loop {
            let asked = std::time::Instant::now();
            let delay = match self.acquire(estimated_tokens).await {
                Ok(Decision::Granted(reservation)) => {
                    let age = asked.elapsed();
                    if max_age.is_none_or(|max| age <= max) {
                        registre_telemetry::ratelimit_wait(started.elapsed());
                        return Ok(reservation);
                    }
                    tracing::warn!(
                        "rate limiter: grant {} came back after {} ms (slow or stalled Redis connection): not used, asking again",
                        reservation.id(),
                        age.as_millis()
                    );
                    // No call is made on it: its tokens go back, its request slot stays counted.
                    let _ = RateLimiter::settle(self, &reservation, 0).await;
                    Duration::ZERO
                }
                Ok(Decision::Wait { wait, .. }) => {
                    backoff.reset();
                    let cap = (wait.as_micros() as u64 / 50).clamp(2_000, 20_000);
                    wait + Duration::from_micros(rand::random_range(0..=cap))
                }
                Err(e @ RateLimitError::EstimateTooLarge { .. }) => return Err(e.into()),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!("rate limiter unavailable ({e}): retrying in {} ms", delay.as_millis());
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    async fn settle(&self, ticket: Reservation, actual_tokens: u64) {
        if let Err(e) = RateLimiter::settle(self, &ticket, actual_tokens).await {
            tracing::warn!("rate limiter: settling reservation {} with {actual_tokens} tokens failed: {e}", ticket.id());
        }
    }

    async fn cooldown(&self, duration: Duration) {
        match RateLimiter::cooldown(self, duration).await {
            Ok(_) => tracing::warn!("OCR API answered 429: shared cooldown of {} ms", duration.as_millis()),
            Err(e) => tracing::warn!("rate limiter: cooldown of {} ms could not be set: {e}", duration.as_millis()),
        }
    }
}

/// No limit at all (local tools, tests without Redis). Cooldowns are slept by the caller's retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl ApiLimiter for Unlimited {
    type Ticket = ();

    async fn admit(&self, _estimated_tokens: u64) -> Result<(), LimiterError> {
        Ok(())
    }

    async fn settle(&self, _ticket: (), _actual_tokens: u64) {}

    async fn cooldown(&self, _duration: Duration) {}
}

/// Lets tests and the pool share one limiter through an `Arc`.
impl<L: ApiLimiter> ApiLimiter for std::sync::Arc<L> {
    type Ticket = L::Ticket;

    fn admit(&self, estimated_tokens: u64) -> impl Future<Output = Result<Self::Ticket, LimiterError>> + Send {
        (**self).admit(estimated_tokens)
    }

    fn settle(&self, ticket: Self::Ticket, actual_tokens: u64) -> impl Future<Output = ()> + Send {
        (**self).settle(ticket, actual_tokens)
    }

    fn cooldown(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        (**self).cooldown(duration)
    }
}
