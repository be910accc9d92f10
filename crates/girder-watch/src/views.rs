//! The JSON shapes of the API: views of [`NodeStats`] and [`ProcessInfo`], sorting,
//! pagination and the supervision tree.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use girder::{NodeStats, Overflow, Pid, ProcessInfo, ProcessState};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node's limits and counters, as `/api/stats` returns them under `node`.
/// Counters are totals over every node this watch has observed (see
/// [`WatchHandle::observe`](crate::WatchHandle::observe)); gauges are the current
/// node's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // One field per `NodeStats` field, same name and meaning.
pub struct StatsView {
    pub processes: usize,
    pub process_limit: usize,
    pub reserved_processes: usize,
    pub processes_hwm: usize,
    pub spawned: u64,
    pub spawn_refusals: u64,
    pub exited: u64,
    pub exits_normal: u64,
    pub exits_shutdown: u64,
    pub exits_killed: u64,
    pub panics: u64,
    pub overflow_kills: u64,
    pub exits_other: u64,
    pub mailbox_bytes: usize,
    pub mailbox_budget_bytes: usize,
    pub budget_refusals: u64,
    pub accepted: u64,
    pub handled: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub expired: u64,
    pub names: usize,
    pub name_limit: usize,
    pub name_refusals: u64,
    pub timer_refusals: u64,
    pub link_refusals: u64,
    pub restarts: u64,
    pub escalations: u64,
    pub max_children_refusals: u64,
    pub subtree_budget_refusals: u64,
    /// Messages queued in all mailboxes (both data lanes).
    pub queued: u64,
    /// Demand granted to stage producers and not yet filled, summed over stages.
    pub stage_pending_demand: u64,
    /// Events buffered in stage producers, summed.
    pub stage_buffered: u64,
    /// Events stage buffers dropped, summed over live stages.
    pub stage_dropped: u64,
}

/// The monotonic counters of [`NodeStats`], in a fixed order, so that totals can be
/// carried over from one observed node to the next.
pub(crate) const COUNTER_COUNT: usize = 23;

pub(crate) fn counters_of(s: &NodeStats) -> [u64; COUNTER_COUNT] {
    [
        s.spawned,
        s.spawn_refusals,
        s.exited,
        s.exits_normal,
        s.exits_shutdown,
        s.exits_killed,
        s.panics,
        s.overflow_kills,
        s.exits_other,
        s.budget_refusals,
        s.accepted,
        s.handled,
        s.rejected,
        s.dropped,
        s.expired,
        s.name_refusals,
        s.timer_refusals,
        s.link_refusals,
        s.restarts,
        s.escalations,
        s.max_children_refusals,
        s.subtree_budget_refusals,
        s.processes_hwm as u64,
    ]
}

impl StatsView {
    /// The view of `s`, with `carried` counters (from nodes observed before) added,
    /// and the per-process sums taken from `procs`.
    pub(crate) fn new(s: &NodeStats, carried: &[u64; COUNTER_COUNT], procs: &[ProcessInfo]) -> Self {
        let c = counters_of(s);
        let t = |i: usize| c[i] + carried[i];
        let mut v = StatsView {
            processes: s.processes,
            process_limit: s.process_limit,
            reserved_processes: s.reserved_processes,
            processes_hwm: s.processes_hwm,
            spawned: t(0),
            spawn_refusals: t(1),
            exited: t(2),
            exits_normal: t(3),
            exits_shutdown: t(4),
            exits_killed: t(5),
            panics: t(6),
            overflow_kills: t(7),
            exits_other: t(8),
            mailbox_bytes: s.mailbox_bytes,
            mailbox_budget_bytes: s.mailbox_budget_bytes,
            budget_refusals: t(9),
            accepted: t(10),
            handled: t(11),
            rejected: t(12),
            dropped: t(13),
            expired: t(14),
            names: s.names,
            name_limit: s.name_limit,
            name_refusals: t(15),
            timer_refusals: t(16),
            link_refusals: t(17),
            restarts: t(18),
            escalations: t(19),
            max_children_refusals: t(20),
            subtree_budget_refusals: t(21),
            ..StatsView::default()
        };
        for p in procs {
            v.queued += (p.mailbox.len + p.mailbox.priority_len) as u64;
            if let Some(st) = &p.stage {
                v.stage_pending_demand += st.pending_demand;
                v.stage_buffered += st.buffered;
                v.stage_dropped += st.dropped;
            }
        }
        v
    }
}

/// Rates per second over the last collection period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // Each field: that counter's increase per second.
pub struct Rates {
    pub accepted: f64,
    pub handled: f64,
    pub rejected: f64,
    pub dropped: f64,
    pub expired: f64,
    pub spawned: f64,
    pub spawn_refusals: f64,
    pub restarts: f64,
}

impl Rates {
    pub(crate) fn between(a: &StatsView, b: &StatsView, secs: f64) -> Rates {
        let r = |x: u64, y: u64| {
            if secs > 0.0 {
                y.saturating_sub(x) as f64 / secs
            } else {
                0.0
            }
        };
        Rates {
            accepted: r(a.accepted, b.accepted),
            handled: r(a.handled, b.handled),
            rejected: r(a.rejected, b.rejected),
            dropped: r(a.dropped, b.dropped),
            expired: r(a.expired, b.expired),
            spawned: r(a.spawned, b.spawned),
            spawn_refusals: r(
                a.spawn_refusals + a.subtree_budget_refusals + a.max_children_refusals,
                b.spawn_refusals + b.subtree_budget_refusals + b.max_children_refusals,
            ),
            restarts: r(a.restarts, b.restarts),
        }
    }

    /// Messages lost per second: rejected, dropped or expired.
    pub(crate) fn lost(&self) -> f64 {
        self.rejected + self.dropped + self.expired
    }
}

/// One mailbox, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // One field per `MailboxStats` field.
pub struct MailboxView {
    pub len: usize,
    pub priority_len: usize,
    pub signals: usize,
    pub bytes: usize,
    pub len_hwm: usize,
    pub bytes_hwm: usize,
    pub waiting_senders: usize,
    pub accepted: u64,
    pub handled: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub expired: u64,
    pub wait_mean_ns: u64,
    pub wait_max_ns: u64,
    pub capacity: usize,
    pub max_bytes: usize,
    /// The overflow policy: `reject`, `backpressure`, `drop_newest`, `drop_oldest`,
    /// `kill`.
    pub overflow: String,
}

/// One process, as `/api/processes` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessView {
    /// `<node.index.generation>`.
    pub pid: String,
    /// Registered name.
    pub name: Option<String>,
    /// The actor's Rust type.
    pub actor_type: String,
    /// The parent's pid.
    pub parent: Option<String>,
    /// `starting`, `waiting`, `running`, `exiting`.
    pub state: String,
    /// Whether it traps exits.
    pub trap_exit: bool,
    /// Links.
    pub links: usize,
    /// Monitors held.
    pub monitors: usize,
    /// Its mailbox.
    pub mailbox: MailboxView,
    /// Messages lost at this mailbox: rejected + dropped + expired.
    pub lost: u64,
}

pub(crate) fn overflow_name(o: Overflow) -> &'static str {
    match o {
        Overflow::Reject => "reject",
        Overflow::Backpressure => "backpressure",
        Overflow::DropNewest => "drop_newest",
        Overflow::DropOldest => "drop_oldest",
        Overflow::Kill => "kill",
        _ => "other",
    }
}

pub(crate) fn state_name(s: ProcessState) -> &'static str {
    match s {
        ProcessState::Starting => "starting",
        ProcessState::Waiting => "waiting",
        ProcessState::Running => "running",
        ProcessState::Exiting => "exiting",
        _ => "other",
    }
}

impl ProcessView {
    pub(crate) fn of(p: &ProcessInfo) -> Self {
        let m = &p.mailbox;
        ProcessView {
            pid: p.pid.to_string(),
            name: p.name.as_deref().map(str::to_owned),
            actor_type: p.actor_type.to_owned(),
            parent: p.parent.map(|x| x.to_string()),
            state: state_name(p.state).into(),
            trap_exit: p.trap_exit,
            links: p.links,
            monitors: p.monitors,
            lost: lost(p),
            mailbox: MailboxView {
                len: m.len,
                priority_len: m.priority_len,
                signals: m.signals,
                bytes: m.bytes,
                len_hwm: m.len_hwm,
                bytes_hwm: m.bytes_hwm,
                waiting_senders: m.waiting_senders,
                accepted: m.accepted,
                handled: m.handled,
                rejected: m.rejected,
                dropped: m.dropped,
                expired: m.expired,
                wait_mean_ns: m.wait_mean_ns,
                wait_max_ns: m.wait_max_ns,
                capacity: m.capacity,
                max_bytes: m.max_bytes,
                overflow: overflow_name(m.overflow).into(),
            },
        }
    }
}

pub(crate) fn lost(p: &ProcessInfo) -> u64 {
    p.mailbox.rejected + p.mailbox.dropped + p.mailbox.expired
}

/// How `/api/processes` sorts (always largest first, ties by pid).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Messages queued (both data lanes).
    #[default]
    Mailbox,
    /// Bytes queued.
    Bytes,
    /// Highest messages queued.
    Hwm,
    /// Messages handled.
    Handled,
    /// Messages rejected.
    Rejected,
    /// Messages dropped.
    Dropped,
    /// Calls expired.
    Expired,
    /// Messages lost: rejected + dropped + expired.
    Drops,
    /// Links + monitors.
    Links,
    /// By pid (oldest slot first).
    Pid,
    /// By name (named first, alphabetically).
    Name,
}

impl SortKey {
    /// Every key, with its query-string name.
    pub const ALL: [(&'static str, SortKey); 11] = [
        ("mailbox", SortKey::Mailbox),
        ("bytes", SortKey::Bytes),
        ("hwm", SortKey::Hwm),
        ("handled", SortKey::Handled),
        ("rejected", SortKey::Rejected),
        ("dropped", SortKey::Dropped),
        ("expired", SortKey::Expired),
        ("drops", SortKey::Drops),
        ("links", SortKey::Links),
        ("pid", SortKey::Pid),
        ("name", SortKey::Name),
    ];

    fn value(self, p: &ProcessInfo) -> u64 {
        let m = &p.mailbox;
        match self {
            SortKey::Mailbox => (m.len + m.priority_len) as u64,
            SortKey::Bytes => m.bytes as u64,
            SortKey::Hwm => m.len_hwm as u64,
            SortKey::Handled => m.handled,
            SortKey::Rejected => m.rejected,
            SortKey::Dropped => m.dropped,
            SortKey::Expired => m.expired,
            SortKey::Drops => lost(p),
            SortKey::Links => (p.links + p.monitors) as u64,
            SortKey::Pid | SortKey::Name => 0,
        }
    }
}

fn pid_key(p: Pid) -> (u32, u32) {
    (p.index(), p.generation())
}

/// Sorts `procs` by `key` (largest first; pid and name ascending).
pub(crate) fn sort(procs: &mut [&ProcessInfo], key: SortKey) {
    match key {
        SortKey::Pid => procs.sort_by_key(|p| pid_key(p.pid)),
        SortKey::Name => procs.sort_by(|a, b| match (&a.name, &b.name) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => pid_key(a.pid).cmp(&pid_key(b.pid)),
        }),
        k => procs.sort_by(|a, b| {
            k.value(b)
                .cmp(&k.value(a))
                .then(pid_key(a.pid).cmp(&pid_key(b.pid)))
        }),
    }
}

/// The top `n` processes by `key`, largest first, leaving out those at zero.
pub(crate) fn top(procs: &[ProcessInfo], key: SortKey, n: usize) -> Vec<ProcessView> {
    let mut v: Vec<&ProcessInfo> = procs.iter().filter(|p| key.value(p) > 0).collect();
    sort(&mut v, key);
    v.into_iter().take(n).map(ProcessView::of).collect()
}

/// `/api/processes`: one page of processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPage {
    /// Live processes in the snapshot.
    pub total: usize,
    /// Index of the first process of this page.
    pub offset: usize,
    /// Page size asked for (at most 500).
    pub limit: usize,
    /// The sort key.
    pub sort: SortKey,
    /// When the snapshot was taken (ms since the Unix epoch).
    pub taken_at_ms: u64,
    /// The page.
    pub processes: Vec<ProcessView>,
}

/// The largest page `/api/processes` returns.
pub const MAX_PAGE: usize = 500;

pub(crate) fn page(
    procs: &[ProcessInfo],
    key: SortKey,
    offset: usize,
    limit: usize,
    taken_at_ms: u64,
) -> ProcessPage {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut v: Vec<&ProcessInfo> = procs.iter().collect();
    sort(&mut v, key);
    ProcessPage {
        total: procs.len(),
        offset,
        limit,
        sort: key,
        taken_at_ms,
        processes: v
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(ProcessView::of)
            .collect(),
    }
}

/// One process in `/api/tree`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The process.
    pub pid: String,
    /// Its name.
    pub name: Option<String>,
    /// Its actor type.
    pub actor_type: String,
    /// What it is doing.
    pub state: String,
    /// Messages queued.
    pub mailbox_len: usize,
    /// Messages lost at its mailbox.
    pub lost: u64,
    /// Its children (those shown).
    pub children: Vec<TreeNode>,
    /// Children (and their subtrees) left out to stay within the node limit.
    pub more: usize,
}

/// `/api/tree`: the supervision tree, from each process's parent link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Live processes.
    pub total: usize,
    /// Processes shown.
    pub shown: usize,
    /// Processes without a live parent, and their subtrees.
    pub roots: Vec<TreeNode>,
    /// Roots left out.
    pub more_roots: usize,
}

pub(crate) fn tree(procs: &[ProcessInfo], max_nodes: usize) -> Tree {
    let index: HashMap<Pid, usize> = procs.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); procs.len()];
    let mut roots = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        match p.parent.and_then(|par| index.get(&par)) {
            Some(&pi) => children[pi].push(i),
            None => roots.push(i),
        }
    }
    let by_pid = |v: &mut Vec<usize>| v.sort_by_key(|&i| pid_key(procs[i].pid));
    by_pid(&mut roots);
    for c in &mut children {
        by_pid(c);
    }
    // Supervisors (processes with children) first among roots: the interesting part
    // of a node with thousands of lone processes.
    roots.sort_by_key(|&i| children[i].is_empty());
    let mut budget = max_nodes;
    fn build(i: usize, procs: &[ProcessInfo], children: &[Vec<usize>], budget: &mut usize) -> TreeNode {
        *budget -= 1;
        let p = &procs[i];
        let mut node = TreeNode {
            pid: p.pid.to_string(),
            name: p.name.as_deref().map(str::to_owned),
            actor_type: p.actor_type.to_owned(),
            state: state_name(p.state).into(),
            mailbox_len: p.mailbox.len + p.mailbox.priority_len,
            lost: lost(p),
            children: Vec::new(),
            more: 0,
        };
        for &c in &children[i] {
            if *budget == 0 {
                node.more += 1;
                continue;
            }
            node.children.push(build(c, procs, children, budget));
        }
        node
    }
    let mut out = Vec::new();
    let mut more_roots = 0;
    for &r in &roots {
        if budget == 0 {
            more_roots += 1;
            continue;
        }
        out.push(build(r, procs, &children, &mut budget));
    }
    Tree {
        total: procs.len(),
        shown: max_nodes - budget,
        roots: out,
        more_roots,
    }
}
