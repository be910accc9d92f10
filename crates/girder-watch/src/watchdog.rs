//! The slow-handler watchdog: the BEAM's `long_schedule` monitor for girder.
//!
//! Every process bumps a handler counter when a handler starts and when it returns
//! (a core hook: one relaxed load and store each). Every `scan_every_ms` the watchdog
//! reads which processes are inside a handler ([`Node::running_handlers`]); a process
//! seen in the *same* handler run for `budget_ms` or more is reported once: a
//! `tracing` warning naming it (pid, name, actor type), an entry in
//! [`reports`](Watchdog::reports), and — inside a [`Watch`](crate::Watch) — a
//! `slow_handler` alert until the handler returns. The watchdog's clock starts when
//! it first sees a run, so a report comes at most `budget_ms + 2 × scan_every_ms`
//! after the handler started, and never before `budget_ms`.
//!
//! A [`Watch`](crate::Watch) runs one; [`Watchdog::spawn`] runs one on its own (the
//! `slow-handler` drill does).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Node, Pid};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::state::short_type;
use crate::views::unix_ms;
use crate::WatchdogConfig;

/// A handler the watchdog reported running past its budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowHandler {
    /// The process.
    pub pid: String,
    /// Its name.
    pub name: Option<String>,
    /// Its actor type.
    pub actor_type: String,
    /// How long it had been running when reported (at least the budget).
    pub running_ms: u64,
    /// The budget.
    pub budget_ms: u64,
    /// When it was reported (ms since the Unix epoch).
    pub reported_at_ms: u64,
    /// How long it ran in all, once it returned (`null` while it runs). Measured
    /// by the watchdog's scans: accurate to a scan period.
    pub finished_after_ms: Option<u64>,
}

/// A handler past its budget at the last scan.
pub(crate) struct OverBudget {
    pub(crate) subject: String,
    pub(crate) actor_type: String,
    pub(crate) running: Duration,
    pub(crate) budget: Duration,
}

#[derive(Default)]
struct Seen {
    run: u64,
    since: Option<Instant>,
    reported: bool,
    subject: String,
    actor_type: String,
}

#[derive(Default)]
struct Book {
    seen: HashMap<Pid, Seen>,
    reports: VecDeque<SlowHandler>,
    reports_total: u64,
    over: Vec<OverBudget>,
}

/// Reports handlers running past a time budget. See the [module docs](self).
pub struct Watchdog {
    cfg: WatchdogConfig,
    book: Mutex<Book>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// A watchdog with `cfg` (its `enabled` flag is for [`Watch`](crate::Watch)).
    pub fn new(cfg: WatchdogConfig) -> Self {
        Watchdog {
            cfg,
            book: Mutex::new(Book::default()),
        }
    }

    /// Scans `node` every `scan_every_ms` on the current tokio runtime until the
    /// returned task is aborted.
    pub fn spawn(self: &Arc<Self>, node: Node) -> tokio::task::JoinHandle<()> {
        let wd = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(wd.cfg.scan_every_ms.max(1)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                wd.scan(&node);
            }
        })
    }

    /// One scan of `node`. Returns the handlers reported by this scan.
    pub fn scan(&self, node: &Node) -> Vec<SlowHandler> {
        let running = node.running_handlers();
        let now = Instant::now();
        let budget = Duration::from_millis(self.cfg.budget_ms);
        let mut book = self.book.lock();
        let mut next: HashMap<Pid, Seen> = HashMap::with_capacity(running.len());
        for h in &running {
            let entry = match book.seen.remove(&h.pid) {
                Some(s) if s.run == h.run => s,
                old => {
                    if let Some(old) = old {
                        finish(&mut book.reports, h.pid, &old, now);
                    }
                    Seen {
                        run: h.run,
                        since: Some(now),
                        ..Seen::default()
                    }
                }
            };
            next.insert(h.pid, entry);
        }
        // Handlers that returned since the last scan: note how long they ran.
        let returned: Vec<(Pid, Seen)> = book.seen.drain().collect();
        for (pid, old) in returned {
            finish(&mut book.reports, pid, &old, now);
        }
        let mut fresh = Vec::new();
        let mut over = Vec::new();
        for (pid, s) in next.iter_mut() {
            let since = s.since.unwrap_or(now);
            let running_for = now.duration_since(since);
            if running_for < budget {
                continue;
            }
            if !s.reported {
                s.reported = true;
                let info = node.process_info(*pid);
                let name = info.as_ref().and_then(|i| i.name.as_deref().map(str::to_owned));
                s.actor_type = info.as_ref().map_or("?", |i| i.actor_type).to_owned();
                s.subject = match &name {
                    Some(n) => format!("{pid} {n}"),
                    None => format!("{pid} {}", short_type(&s.actor_type)),
                };
                tracing::warn!(
                    pid = %pid,
                    name = name.as_deref().unwrap_or(""),
                    actor_type = %s.actor_type,
                    running_ms = running_for.as_millis() as u64,
                    budget_ms = self.cfg.budget_ms,
                    "slow handler: {} has been running for {} ms (budget {} ms)",
                    s.subject,
                    running_for.as_millis(),
                    self.cfg.budget_ms
                );
                let report = SlowHandler {
                    pid: pid.to_string(),
                    name,
                    actor_type: s.actor_type.clone(),
                    running_ms: running_for.as_millis() as u64,
                    budget_ms: self.cfg.budget_ms,
                    reported_at_ms: unix_ms(),
                    finished_after_ms: None,
                };
                book.reports_total += 1;
                book.reports.push_front(report.clone());
                book.reports.truncate(self.cfg.reports_kept);
                fresh.push(report);
            }
            over.push(OverBudget {
                subject: s.subject.clone(),
                actor_type: s.actor_type.clone(),
                running: running_for,
                budget,
            });
        }
        book.seen = next;
        book.over = over;
        fresh
    }

    /// Reports kept (at most `reports_kept`), most recent first.
    pub fn reports(&self) -> Vec<SlowHandler> {
        self.book.lock().reports.iter().cloned().collect()
    }

    /// Handlers reported since the watchdog started.
    pub fn reports_total(&self) -> u64 {
        self.book.lock().reports_total
    }

    /// Handlers past the budget at the last scan.
    pub fn over_budget(&self) -> usize {
        self.book.lock().over.len()
    }

    pub(crate) fn over_budget_now(&self) -> Vec<OverBudget> {
        self.book
            .lock()
            .over
            .iter()
            .map(|o| OverBudget {
                subject: o.subject.clone(),
                actor_type: o.actor_type.clone(),
                running: o.running,
                budget: o.budget,
            })
            .collect()
    }

    /// Forgets the handlers seen (the watched node changed).
    pub(crate) fn forget(&self) {
        let mut book = self.book.lock();
        book.seen.clear();
        book.over.clear();
    }
}

/// A reported handler returned: record how long it ran.
fn finish(reports: &mut VecDeque<SlowHandler>, pid: Pid, seen: &Seen, now: Instant) {
    if !seen.reported {
        return;
    }
    let pid = pid.to_string();
    if let Some(r) = reports
        .iter_mut()
        .find(|r| r.pid == pid && r.finished_after_ms.is_none())
    {
        r.finished_after_ms = seen.since.map(|s| now.duration_since(s).as_millis() as u64);
    }
}
