//! The acquires one process has in flight at the same moment, decided together: while the calls of
//! acquire.lua this limiter may have on their way (MAX_CALLS_IN_FLIGHT) are all out, the acquires
//! that arrive wait in a queue, and the next call decides all of them, in arrival order, in one
//! atomic script run. Exactness is untouched (the script decides them one after the other, exactly
//! as separate calls with nothing in between would; two calls on their way are two atomic runs, as
//! two processes' calls are) and each caller gets its own decision; Redis runs the script's fixed
//! cost (the call, TIME, reading and writing the state hash) once per call instead of once per
//! decision. An acquire that finds nothing queued and a call slot free is sent at once, alone, by
//! its own caller (it "leads"): batching never waits for company. Acquires that arrive while every
//! slot is taken are queued and sent by a sender task (started by the first of them, or handed over
//! by a leader when it is done).

use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::{Decision, RateLimitError};

/// At most this many decisions per script call (the script runs while Redis does nothing else).
pub(crate) const MAX_BATCH: usize = 128;

/// At most this many calls of one limiter on their way at once. Two: Redis runs one call's script
/// while the process reads the other's reply and queues the next batch, so neither side waits for
/// the other. Measured at 32 acquires in flight (`cargo bench -p registre-ratelimit`, quiet
/// machine): 1 call gave 0.89-1.12× the check+record pair, 2 gave 1.32-1.36×, 3 1.30×, 4 1.15-1.35×
/// (smaller batches: more of the script's fixed cost per decision).
const MAX_CALLS_IN_FLIGHT: usize = 2;

/// One acquire waiting for its decision.
pub(crate) struct Waiter {
    pub(crate) estimate: u64,
    pub(crate) reply: oneshot::Sender<Result<Decision, RateLimitError>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    /// Sender tasks running (each sends one call at a time until the queue is empty).
    senders: usize,
}

/// Shared by the clones of one [`crate::RateLimiter`].
#[derive(Default)]
pub(crate) struct Batches {
    queue: Mutex<Queue>,
}

impl Batches {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-changed (push and drain only).
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True when the caller may send its own acquire at once, alone (nothing waits and a call
    /// slot is free); it then holds that slot until [`Batches::finish_lead`].
    pub(crate) fn try_lead(&self) -> bool {
        let mut q = self.lock();
        if q.waiting.is_empty() && q.senders < MAX_CALLS_IN_FLIGHT {
            q.senders += 1;
            true
        } else {
            false
        }
    }

    /// A leader is done: gives its slot back, or keeps it for a sender the caller must start
    /// (true) when acquires queued meanwhile.
    pub(crate) fn finish_lead(&self) -> bool {
        let mut q = self.lock();
        if q.waiting.is_empty() {
            q.senders -= 1;
            false
        } else {
            true
        }
    }

    /// A slot whose sender cannot be started (no runtime): given back; if it was the last, the
    /// waiting acquires are dropped (their callers get [`RateLimitError::Abandoned`]).
    pub(crate) fn abandon_slot(&self) {
        let mut q = self.lock();
        q.senders -= 1;
        if q.senders == 0 {
            q.waiting.clear();
        }
    }

    /// Queues `waiter`. True when the caller must start a sender (fewer than the maximum run).
    pub(crate) fn push(&self, waiter: Waiter) -> bool {
        let mut q = self.lock();
        q.waiting.push(waiter);
        if q.senders < MAX_CALLS_IN_FLIGHT {
            q.senders += 1;
            true
        } else {
            false
        }
    }

    /// The sender slot of a sender started after [`Batches::push`] or [`Batches::finish_lead`].
    pub(crate) fn slot(&self) -> SenderSlot<'_> {
        SenderSlot { batches: self, released: false }
    }
}

/// A running sender. It takes the waiting acquires (at most [`MAX_BATCH`]) until none is left,
/// then gives its slot back, under the same lock as [`Batches::push`], so an acquire is never left
/// queued with no sender.
pub(crate) struct SenderSlot<'a> {
    batches: &'a Batches,
    released: bool,
}

impl SenderSlot<'_> {
    /// The next batch, oldest first; None (and the slot given back) when nothing waits.
    pub(crate) fn next_batch(&mut self) -> Option<Vec<Waiter>> {
        let mut q = self.batches.lock();
        if q.waiting.is_empty() {
            q.senders -= 1;
            self.released = true;
            return None;
        }
        let n = q.waiting.len().min(MAX_BATCH);
        if n == q.waiting.len() {
            Some(std::mem::take(&mut q.waiting))
        } else {
            Some(q.waiting.drain(..n).collect())
        }
    }
}

impl Drop for SenderSlot<'_> {
    /// A sender dropped before the queue emptied (its runtime shut down): its slot is given back,
    /// and if it was the last one the waiting acquires are dropped too, so their callers get
    /// [`RateLimitError::Abandoned`] instead of waiting forever.
    fn drop(&mut self) {
        if !self.released {
            self.batches.abandon_slot();
        }
    }
}
