//! Typed fetch errors. The worker decides from the variant (crash → release without counting an
//! attempt; the site rejecting the row's data → final failure); Display is the readable
//! `error_message` stored on the queue row.

use std::time::Duration;

use crate::pdf::NotAPdf;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The source has no such document. `document` names it, `detail` says where it was looked for.
    #[error("document not found: {document} ({detail})")]
    NotFound { document: String, detail: String },
    /// The registry refused the account's credentials (already reported to the account provider).
    #[error("login failed for account {account}: {reason}")]
    LoginFailed { account: String, reason: String },
    /// No registry account is free right now: not the document's fault.
    #[error("no registry account available: {0}")]
    NoAccount(String),
    /// The fetch took longer than EXTRACTION_TIMEOUT (or a step of it longer than its own bound).
    #[error("timed out after {}s: {what}", after.as_secs_f64())]
    Timeout { after: Duration, what: String },
    /// The browser or chromedriver died. The fetcher drops its session and starts a new browser on
    /// the next fetch; the worker releases the job without counting an attempt.
    #[error("browser crashed: {0}")]
    BrowserCrashed(String),
    /// The bytes fetched are not a PDF.
    #[error("{source_name} is not a PDF: {reason}")]
    NotAPdf { source_name: String, reason: NotAPdf },
    /// The registry refused the request for a reason in the row's data (the text of its error
    /// cell, verbatim, or a value it does not offer). `step` names where: `index search`, `choice`...
    /// Final: the row goes to Erreur at once, retrying cannot help.
    #[error("{step}: {message}")]
    Rejected { step: String, message: String },
    /// Anything else, with its context.
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    /// Whether a failure of this kind should count as one of the row's attempts. A crashed browser
    /// or a missing account says nothing about the document, so the job is released instead.
    pub fn counts_as_attempt(&self) -> bool {
        !matches!(self, FetchError::BrowserCrashed(_) | FetchError::NoAccount(_))
    }

    /// Whether the failure lies in the row's data (the site said so): the row fails for good at
    /// once instead of being retried with backoff like a site or network failure.
    pub fn is_final(&self) -> bool {
        matches!(self, FetchError::Rejected { .. })
    }
}
