//! The monitor's alerts: computed afresh every round from what the round saw, compared with the
//! incidents already open, so each alert fires ONCE when its condition appears and resolves once
//! when it clears (no repeat every round, no flapping when a check could not run: an alert whose
//! scope was not evaluated this round, e.g. an environment that did not answer, stays open as is).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// What an alert depends on: when that part could not be read this round, its alerts carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An environment's queue (counts, ages, errors).
    Env(&'static str),
    /// Redis (workers, capacity, rate limit) — and, for "no worker", an environment's counts too.
    Live,
    EnvAndLive(&'static str),
    /// Always evaluated (e.g. "an environment is unreachable", "Redis is unreachable").
    Always,
}

/// One condition seen this round.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Stable identity of the incident, e.g. `no_worker:prod:extraction`.
    pub key: String,
    pub severity: Severity,
    pub message: String,
    pub scope: Scope,
}

/// An open incident.
#[derive(Debug, Clone)]
pub struct Incident {
    pub alert: Alert,
    pub since: DateTime<Utc>,
    started: Instant,
}

/// A change to report: an incident that opened or one that closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub key: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub severity: Severity,
    pub message: String,
    pub since: DateTime<Utc>,
    /// How long the incident lasted (resolved only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lasted_seconds: Option<u64>,
}

/// The open incidents between rounds.
#[derive(Debug, Default)]
pub struct Incidents {
    open: BTreeMap<String, Incident>,
}

impl Incidents {
    /// Applies one round: `seen` the conditions found, `evaluated(scope)` whether that part could
    /// be read. Returns what opened and what closed, in key order.
    pub fn update(&mut self, seen: Vec<Alert>, evaluated: impl Fn(&Scope) -> bool) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut next: BTreeMap<String, Incident> = BTreeMap::new();
        for alert in seen {
            match self.open.remove(&alert.key) {
                // Still open: keep its start, refresh its message (numbers move).
                Some(mut incident) => {
                    incident.alert = alert;
                    next.insert(incident.alert.key.clone(), incident);
                }
                None => {
                    let now = Utc::now();
                    changes.push(Change {
                        key: alert.key.clone(),
                        state: "firing",
                        severity: alert.severity,
                        message: alert.message.clone(),
                        since: now,
                        lasted_seconds: None,
                    });
                    next.insert(alert.key.clone(), Incident { alert, since: now, started: Instant::now() });
                }
            }
        }
        for (key, incident) in std::mem::take(&mut self.open) {
            if evaluated(&incident.alert.scope) {
                changes.push(Change {
                    key,
                    state: "resolved",
                    severity: incident.alert.severity,
                    message: incident.alert.message.clone(),
                    since: incident.since,
                    lasted_seconds: Some(incident.started.elapsed().as_secs()),
                });
            } else {
                next.insert(key, incident);
            }
        }
        self.open = next;
        changes.sort_by(|a, b| a.key.cmp(&b.key).then(a.state.cmp(b.state)));
        changes
    }

    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(key: &str, scope: Scope) -> Alert {
        Alert { key: key.into(), severity: Severity::Warning, message: format!("{key} happens"), scope }
    }

    #[test]
    fn fires_once_resolves_once_and_carries_over_what_was_not_evaluated() {
        let mut i = Incidents::default();
        let all = |_: &Scope| true;
        let c = i.update(vec![alert("a", Scope::Always), alert("b", Scope::Env("prod"))], all);
        assert_eq!(c.iter().map(|c| (c.key.as_str(), c.state)).collect::<Vec<_>>(), [("a", "firing"), ("b", "firing")]);
        assert!(i.update(vec![alert("a", Scope::Always), alert("b", Scope::Env("prod"))], all).is_empty());
        // prod could not be read: b stays open; a cleared.
        let c = i.update(vec![], |s| *s != Scope::Env("prod"));
        assert_eq!(c.iter().map(|c| (c.key.as_str(), c.state)).collect::<Vec<_>>(), [("a", "resolved")]);
        let c = i.update(vec![], all);
        assert_eq!(c.iter().map(|c| (c.key.as_str(), c.state)).collect::<Vec<_>>(), [("b", "resolved")]);
        assert_eq!(i.open().count(), 0);
    }
}
