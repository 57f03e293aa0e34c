//! Registry logins from the `worker_accounts` table, for the `registry` fetcher (docs/design.md §9),
//! through the queue backend of the first configured environment (prod, then staging, then dev),
//! so it works with direct Postgres and with Supabase REST alike.
//!
//! An account is held by one worker at a time, on every server, under a LEASE (REST has no
//! sessions to hang a lock on): `queue_acquire_account` lends a free one (fewest failures, then
//! least recently used) to a holder token unique to this acquisition, a task renews the lease
//! every third of QUEUE_LEASE_TTL_MS while the account is in use, and `release` frees it. A worker
//! that dies stops renewing: its account is free again once the lease expires. A refused login
//! adds one to `failure_count`; an accepted one resets it. Every call is one SQL function of
//! `crates/queue/functions/accounts.sql`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registre_config::{Config, EnvName};
use registre_fetch::{Account, AccountError, AccountProvider, BoxFuture};
use registre_queue::{EnvQueue, Queue, QueueError, Transition};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One account this provider holds: the holder token it was lent to and its renewal task.
struct Held {
    holder: String,
    stop: CancellationToken,
}

/// `worker_accounts` of one environment, through its queue backend.
pub struct QueueAccounts {
    env: EnvName,
    queue: Arc<EnvQueue>,
    lease_ms: i32,
    call_timeout: Duration,
    /// Account id → its holder token and renewal task.
    held: Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for QueueAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueAccounts").field("env", &self.env).field("lease_ms", &self.lease_ms).finish_non_exhaustive()
    }
}

impl QueueAccounts {
    /// Accounts of `queue`'s environment, lent for `lease` and renewed every third of it.
    pub fn new(queue: Arc<EnvQueue>, lease: Duration, call_timeout: Duration) -> QueueAccounts {
        let lease_ms = i32::try_from(lease.as_millis()).unwrap_or(i32::MAX).max(3);
        QueueAccounts { env: queue.env(), queue, lease_ms, call_timeout, held: Mutex::new(HashMap::new()) }
    }

    /// The accounts of the first configured environment (prod, then staging, then dev), whichever
    /// backend reaches it. None without any environment (the configuration refuses that anyway).
    pub fn from_config(config: &Config) -> Result<Option<QueueAccounts>, QueueError> {
        let Some(env) = config.environments.iter().min_by_key(|e| e.name) else { return Ok(None) };
        // Acquire, renew, release: a few short calls at a time.
        let queue = EnvQueue::connect(env, &config.queue, 2)?;
        Ok(Some(QueueAccounts::new(Arc::new(queue), config.queue.lease_ttl, config.queue.call_timeout)))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        // A panic while holding this lock cannot leave the map inconsistent: keep using it.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn other(&self, e: impl std::fmt::Display) -> AccountError {
        AccountError::Other(format!("worker_accounts of {}: {e}", self.env))
    }

    async fn bounded<T>(&self, call: impl std::future::Future<Output = Result<T, QueueError>>) -> Result<T, AccountError> {
        match tokio::time::timeout(self.call_timeout.saturating_mul(2), call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.other(e)),
            Err(_) => Err(self.other(format!("no answer within {} ms", self.call_timeout.saturating_mul(2).as_millis()))),
        }
    }

    async fn try_acquire(&self) -> Result<Account, AccountError> {
        let holder = format!("{}:{}:{}", registre_runtime::host_name(), std::process::id(), Uuid::new_v4().simple());
        let Some(lent) = self.bounded(self.queue.acquire_account(&holder, self.lease_ms)).await? else {
            return Err(AccountError::NoneAvailable);
        };
        let id = lent.id.to_string();
        let stop = CancellationToken::new();
        self.spawn_renewal(lent.id, lent.username.clone(), holder.clone(), stop.clone());
        if let Some(previous) = self.held().insert(id.clone(), Held { holder, stop }) {
            previous.stop.cancel();
        }
        Ok(Account { id, username: lent.username, password: lent.password })
    }

    /// Renews the lease every third of its length until `stop`; stops when the lease was lost.
    fn spawn_renewal(&self, id: Uuid, username: String, holder: String, stop: CancellationToken) {
        let queue = self.queue.clone();
        let lease_ms = self.lease_ms;
        let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1).max(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match queue.renew_account(id, &holder, lease_ms).await {
                    Ok(Transition::Applied) => {}
                    Ok(Transition::NotOwner) => {
                        tracing::warn!("registry account {username}: its lease was lost (expired and perhaps lent to another worker)");
                        return;
                    }
                    // The lease stays valid until it expires; the next beat tries again.
                    Err(e) => tracing::warn!("registry account {username}: lease renewal failed: {e}"),
                }
            }
        });
    }

    async fn report(&self, account: &Account, success: bool) {
        let Ok(id) = Uuid::parse_str(&account.id) else {
            tracing::warn!("registry account {}: not a worker_accounts id: login not recorded", account.username);
            return;
        };
        if let Err(e) = self.bounded(self.queue.report_account_login(id, success)).await {
            tracing::warn!("login of registry account {} not recorded: {e}", account.username);
        }
    }
}

impl Drop for QueueAccounts {
    // Stops the renewals: accounts not released explicitly come free when their leases expire.
    fn drop(&mut self) {
        for (_, held) in self.held().drain() {
            held.stop.cancel();
        }
    }
}

impl AccountProvider for QueueAccounts {
    fn acquire(&self) -> BoxFuture<'_, Result<Account, AccountError>> {
        Box::pin(self.try_acquire())
    }

    fn release<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let held = self.held().remove(&account.id);
            let Some(held) = held else { return };
            held.stop.cancel();
            let Ok(id) = Uuid::parse_str(&account.id) else { return };
            if let Err(e) = self.bounded(self.queue.release_account(id, &held.holder)).await {
                tracing::warn!("registry account {} not released ({e}): it comes free when its lease expires", account.username);
            }
        })
    }

    fn report_login_failure<'a>(&'a self, account: &'a Account, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::warn!("registry refused account {}: {reason} (failure_count + 1)", account.username);
            self.report(account, false).await;
        })
    }

    fn report_login_success<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(self.report(account, true))
    }
}
