//! The watch's shared state: the observed node, the latest reading, the history for
//! the page's sparklines, the alert book and the watchdog's reports; the collector
//! and the watchdog that keep them current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{Node, ProcessInfo};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Semaphore};

use crate::alerts::{AlertBook, AlertsView, Condition};
use crate::metrics::{export, Export, Sink};
use crate::views::{self, counters_of, unix_ms, ProcessView, Rates, SortKey, StatsView, Tree, COUNTER_COUNT};
use crate::watchdog::{SlowHandler, Watchdog};
use crate::{ExtraFn, WatchConfig};

/// Samples kept for the sparklines (one per collection).
pub const HISTORY_LEN: usize = 120;

/// Processes the page's tree shows.
pub(crate) const PAGE_TREE_NODES: usize = 300;

/// The page's sparklines: one sample per collection, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Sample times (ms since the Unix epoch).
    pub t: Vec<u64>,
    /// Live processes.
    pub processes: Vec<f64>,
    /// Bytes queued in mailboxes.
    pub mailbox_bytes: Vec<f64>,
    /// Messages queued.
    pub queued: Vec<f64>,
    /// Messages handled per second.
    pub handled_rate: Vec<f64>,
    /// Messages rejected, dropped or expired per second.
    pub lost_rate: Vec<f64>,
    /// Spawns refused per second.
    pub spawn_refusal_rate: Vec<f64>,
}

impl History {
    fn push(&mut self, t: u64, v: &StatsView, r: &Rates) {
        let cols: [(&mut Vec<f64>, f64); 6] = [
            (&mut self.processes, v.processes as f64),
            (&mut self.mailbox_bytes, v.mailbox_bytes as f64),
            (&mut self.queued, v.queued as f64),
            (&mut self.handled_rate, r.handled),
            (&mut self.lost_rate, r.lost()),
            (&mut self.spawn_refusal_rate, r.spawn_refusals),
        ];
        for (col, x) in cols {
            col.push(x);
            if col.len() > HISTORY_LEN {
                col.remove(0);
            }
        }
        self.t.push(t);
        if self.t.len() > HISTORY_LEN {
            self.t.remove(0);
        }
    }
}

/// `/api/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// When the reading was taken (ms since the Unix epoch).
    pub taken_at_ms: u64,
    /// Limits and counters.
    pub node: StatsView,
    /// Rates over the last collection period.
    pub rates: Rates,
    /// Handlers running past the watchdog budget right now.
    pub handlers_over_budget: usize,
    /// Handlers reported since the watch started.
    pub watchdog_reports: u64,
    /// Alerts active now.
    pub alerts_active: usize,
    /// What the `extra` hook returned (`null` without one).
    pub extra: serde_json::Value,
}

/// One frame of the live page (`/api/frame`, and each `/api/events` event).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// As `/api/stats`.
    pub stats: StatsResponse,
    /// The sparklines.
    pub history: History,
    /// The top processes by messages queued.
    pub top_mailbox: Vec<ProcessView>,
    /// The top processes by messages lost (rejected + dropped + expired).
    pub top_drops: Vec<ProcessView>,
    /// The supervision tree (at most 300 processes).
    pub tree: Tree,
    /// Active and recent alerts.
    pub alerts: AlertsView,
    /// Recent watchdog reports, most recent first.
    pub slow: Vec<SlowHandler>,
}

struct Reading {
    view: StatsView,
    at: Instant,
}

struct State {
    carried: [u64; COUNTER_COUNT],
    last: Option<Reading>,
    rates: Rates,
    procs: Arc<Vec<ProcessInfo>>,
    procs_at_ms: u64,
    history: History,
    alerts: AlertBook,
    frame: Arc<str>,
}

pub(crate) struct Shared {
    pub(crate) node: RwLock<Node>,
    pub(crate) cfg: WatchConfig,
    pub(crate) extra: Option<ExtraFn>,
    pub(crate) sink: &'static Sink,
    pub(crate) watchdog: Arc<Watchdog>,
    pub(crate) frames: broadcast::Sender<Arc<str>>,
    pub(crate) streams: Arc<Semaphore>,
    pub(crate) requests: Arc<Semaphore>,
    tick_lock: Mutex<()>,
    state: Mutex<State>,
}

const NODE_RULES: [&str; 4] = [
    "process_usage",
    "mailbox_budget",
    "spawn_refusal_rate",
    "message_loss_rate",
];
const PROCESS_RULES: [&str; 2] = ["mailbox_fill", "mailbox_len"];
const SLOW_RULE: &str = "slow_handler";

fn subject(p: &ProcessInfo) -> String {
    match &p.name {
        Some(n) => format!("{} {n}", p.pid),
        None => format!("{} {}", p.pid, short_type(p.actor_type)),
    }
}

/// `a::b::Worker<c::D>` → `Worker<D>`.
pub(crate) fn short_type(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut seg = String::new();
    for ch in t.chars() {
        match ch {
            ':' => seg.clear(),
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | '&' | ';' => {
                out.push_str(&seg);
                seg.clear();
                out.push(ch);
            }
            c => seg.push(c),
        }
    }
    out.push_str(&seg);
    out
}

impl Shared {
    pub(crate) fn new(node: Node, cfg: WatchConfig, extra: Option<ExtraFn>, sink: &'static Sink) -> Self {
        let (frames, _) = broadcast::channel(8);
        let rules = &cfg.rules;
        Shared {
            node: RwLock::new(node),
            streams: Arc::new(Semaphore::new(cfg.max_streams)),
            requests: Arc::new(Semaphore::new(cfg.max_requests)),
            state: Mutex::new(State {
                carried: [0; COUNTER_COUNT],
                last: None,
                rates: Rates::default(),
                procs: Arc::new(Vec::new()),
                procs_at_ms: 0,
                history: History::default(),
                alerts: AlertBook::new(rules.resolved_kept, rules.max_subjects_per_rule),
                frame: Arc::from("{}"),
            }),
            watchdog: Arc::new(Watchdog::new(cfg.watchdog.clone())),
            cfg,
            extra,
            sink,
            frames,
            tick_lock: Mutex::new(()),
        }
    }

    pub(crate) fn node(&self) -> Node {
        self.node.read().clone()
    }

    /// Switches to another node; counters carry on from the totals seen so far.
    pub(crate) fn observe(&self, node: Node) {
        let _tick = self.tick_lock.lock();
        let old = std::mem::replace(&mut *self.node.write(), node);
        let last = old.stats();
        let mut st = self.state.lock();
        for (c, v) in st.carried.iter_mut().zip(counters_of(&last)) {
            *c += v;
        }
        // The previous reading's view (totals, carried) stays the base for rates.
        drop(st);
        self.watchdog.forget();
    }

    /// An extra reading (a scrape): exported and shown, but rates, history and
    /// duration-based alerts stay paced by the collector.
    pub(crate) fn tick_now(&self) {
        self.collect(false)
    }

    /// The collector's periodic reading.
    pub(crate) fn tick(&self) {
        self.collect(true)
    }

    /// One collection: read the node, export metrics, evaluate alerts, build the
    /// page's frame and send it to the live streams.
    fn collect(&self, periodic: bool) {
        let _tick = self.tick_lock.lock();
        let node = self.node();
        let stats = node.stats();
        let procs = node.processes();
        let now = Instant::now();
        let now_ms = unix_ms();
        let extra = self.extra.as_ref().map_or(serde_json::Value::Null, |f| f());
        let cfg = &self.cfg;

        let mut st = self.state.lock();
        let view = StatsView::new(&stats, &st.carried, &procs);
        let rates = match (&st.last, periodic) {
            (Some(prev), true) => {
                Rates::between(&prev.view, &view, now.duration_since(prev.at).as_secs_f64())
            }
            (None, _) => Rates::default(),
            (Some(_), false) => st.rates.clone(),
        };
        if periodic {
            st.history.push(now_ms, &view, &rates);
        }

        // Alerts: node-wide rules, then per-process rules.
        let r = &cfg.rules;
        let mut holding = Vec::new();
        let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut node_rule = |rule: &'static str, t: &crate::Threshold, value: f64, what: String| {
            if t.enabled && value > t.above {
                holding.push(Condition {
                    rule,
                    subject: "node".into(),
                    value,
                    threshold: t.above,
                    for_: t.duration(),
                    message: what,
                });
            }
        };
        let usage = frac(stats.processes, stats.process_limit);
        node_rule(
            "process_usage",
            &r.process_usage,
            usage,
            format!(
                "{} of {} processes in use ({:.0} %), above {:.0} % for {} s",
                stats.processes,
                stats.process_limit,
                usage * 100.0,
                r.process_usage.above * 100.0,
                r.process_usage.for_secs
            ),
        );
        let budget = frac(stats.mailbox_bytes, stats.mailbox_budget_bytes);
        node_rule(
            "mailbox_budget",
            &r.mailbox_budget,
            budget,
            format!(
                "mailboxes hold {:.0} % of the node budget, above {:.0} % for {} s",
                budget * 100.0,
                r.mailbox_budget.above * 100.0,
                r.mailbox_budget.for_secs
            ),
        );
        node_rule(
            "spawn_refusal_rate",
            &r.spawn_refusal_rate,
            rates.spawn_refusals,
            format!(
                "{:.0} spawns refused per second, above {} for {} s",
                rates.spawn_refusals, r.spawn_refusal_rate.above, r.spawn_refusal_rate.for_secs
            ),
        );
        node_rule(
            "message_loss_rate",
            &r.message_loss_rate,
            rates.lost(),
            format!(
                "{:.0} messages lost (rejected, dropped, expired) per second, above {} for {} s",
                rates.lost(),
                r.message_loss_rate.above,
                r.message_loss_rate.for_secs
            ),
        );
        for p in &procs {
            let m = &p.mailbox;
            let queued = m.len + m.priority_len;
            if r.mailbox_fill.enabled {
                let fill = frac(m.len, m.capacity).max(frac(m.bytes, m.max_bytes));
                if fill > r.mailbox_fill.above {
                    holding.push(Condition {
                        rule: "mailbox_fill",
                        subject: subject(p),
                        value: fill,
                        threshold: r.mailbox_fill.above,
                        for_: r.mailbox_fill.duration(),
                        message: format!(
                            "mailbox of {} at {:.0} % of its bound ({} of {} messages, {} of {} bytes) for {} s",
                            subject(p),
                            fill * 100.0,
                            m.len,
                            m.capacity,
                            m.bytes,
                            m.max_bytes,
                            r.mailbox_fill.for_secs
                        ),
                    });
                }
            }
            if r.mailbox_len.enabled && queued as f64 > r.mailbox_len.above {
                holding.push(Condition {
                    rule: "mailbox_len",
                    subject: subject(p),
                    value: queued as f64,
                    threshold: r.mailbox_len.above,
                    for_: r.mailbox_len.duration(),
                    message: format!(
                        "mailbox of {} holds {} messages, above {} for {} s",
                        subject(p),
                        queued,
                        r.mailbox_len.above,
                        r.mailbox_len.for_secs
                    ),
                });
            }
        }
        let mut rules: Vec<&'static str> = NODE_RULES.to_vec();
        rules.extend(PROCESS_RULES);
        st.alerts.evaluate(&rules, holding, now);

        export(
            self.sink,
            &Export {
                stats: &stats,
                carried: &st.carried,
                view: &view,
                procs: &procs,
                top_n: cfg.top_n,
                max_named: cfg.max_named_series,
                over_budget: self.watchdog.over_budget(),
                alerts_active: st.alerts.active_len(),
                alerts_fired: st.alerts.fired_total,
                watchdog_reports: self.watchdog.reports_total(),
            },
        );
        self.sink.upkeep();

        let frame = Frame {
            stats: StatsResponse {
                taken_at_ms: now_ms,
                node: view.clone(),
                rates: rates.clone(),
                handlers_over_budget: self.watchdog.over_budget(),
                watchdog_reports: self.watchdog.reports_total(),
                alerts_active: st.alerts.active_len(),
                extra,
            },
            history: st.history.clone(),
            top_mailbox: views::top(&procs, SortKey::Mailbox, cfg.top_n),
            top_drops: views::top(&procs, SortKey::Drops, cfg.top_n),
            tree: views::tree(&procs, PAGE_TREE_NODES.min(cfg.tree_max_nodes)),
            alerts: st.alerts.view(10),
            slow: self.watchdog.reports().into_iter().take(10).collect(),
        };
        let frame: Arc<str> = serde_json::to_string(&frame).expect("a frame serializes").into();
        st.frame = frame.clone();
        if periodic {
            st.rates = rates;
            st.last = Some(Reading { view, at: now });
        }
        st.procs = Arc::new(procs);
        st.procs_at_ms = now_ms;
        drop(st);
        let _ = self.frames.send(frame);
    }

    pub(crate) fn frame(&self) -> Arc<str> {
        self.state.lock().frame.clone()
    }

    pub(crate) fn stats(&self) -> StatsResponse {
        let st = self.state.lock();
        let frame: Frame = serde_json::from_str(&st.frame).unwrap_or_default();
        frame.stats
    }

    pub(crate) fn snapshot(&self) -> (Arc<Vec<ProcessInfo>>, u64) {
        let st = self.state.lock();
        (st.procs.clone(), st.procs_at_ms)
    }

    pub(crate) fn alerts(&self, resolved: usize) -> AlertsView {
        self.state.lock().alerts.view(resolved)
    }

    pub(crate) fn slow_handlers(&self) -> Vec<SlowHandler> {
        self.watchdog.reports()
    }

    /// One watchdog scan, and the `slow_handler` alerts that follow from it.
    pub(crate) fn scan(&self) {
        let node = self.node();
        self.watchdog.scan(&node);
        let holding = self
            .watchdog
            .over_budget_now()
            .into_iter()
            .map(|o| Condition {
                rule: SLOW_RULE,
                subject: o.subject.clone(),
                value: o.running.as_secs_f64(),
                threshold: o.budget.as_secs_f64(),
                for_: Duration::ZERO,
                message: format!(
                    "handler of {} ({}) running past its {} ms budget",
                    o.subject,
                    short_type(&o.actor_type),
                    o.budget.as_millis()
                ),
            })
            .collect();
        self.state
            .lock()
            .alerts
            .evaluate(&[SLOW_RULE], holding, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::short_type;

    #[test]
    fn short_type_drops_module_paths() {
        assert_eq!(short_type("girder::supervisor::Supervisor"), "Supervisor");
        assert_eq!(short_type("a::b::Worker<c::D, e::F>"), "Worker<D, F>");
        assert_eq!(short_type("Plain"), "Plain");
    }
}
