//! The alert book: conditions that must hold for a duration before an alert fires,
//! the active alerts, and a bounded list of resolved ones.
//!
//! Each evaluation passes the conditions that hold *now* for a set of rules; a
//! condition seen holding since `since` fires once `now - since >= for`, and an alert
//! whose condition no longer holds resolves. Both are `tracing` events. Tracking is
//! bounded: per rule at most `max_subjects_per_rule` subjects are tracked, the
//! others counted as `untracked`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::views::unix_ms;

/// One alert, active or resolved, as `/alerts` returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique within this watch.
    pub id: u64,
    /// The rule: `process_usage`, `mailbox_budget`, `mailbox_fill`, `mailbox_len`,
    /// `spawn_refusal_rate`, `message_loss_rate` or `slow_handler`.
    pub rule: String,
    /// What it is about: `node`, or a process (`<1.42.0> name`).
    pub subject: String,
    /// One line for people.
    pub message: String,
    /// The measure when the alert fired (latest while active).
    pub value: f64,
    /// The threshold it is above.
    pub threshold: f64,
    /// How long the measure had to stay above (seconds).
    pub for_secs: f64,
    /// When the measure was first seen above (ms since the Unix epoch).
    pub since_ms: u64,
    /// When the alert fired.
    pub fired_at_ms: u64,
    /// When it resolved (`null` while active).
    pub resolved_at_ms: Option<u64>,
}

/// `/alerts`: the active alerts and the most recent resolved ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertsView {
    /// Active alerts, oldest first.
    pub active: Vec<Alert>,
    /// Resolved alerts, most recent first.
    pub resolved: Vec<Alert>,
    /// Alerts fired since the watch started.
    pub fired_total: u64,
    /// Subjects not tracked because a rule already tracked its maximum.
    pub untracked: u64,
}

/// A condition that holds now.
pub(crate) struct Condition {
    pub(crate) rule: &'static str,
    pub(crate) subject: String,
    pub(crate) value: f64,
    pub(crate) threshold: f64,
    pub(crate) for_: Duration,
    pub(crate) message: String,
}

struct Track {
    since: Instant,
    since_ms: u64,
    active: Option<u64>,
}

pub(crate) struct AlertBook {
    tracked: HashMap<(&'static str, String), Track>,
    active: BTreeMap<u64, Alert>,
    resolved: VecDeque<Alert>,
    resolved_kept: usize,
    max_subjects: usize,
    next_id: u64,
    pub(crate) fired_total: u64,
    untracked: u64,
}

impl AlertBook {
    pub(crate) fn new(resolved_kept: usize, max_subjects: usize) -> Self {
        AlertBook {
            tracked: HashMap::new(),
            active: BTreeMap::new(),
            resolved: VecDeque::new(),
            resolved_kept,
            max_subjects,
            next_id: 1,
            fired_total: 0,
            untracked: 0,
        }
    }

    /// Evaluates `rules` with the conditions holding now (conditions of other rules
    /// are ignored). Returns the alerts fired by this evaluation.
    pub(crate) fn evaluate(
        &mut self,
        rules: &[&'static str],
        holding: Vec<Condition>,
        now: Instant,
    ) -> Vec<Alert> {
        let now_ms = unix_ms();
        let mut seen: HashMap<(&'static str, String), ()> = HashMap::new();
        let mut fired = Vec::new();
        for c in holding {
            if !rules.contains(&c.rule) {
                continue;
            }
            let key = (c.rule, c.subject.clone());
            if !self.tracked.contains_key(&key) {
                let per_rule = self.tracked.keys().filter(|(r, _)| *r == c.rule).count();
                if per_rule >= self.max_subjects {
                    self.untracked += 1;
                    continue;
                }
                self.tracked.insert(
                    key.clone(),
                    Track {
                        since: now,
                        since_ms: now_ms,
                        active: None,
                    },
                );
            }
            seen.insert(key.clone(), ());
            let t = self.tracked.get_mut(&key).expect("just inserted");
            match t.active {
                Some(id) => {
                    if let Some(a) = self.active.get_mut(&id) {
                        a.value = c.value;
                    }
                }
                None if now.duration_since(t.since) >= c.for_ => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.fired_total += 1;
                    t.active = Some(id);
                    let alert = Alert {
                        id,
                        rule: c.rule.into(),
                        subject: c.subject,
                        message: c.message,
                        value: c.value,
                        threshold: c.threshold,
                        for_secs: c.for_.as_secs_f64(),
                        since_ms: t.since_ms,
                        fired_at_ms: now_ms,
                        resolved_at_ms: None,
                    };
                    tracing::warn!(
                        rule = %alert.rule,
                        subject = %alert.subject,
                        value = alert.value,
                        threshold = alert.threshold,
                        "alert: {}",
                        alert.message
                    );
                    self.active.insert(id, alert.clone());
                    fired.push(alert);
                }
                None => {}
            }
        }
        let gone: Vec<(&'static str, String)> = self
            .tracked
            .keys()
            .filter(|k| rules.contains(&k.0) && !seen.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            let t = self.tracked.remove(&k).expect("listed");
            if let Some(mut a) = t.active.and_then(|id| self.active.remove(&id)) {
                a.resolved_at_ms = Some(now_ms);
                tracing::info!(rule = %a.rule, subject = %a.subject, "alert resolved: {}", a.message);
                self.resolved.push_front(a);
                self.resolved.truncate(self.resolved_kept);
            }
        }
        fired
    }

    pub(crate) fn view(&self, resolved: usize) -> AlertsView {
        AlertsView {
            active: self.active.values().cloned().collect(),
            resolved: self.resolved.iter().take(resolved).cloned().collect(),
            fired_total: self.fired_total,
            untracked: self.untracked,
        }
    }

    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(rule: &'static str, subject: &str, for_ms: u64) -> Condition {
        Condition {
            rule,
            subject: subject.into(),
            value: 1.0,
            threshold: 0.5,
            for_: Duration::from_millis(for_ms),
            message: format!("{rule} {subject}"),
        }
    }

    #[test]
    fn fires_only_after_holding_for_its_duration_then_resolves() {
        let mut b = AlertBook::new(10, 10);
        let t0 = Instant::now();
        assert!(b.evaluate(&["r"], vec![cond("r", "node", 100)], t0).is_empty());
        assert!(b
            .evaluate(
                &["r"],
                vec![cond("r", "node", 100)],
                t0 + Duration::from_millis(50)
            )
            .is_empty());
        let fired = b.evaluate(
            &["r"],
            vec![cond("r", "node", 100)],
            t0 + Duration::from_millis(100),
        );
        assert_eq!(fired.len(), 1);
        assert!(
            b.evaluate(
                &["r"],
                vec![cond("r", "node", 100)],
                t0 + Duration::from_millis(150)
            )
            .is_empty(),
            "fires once per occurrence"
        );
        assert_eq!(b.view(10).active.len(), 1);
        b.evaluate(&["r"], vec![], t0 + Duration::from_millis(200));
        let v = b.view(10);
        assert!(v.active.is_empty());
        assert_eq!(v.resolved.len(), 1);
        assert!(v.resolved[0].resolved_at_ms.is_some());
        assert_eq!(v.fired_total, 1);
    }

    #[test]
    fn a_dip_restarts_the_duration() {
        let mut b = AlertBook::new(10, 10);
        let t0 = Instant::now();
        b.evaluate(&["r"], vec![cond("r", "x", 100)], t0);
        b.evaluate(&["r"], vec![], t0 + Duration::from_millis(60));
        let fired = b.evaluate(&["r"], vec![cond("r", "x", 100)], t0 + Duration::from_millis(120));
        assert!(fired.is_empty(), "held only 0 ms since the dip");
    }

    #[test]
    fn other_rules_are_left_alone_and_subjects_are_bounded() {
        let mut b = AlertBook::new(10, 2);
        let t0 = Instant::now();
        b.evaluate(&["a"], vec![cond("a", "1", 0)], t0);
        assert_eq!(b.active_len(), 1);
        b.evaluate(&["b"], vec![], t0);
        assert_eq!(b.active_len(), 1, "evaluating rule b does not resolve rule a");
        b.evaluate(&["b"], (0..5).map(|i| cond("b", &i.to_string(), 0)).collect(), t0);
        let v = b.view(10);
        assert_eq!(v.active.len(), 3);
        assert_eq!(v.untracked, 3);
    }

    #[test]
    fn resolved_alerts_are_bounded() {
        let mut b = AlertBook::new(2, 10);
        let t0 = Instant::now();
        for i in 0..5 {
            b.evaluate(&["r"], vec![cond("r", &i.to_string(), 0)], t0);
            b.evaluate(&["r"], vec![], t0);
        }
        assert_eq!(b.view(100).resolved.len(), 2);
    }
}
