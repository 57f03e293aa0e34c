//! The monitor's alerts: computed afresh every round from what the round saw, compared with the
//! incidents already open, so each alert fires ONCE when its condition appears and resolves once
//! when it has been clear for MONITOR_RESOLVE_AFTER_ROUNDS evaluated rounds in a row (no repeat
//! every round, no flapping of a condition that comes and goes such as `errors_growing`, and none
//! when a check could not run: an alert whose scope was not evaluated this round, e.g. an
//! environment that did not answer, stays open as is). The open incidents are saved in Redis
//! after each round ([`crate::store`]), so a restarted monitor neither fires them again nor forgets
//! to resolve them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use registre_config::EnvName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl Scope {
    /// `always`, `live`, `env:prod`, `env_live:prod`: how a saved incident names its scope.
    pub fn as_text(&self) -> String {
        match self {
            Scope::Env(e) => format!("env:{e}"),
            Scope::Live => "live".into(),
            Scope::EnvAndLive(e) => format!("env_live:{e}"),
            Scope::Always => "always".into(),
        }
    }

    pub fn from_text(text: &str) -> Option<Scope> {
        let env = |name: &str| EnvName::ALL.into_iter().find(|e| e.as_str() == name).map(EnvName::as_str);
        match text.split_once(':') {
            None if text == "always" => Some(Scope::Always),
            None if text == "live" => Some(Scope::Live),
            Some(("env", e)) => env(e).map(Scope::Env),
            Some(("env_live", e)) => env(e).map(Scope::EnvAndLive),
            _ => None,
        }
    }
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
    /// Evaluated rounds in a row without the condition (resolved at the configured number).
    pub clean_rounds: u32,
}

/// An incident as saved in Redis (one JSON value per alert key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedIncident {
    pub key: String,
    pub severity: Severity,
    pub message: String,
    pub scope: String,
    pub since: DateTime<Utc>,
    pub clean_rounds: u32,
}

impl Incident {
    pub fn saved(&self) -> SavedIncident {
        SavedIncident {
            key: self.alert.key.clone(),
            severity: self.alert.severity,
            message: self.alert.message.clone(),
            scope: self.alert.scope.as_text(),
            since: self.since,
            clean_rounds: self.clean_rounds,
        }
    }

    /// None for a record this version cannot read (it is then dropped, as an expired one is).
    pub fn from_saved(s: SavedIncident) -> Option<Incident> {
        let scope = Scope::from_text(&s.scope)?;
        Some(Incident {
            alert: Alert { key: s.key, severity: s.severity, message: s.message, scope },
            since: s.since,
            clean_rounds: s.clean_rounds,
        })
    }
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
#[derive(Debug)]
pub struct Incidents {
    open: BTreeMap<String, Incident>,
    /// Evaluated clean rounds after which an incident resolves (MONITOR_RESOLVE_AFTER_ROUNDS, ≥ 1).
    resolve_after: u32,
}

impl Default for Incidents {
    fn default() -> Incidents {
        Incidents::new(1)
    }
}

impl Incidents {
    pub fn new(resolve_after_rounds: u32) -> Incidents {
        Incidents { open: BTreeMap::new(), resolve_after: resolve_after_rounds.max(1) }
    }

    /// Incidents saved by an earlier run: open again, without firing.
    pub fn restore(&mut self, saved: impl IntoIterator<Item = Incident>) {
        for incident in saved {
            self.open.insert(incident.alert.key.clone(), incident);
        }
    }

    /// Applies one round: `seen` the conditions found, `evaluated(scope)` whether that part could
    /// be read. Returns what opened and what closed, in key order.
    pub fn update(&mut self, seen: Vec<Alert>, evaluated: impl Fn(&Scope) -> bool) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut next: BTreeMap<String, Incident> = BTreeMap::new();
        let now = Utc::now();
        for alert in seen {
            match self.open.remove(&alert.key) {
                // Still open: keep its start, refresh its message (numbers move), count again.
                Some(mut incident) => {
                    incident.alert = alert;
                    incident.clean_rounds = 0;
                    next.insert(incident.alert.key.clone(), incident);
                }
                None => {
                    changes.push(Change {
                        key: alert.key.clone(),
                        state: "firing",
                        severity: alert.severity,
                        message: alert.message.clone(),
                        since: now,
                        lasted_seconds: None,
                    });
                    next.insert(alert.key.clone(), Incident { alert, since: now, clean_rounds: 0 });
                }
            }
        }
        for (key, mut incident) in std::mem::take(&mut self.open) {
            if evaluated(&incident.alert.scope) {
                incident.clean_rounds += 1;
            }
            if incident.clean_rounds >= self.resolve_after {
                changes.push(Change {
                    key,
                    state: "resolved",
                    severity: incident.alert.severity,
                    message: incident.alert.message.clone(),
                    since: incident.since,
                    lasted_seconds: Some(u64::try_from((now - incident.since).num_seconds()).unwrap_or(0)),
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

    #[test]
    fn resolves_only_after_n_clean_rounds_and_a_relapse_restarts_the_count() {
        let mut i = Incidents::new(2);
        let all = |_: &Scope| true;
        let states = |c: Vec<Change>| c.iter().map(|c| (c.key.clone(), c.state)).collect::<Vec<_>>();
        assert_eq!(states(i.update(vec![alert("e", Scope::Env("prod"))], all)), [("e".to_string(), "firing")]);
        assert!(i.update(vec![], all).is_empty(), "one clean round is not enough");
        assert!(i.update(vec![alert("e", Scope::Env("prod"))], all).is_empty(), "back: no new firing");
        assert!(i.update(vec![], all).is_empty());
        assert!(i.update(vec![], |_| false).is_empty(), "a round that could not look counts nothing");
        assert_eq!(states(i.update(vec![], all)), [("e".to_string(), "resolved")]);
    }

    #[test]
    fn a_saved_incident_reads_back_the_same() {
        for scope in [Scope::Always, Scope::Live, Scope::Env("staging"), Scope::EnvAndLive("dev")] {
            let incident = Incident { alert: alert("k", scope), since: Utc::now(), clean_rounds: 1 };
            let back = Incident::from_saved(incident.saved()).expect("readable");
            assert_eq!((back.alert, back.since, back.clean_rounds), (incident.alert, incident.since, 1));
        }
        assert!(Scope::from_text("env:qa").is_none());
    }
}
