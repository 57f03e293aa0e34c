//! `registrectl site-check`: the registry site driven one step at a time for one document, with an
//! account of an environment's `worker_accounts` leased exactly as a worker leases it (so a running
//! worker is never logged out). Prints the step table of registre_fetch's site check and the folder
//! holding a screenshot and the HTML of every step; exit 0 when every step passed, 1 otherwise.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use registre_config::Config;
use registre_extraction::accounts::QueueAccounts;
use registre_fetch::{Account, AccountError, AccountProvider, BoxFuture, DocumentRequest, DocumentSource, RegistryFetcher, RegistrySettings};
use registre_queue::EnvQueue;

use crate::args::SiteCheckArgs;
use crate::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

/// How many accounts `--account NAME` may hold aside while looking for NAME.
const MAX_OTHERS: usize = 50;

/// `--account NAME`: only that account, leased like any other; the others acquired on the way are
/// given back at once.
struct Named {
    inner: Arc<QueueAccounts>,
    name: String,
}

impl AccountProvider for Named {
    fn acquire(&self) -> BoxFuture<'_, Result<Account, AccountError>> {
        Box::pin(async move {
            let mut others = Vec::new();
            let found = loop {
                match self.inner.acquire().await {
                    Ok(account) if account.username == self.name => break Ok(account),
                    Ok(other) if others.len() < MAX_OTHERS => others.push(other),
                    Ok(other) => {
                        others.push(other);
                        break Err(AccountError::Other(format!("account {} not found among the free accounts", self.name)));
                    }
                    Err(AccountError::NoneAvailable) => {
                        break Err(AccountError::Other(format!("account {} is not free (in use by a worker, disabled, or unknown)", self.name)))
                    }
                    Err(e) => break Err(e),
                }
            };
            for other in &others {
                self.inner.release(other).await;
            }
            found
        })
    }

    fn release<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        self.inner.release(account)
    }

    fn report_login_failure<'a>(&'a self, account: &'a Account, reason: &'a str) -> BoxFuture<'a, ()> {
        self.inner.report_login_failure(account, reason)
    }

    fn report_login_success<'a>(&'a self, account: &'a Account) -> BoxFuture<'a, ()> {
        self.inner.report_login_success(account)
    }
}

pub async fn site_check(config: &Config, args: SiteCheckArgs) -> i32 {
    let env = match &args.environment {
        Some(name) => config.environments.iter().find(|e| e.name.as_str() == name.trim()),
        None => config.environments.iter().min_by_key(|e| e.name),
    };
    let Some(env) = env else {
        eprintln!("registrectl: site-check: environment {:?} is not configured", args.environment.as_deref().unwrap_or("(none)"));
        return EXIT_USAGE;
    };
    let settings = match RegistrySettings::from_config(&config.registre) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("registrectl: site-check: {e}");
            return EXIT_USAGE;
        }
    };
    let queue = match EnvQueue::connect(env, &config.queue, 2) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("registrectl: site-check: {}: {e}", env.name.as_str());
            return EXIT_FAILED;
        }
    };
    let accounts = Arc::new(QueueAccounts::new(Arc::new(queue), config.queue.lease_ttl, config.queue.call_timeout));
    let provider: Arc<dyn AccountProvider> = match &args.account {
        Some(name) => Arc::new(Named { inner: accounts, name: name.trim().to_string() }),
        None => accounts,
    };
    let source: DocumentSource = match args.source.parse() {
        Ok(s) => s,
        Err(_) => {
            eprintln!("registrectl: site-check: --source {:?}: expected acte, index or plan_cadastraux", args.source);
            return EXIT_USAGE;
        }
    };
    let request = DocumentRequest {
        circonscription_fonciere: args.document.circonscription.clone(),
        cadastre: args.document.cadastre.clone(),
        designation_secondaire: args.document.designation.clone(),
        acte_type: args.document.acte_type.clone(),
        ..DocumentRequest::new(source, args.number.clone())
    };
    let folder = args.folder.clone().unwrap_or_else(|| {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        std::env::temp_dir().join(format!("registre-site-check-{}-{millis}", source.as_str()))
    });
    println!("site-check of {} on {} with an account of {}", request.describe(), settings.site.base_url, env.name.as_str());
    if args.fetch {
        println!("--fetch: the check goes through to the document and downloads it: this MAY CHARGE the account");
    }
    let report = match RegistryFetcher::site_check(settings, provider, &request, folder, args.fetch).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("registrectl: site-check: {e}");
            return EXIT_FAILED;
        }
    };
    print!("{}", report.table());
    println!("screenshot and HTML of every step: {}", report.folder.display());
    if report.stopped_before_document {
        println!("stopped before the submit that opens a document: nothing was charged (--fetch goes on)");
    }
    if report.passed() {
        println!("site-check: every step passed");
        EXIT_OK
    } else {
        println!("site-check: FAILED (see the table and the folder; docs/fetchers.md says how to adapt registry-site.toml)");
        EXIT_FAILED
    }
}
