//! Prometheus export through the `metrics` facade.
//!
//! One [`PrometheusRecorder`] per program, built on first use and installed as the
//! global recorder if none is installed yet, so that other crates (the front door)
//! emit their own counters through the facade into the same `/metrics`. If another
//! recorder was installed first, the watch keeps its own privately and still exports
//! the node's figures (the others then go to that recorder).
//!
//! What is exported (counters are totals over every node the watch observed):
//!
//! | metric | kind | from |
//! |---|---|---|
//! | `girder_processes`, `girder_process_limit`, `girder_processes_reserved`, `girder_processes_hwm` | gauge | [`NodeStats`] |
//! | `girder_mailbox_bytes`, `girder_mailbox_budget_bytes`, `girder_mailbox_queued` | gauge | node budget; messages queued |
//! | `girder_names`, `girder_name_limit` | gauge | registry |
//! | `girder_stage_pending_demand`, `girder_stage_buffered` | gauge | stages, summed |
//! | `girder_handlers_over_budget`, `girder_alerts_active` | gauge | watchdog, alerts |
//! | `girder_spawned_total` | counter | |
//! | `girder_spawn_refusals_total{cause="process_limit"\|"subtree_budget"}` | counter | |
//! | `girder_max_children_refusals_total` | counter | |
//! | `girder_exits_total{reason="normal"\|"shutdown"\|"killed"\|"panic"\|"mailbox_overflow"\|"other"}` | counter | |
//! | `girder_overflow_kills_total` | counter | exits with `MailboxOverflow` |
//! | `girder_messages_total{outcome="accepted"\|"handled"\|"rejected"\|"dropped"\|"expired"}` | counter | |
//! | `girder_budget_refusals_total`, `girder_restarts_total`, `girder_escalations_total`, `girder_name_refusals_total`, `girder_timer_refusals_total`, `girder_link_refusals_total` | counter | |
//! | `girder_watchdog_reports_total`, `girder_alerts_fired_total` | counter | watchdog, alerts |
//! | `girder_watch_refusals_total{cause="unauthorized"\|"max_requests"\|"max_streams"}` | counter | requests the endpoint refused |
//! | `girder_process_mailbox_len{process}`, `girder_process_mailbox_bytes{process}`, `girder_process_messages{process,outcome}` | gauge | named processes only (at most `max_named_series`); gauges since a restarted process starts from zero |
//! | `girder_top_mailbox_len{process}` | gauge | the top-N mailboxes (a process that leaves the top N reads 0, then disappears) |
//! | `girder_handler_duration_seconds` | histogram | 1 handler run in 64 (core hook) |
//! | `girder_call_duration_seconds{outcome="ok"\|"error"}` | histogram | 1 call in 64 per thread (core hook) |
//!
//! Per-process gauges not updated for 30 s (an exited process, a process that left
//! the top N) are removed from the output.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use girder::{NodeStats, ProcessInfo};
use metrics::{Counter, Gauge, Histogram, Label};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;

use crate::views::{counters_of, StatsView, COUNTER_COUNT};

/// Installs the program's Prometheus recorder as the global `metrics` recorder now,
/// if no recorder is installed yet (a [`Watch`](crate::Watch) does it when it
/// starts). Call it early if other crates emit metrics before the watch starts:
/// what they emit before a recorder is installed is lost. Returns `false` if another
/// recorder was installed first.
pub fn install_recorder() -> bool {
    Sink::get().local.is_none()
}

/// Histogram buckets, in seconds: 10 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// The program's recorders and their handles.
pub(crate) struct Sink {
    handle: PrometheusHandle,
    /// Per-process series live in a recorder of their own, whose gauges are dropped
    /// from the output 30 s after their last update (an exited process, a process
    /// that left the top N). The main recorder has no idle timeout: gauges other
    /// crates set only when they change must not vanish.
    per_process: &'static PrometheusRecorder,
    per_process_handle: PrometheusHandle,
    /// `Some` when another recorder was installed globally first: ours is used
    /// locally for what the watch emits.
    local: Option<&'static PrometheusRecorder>,
    handler: Histogram,
    call_ok: Histogram,
    call_err: Histogram,
}

impl Sink {
    /// The program's sink: built, installed and hooked into the core on first use.
    pub(crate) fn get() -> &'static Sink {
        static SINK: OnceLock<Sink> = OnceLock::new();
        SINK.get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &DURATION_BUCKETS)
                .expect("buckets are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            let per_process: &'static PrometheusRecorder = Box::leak(Box::new(
                PrometheusBuilder::new()
                    .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(30)))
                    .build_recorder(),
            ));
            let per_process_handle = per_process.handle();
            let local = match metrics::set_global_recorder(recorder) {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(
                        "another metrics recorder is installed: girder-watch exports the node's \
                         figures from its own; metrics other crates emit go to the other recorder"
                    );
                    Some(&*Box::leak(Box::new(e.into_inner())))
                }
            };
            let (handler, call_ok, call_err) = with(local, || {
                (
                    metrics::histogram!("girder_handler_duration_seconds"),
                    metrics::histogram!("girder_call_duration_seconds", "outcome" => "ok"),
                    metrics::histogram!("girder_call_duration_seconds", "outcome" => "error"),
                )
            });
            let sink = Sink {
                handle,
                per_process,
                per_process_handle,
                local,
                handler,
                call_ok,
                call_err,
            };
            describe(local);
            sink
        })
    }

    /// Installs the core observer that feeds the duration histograms (once per
    /// program; a no-op if another observer is installed).
    pub(crate) fn hook_core(&'static self) {
        girder::observe::set_observer(Arc::new(CoreObserver(self)));
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        with(self.local, f)
    }

    /// The Prometheus text exposition of everything recorded: the main recorder's
    /// then the per-process one's (their metric names are disjoint).
    pub(crate) fn render(&self) -> String {
        let mut text = self.handle.render();
        text.push_str(&self.per_process_handle.render());
        text
    }

    /// Counts a request the endpoint refused (`girder_watch_refusals_total{cause}`).
    pub(crate) fn refused(&self, cause: &'static str) {
        self.with(|| metrics::counter!("girder_watch_refusals_total", "cause" => cause).increment(1));
        crate::limit_event_watch(cause);
    }

    /// Drains histogram samples into their buckets: keeps their memory bounded.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
        self.per_process_handle.run_upkeep();
    }
}

fn with<R>(local: Option<&'static PrometheusRecorder>, f: impl FnOnce() -> R) -> R {
    match local {
        Some(r) => metrics::with_local_recorder(r, f),
        None => f(),
    }
}

fn describe(local: Option<&'static PrometheusRecorder>) {
    with(local, || {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_gauge!("girder_processes", "Live processes");
        describe_gauge!("girder_process_limit", "max_processes");
        describe_gauge!(
            "girder_mailbox_bytes",
            Unit::Bytes,
            "Bytes queued in all mailboxes"
        );
        describe_gauge!(
            "girder_mailbox_budget_bytes",
            Unit::Bytes,
            "Node-wide mailbox byte budget"
        );
        describe_counter!(
            "girder_messages_total",
            "Messages by outcome: accepted, handled, rejected, dropped, expired"
        );
        describe_counter!("girder_spawn_refusals_total", "Spawns refused, by cause");
        describe_counter!("girder_exits_total", "Process exits, by reason");
        describe_counter!(
            "girder_watchdog_reports_total",
            "Handlers reported running past the watchdog budget"
        );
        describe_histogram!(
            "girder_handler_duration_seconds",
            Unit::Seconds,
            "Handler run time (1 run in 64 sampled)"
        );
        describe_histogram!(
            "girder_call_duration_seconds",
            Unit::Seconds,
            "Addr::call latency (1 call in 64 per thread sampled)"
        );
    });
}

struct CoreObserver(&'static Sink);

impl girder::observe::Observer for CoreObserver {
    fn handler_finished(&self, _actor_type: &'static str, took: Duration) {
        self.0.handler.record(took.as_secs_f64());
    }

    fn call_finished(&self, took: Duration, ok: bool) {
        let h = if ok { &self.0.call_ok } else { &self.0.call_err };
        h.record(took.as_secs_f64());
    }
}

/// The monotonic counters, in [`counters_of`] order: name and labels.
const COUNTERS: [(&str, &[(&str, &str)]); COUNTER_COUNT - 1] = [
    ("girder_spawned_total", &[]),
    ("girder_spawn_refusals_total", &[("cause", "process_limit")]),
    ("girder_exited_total", &[]),
    ("girder_exits_total", &[("reason", "normal")]),
    ("girder_exits_total", &[("reason", "shutdown")]),
    ("girder_exits_total", &[("reason", "killed")]),
    ("girder_exits_total", &[("reason", "panic")]),
    ("girder_exits_total", &[("reason", "mailbox_overflow")]),
    ("girder_exits_total", &[("reason", "other")]),
    ("girder_budget_refusals_total", &[]),
    ("girder_messages_total", &[("outcome", "accepted")]),
    ("girder_messages_total", &[("outcome", "handled")]),
    ("girder_messages_total", &[("outcome", "rejected")]),
    ("girder_messages_total", &[("outcome", "dropped")]),
    ("girder_messages_total", &[("outcome", "expired")]),
    ("girder_name_refusals_total", &[]),
    ("girder_timer_refusals_total", &[]),
    ("girder_link_refusals_total", &[]),
    ("girder_restarts_total", &[]),
    ("girder_escalations_total", &[]),
    ("girder_max_children_refusals_total", &[]),
    ("girder_spawn_refusals_total", &[("cause", "subtree_budget")]),
];

fn labels(l: &[(&'static str, &'static str)]) -> Vec<Label> {
    l.iter().map(|(k, v)| Label::new(*k, *v)).collect()
}

fn counter(name: &'static str, l: &[(&'static str, &'static str)]) -> Counter {
    metrics::counter!(name, labels(l))
}

fn gauge(name: &'static str) -> Gauge {
    metrics::gauge!(name)
}

/// What one collection exports.
pub(crate) struct Export<'a> {
    pub(crate) stats: &'a NodeStats,
    pub(crate) carried: &'a [u64; COUNTER_COUNT],
    pub(crate) view: &'a StatsView,
    pub(crate) procs: &'a [ProcessInfo],
    pub(crate) top_n: usize,
    pub(crate) max_named: usize,
    pub(crate) over_budget: usize,
    pub(crate) alerts_active: usize,
    pub(crate) alerts_fired: u64,
    pub(crate) watchdog_reports: u64,
}

fn process_label(p: &ProcessInfo) -> String {
    match &p.name {
        Some(n) => n.to_string(),
        None => p.pid.to_string(),
    }
}

/// Writes one collection into the recorder.
pub(crate) fn export(sink: &Sink, e: &Export<'_>) {
    sink.with(|| {
        let s = e.stats;
        let v = e.view;
        gauge("girder_processes").set(s.processes as f64);
        gauge("girder_process_limit").set(s.process_limit as f64);
        gauge("girder_processes_reserved").set(s.reserved_processes as f64);
        gauge("girder_processes_hwm").set(s.processes_hwm as f64);
        gauge("girder_mailbox_bytes").set(s.mailbox_bytes as f64);
        gauge("girder_mailbox_budget_bytes").set(s.mailbox_budget_bytes as f64);
        gauge("girder_mailbox_queued").set(v.queued as f64);
        gauge("girder_names").set(s.names as f64);
        gauge("girder_name_limit").set(s.name_limit as f64);
        gauge("girder_stage_pending_demand").set(v.stage_pending_demand as f64);
        gauge("girder_stage_buffered").set(v.stage_buffered as f64);
        gauge("girder_handlers_over_budget").set(e.over_budget as f64);
        gauge("girder_alerts_active").set(e.alerts_active as f64);
        let c = counters_of(s);
        for (i, (name, l)) in COUNTERS.iter().enumerate() {
            counter(name, l).absolute(c[i] + e.carried[i]);
        }
        counter("girder_overflow_kills_total", &[]).absolute(c[7] + e.carried[7]);
        counter("girder_watchdog_reports_total", &[]).absolute(e.watchdog_reports);
        counter("girder_alerts_fired_total", &[]).absolute(e.alerts_fired);
    });
    metrics::with_local_recorder(sink.per_process, || {
        // Per-process series: named processes only (bounded by max_named), then the
        // top N mailboxes by rank.
        let mut named: Vec<&ProcessInfo> = e.procs.iter().filter(|p| p.name.is_some()).collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        for p in named.into_iter().take(e.max_named) {
            let process = process_label(p);
            let m = &p.mailbox;
            metrics::gauge!("girder_process_mailbox_len", "process" => process.clone())
                .set((m.len + m.priority_len) as f64);
            metrics::gauge!("girder_process_mailbox_bytes", "process" => process.clone()).set(m.bytes as f64);
            for (outcome, n) in [
                ("handled", m.handled),
                ("rejected", m.rejected),
                ("dropped", m.dropped),
                ("expired", m.expired),
            ] {
                metrics::gauge!("girder_process_messages", "process" => process.clone(), "outcome" => outcome)
                    .set(n as f64);
            }
        }
        // Top N by mailbox length, labelled by process: a process that leaves the
        // top N is set to 0 once, then dropped from the output after the idle timeout.
        static PREV_TOP: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
        let top = crate::views::top(e.procs, crate::views::SortKey::Mailbox, e.top_n);
        let now: Vec<String> = top
            .iter()
            .map(|p| p.name.clone().unwrap_or_else(|| p.pid.clone()))
            .collect();
        let mut prev = PREV_TOP.lock();
        for gone in prev.iter().filter(|p| !now.contains(p)) {
            metrics::gauge!("girder_top_mailbox_len", "process" => gone.clone()).set(0.0);
        }
        for (p, process) in top.iter().zip(&now) {
            metrics::gauge!("girder_top_mailbox_len", "process" => process.clone())
                .set((p.mailbox.len + p.mailbox.priority_len) as f64);
        }
        *prev = now;
    });
}
