//! Registry login accounts. The queue crate implements [`AccountProvider`] with `worker_accounts`
//! rows claimed under a lease (one worker per account at a time) and counts `failure_count`;
//! [`InMemoryAccounts`] serves tests and single-process setups.

use std::sync::Mutex;

use registre_config::Secret;

use crate::BoxFuture;

/// One registry login. Debug shows the username, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The provider's identifier (a `worker_accounts` id), used to release or report it.
    pub id: String,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Every account is held by another worker or disabled.
    #[error("every registry account is in use or disabled")]
    NoneAvailable,
    #[error("{0}")]
    Other(String),
}

/// Where the registry fetcher gets its login. An account is held from `acquire` until `release`
/// (the browser session is closed), so no two workers use it at the same time.
pub trait AccountProvider: Send + Sync {
    fn acquire(&self) -> BoxFuture<'_, Result<Account, AccountError>>;

    /// The session using `account` is closed: another worker may take it.
    fn release<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()>;

    /// The registry refused `account` (`reason` is the site's message): count it (failure_count).
    fn report_login_failure<'a>(&'a self, account: &'a Account, reason: &'a str) -> BoxFuture<'a, ()>;

    /// The registry accepted `account` (a provider may reset its failure count).
    fn report_login_success<'a>(&'a self, _account: &'a Account) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Accounts held in memory: the free one with the fewest refused logins is handed out (first of
/// equals), so a refused account rests behind the others as with `worker_accounts`; failures are
/// counted per account.
#[derive(Debug, Default)]
pub struct InMemoryAccounts {
    state: Mutex<Vec<Slot>>,
}

#[derive(Debug)]
struct Slot {
    account: Account,
    in_use: bool,
    failures: u32,
    successes: u32,
}

impl InMemoryAccounts {
    pub fn new(accounts: impl IntoIterator<Item = (String, Secret)>) -> Self {
        let slots = accounts
            .into_iter()
            .enumerate()
            .map(|(i, (username, password))| Slot {
                account: Account { id: format!("account-{}", i + 1), username, password },
                in_use: false,
                failures: 0,
                successes: 0,
            })
            .collect();
        InMemoryAccounts { state: Mutex::new(slots) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<Slot>) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Failed logins counted for `username`.
    pub fn failure_count(&self, username: &str) -> u32 {
        self.with(|s| s.iter().find(|s| s.account.username == username).map_or(0, |s| s.failures))
    }

    /// Successful logins counted for `username`.
    pub fn success_count(&self, username: &str) -> u32 {
        self.with(|s| s.iter().find(|s| s.account.username == username).map_or(0, |s| s.successes))
    }

    /// Whether `username` is currently held by a session.
    pub fn in_use(&self, username: &str) -> bool {
        self.with(|s| s.iter().any(|s| s.account.username == username && s.in_use))
    }
}

impl AccountProvider for InMemoryAccounts {
    fn acquire(&self) -> BoxFuture<'_, Result<Account, AccountError>> {
        let got = self.with(|slots| {
            let fewest = slots.iter().filter(|s| !s.in_use).map(|s| s.failures).min();
            slots.iter_mut().find(|s| !s.in_use && Some(s.failures) == fewest).map(|s| {
                s.in_use = true;
                s.account.clone()
            })
        });
        Box::pin(async move { got.ok_or(AccountError::NoneAvailable) })
    }

    fn release<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        self.with(|slots| slots.iter_mut().filter(|s| s.account.id == account.id).for_each(|s| s.in_use = false));
        Box::pin(async {})
    }

    fn report_login_failure<'a>(&'a self, account: &'a Account, _reason: &'a str) -> BoxFuture<'a, ()> {
        self.with(|slots| slots.iter_mut().filter(|s| s.account.id == account.id).for_each(|s| s.failures += 1));
        Box::pin(async {})
    }

    fn report_login_success<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        self.with(|slots| slots.iter_mut().filter(|s| s.account.id == account.id).for_each(|s| s.successes += 1));
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accounts_are_exclusive_and_passwords_hidden() {
        let accounts = InMemoryAccounts::new([("alice".to_string(), Secret::new("hunter2"))]);
        let a = accounts.acquire().await.unwrap();
        assert!(!format!("{a:?} {accounts:?}").contains("hunter2"));
        assert_eq!(accounts.acquire().await, Err(AccountError::NoneAvailable));
        accounts.report_login_failure(&a, "refused").await;
        accounts.release(&a).await;
        assert_eq!(accounts.failure_count("alice"), 1);
        assert!(accounts.acquire().await.is_ok());
    }
}
