//! The node's shared state and the cross-process operations: spawning, links,
//! monitors, exit signals, exit cleanup, snapshots and shutdown.
//!
//! Locking rule: a process's core lock is never held while another process's core
//! lock is taken, and user code never runs under either; a mailbox lock may be taken
//! under a core lock, never the reverse.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::builder::NodeConfig;
use super::ShutdownReport;
use crate::mailbox::Budget;
use crate::process::table::{ProcessTable, Reservation};
use crate::process::{ProcessCore, ProcessHandle, Signal, Watcher};
use crate::registry::Registry;
use crate::{
    Actor, Addr, Down, ExitReason, LinkError, MonitorRef, NodeId, NodeStats, Pid, ProcessInfo, RegistryError,
    SpawnError, SpawnOptions,
};

static NEXT_NODE_ID: AtomicU64 = AtomicU64::new(1);

type Handle = Arc<dyn ProcessHandle>;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) spawned: AtomicU64,
    pub(crate) spawn_refusals: AtomicU64,
    pub(crate) exited: AtomicU64,
    pub(crate) exits_normal: AtomicU64,
    pub(crate) exits_shutdown: AtomicU64,
    pub(crate) exits_killed: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) overflow_kills: AtomicU64,
    pub(crate) exits_other: AtomicU64,
    pub(crate) retired_accepted: AtomicU64,
    pub(crate) retired_handled: AtomicU64,
    pub(crate) retired_rejected: AtomicU64,
    pub(crate) retired_dropped: AtomicU64,
    pub(crate) retired_expired: AtomicU64,
    pub(crate) name_refusals: AtomicU64,
    pub(crate) timer_refusals: AtomicU64,
    pub(crate) link_refusals: AtomicU64,
    pub(crate) processes_hwm: AtomicUsize,
    pub(crate) restarts: AtomicU64,
    pub(crate) escalations: AtomicU64,
    pub(crate) max_children_refusals: AtomicU64,
    pub(crate) subtree_budget_refusals: AtomicU64,
}

pub(crate) struct NodeInner {
    pub(crate) id: NodeId,
    pub(crate) config: NodeConfig,
    pub(crate) table: ProcessTable<Handle>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) registry: Registry,
    pub(crate) counters: Counters,
    pub(crate) runtime: tokio::runtime::Handle,
    shutting_down: AtomicBool,
    next_ref: AtomicU64,
}

pub(crate) fn info(p: &dyn ProcessHandle) -> ProcessInfo {
    let core = p.core();
    let (name, links, monitors) = {
        let st = core.state.lock();
        (st.name.clone(), st.links_len(), st.monitors_len())
    };
    ProcessInfo {
        pid: core.pid,
        name,
        actor_type: core.actor_type,
        parent: core.parent,
        state: core.status(),
        trap_exit: core.traps_exits(),
        links,
        monitors,
        mailbox: p.mailbox_stats(),
        stage: core.stage.get().map(|s| s.snapshot()),
    }
}

impl NodeInner {
    pub(crate) fn new(config: NodeConfig, runtime: tokio::runtime::Handle) -> Self {
        let id = NodeId(NEXT_NODE_ID.fetch_add(1, Ordering::Relaxed) as u32);
        NodeInner {
            id,
            table: ProcessTable::new(id, config.max_processes, config.reserved_processes),
            budget: Arc::new(Budget::new(config.mailbox_budget_bytes)),
            registry: Registry::new(config.max_names),
            counters: Counters::default(),
            runtime,
            shutting_down: AtomicBool::new(false),
            next_ref: AtomicU64::new(0),
            config,
        }
    }

    /// The pid exit signals sent by the node itself carry.
    pub(crate) fn node_pid(&self) -> Pid {
        Pid {
            node: self.id,
            index: u32::MAX,
            generation: 0,
        }
    }

    pub(crate) fn spawn_actor<A: Actor>(
        self: &Arc<Self>,
        actor: A,
        opts: SpawnOptions,
        parent: Option<&ProcessCore>,
        init_reply: Option<crate::actor::runner::InitReply>,
    ) -> Result<Addr<A>, SpawnError> {
        crate::actor::spawn_actor(self, actor, opts, parent, init_reply)
    }

    /// Spawns and waits for `init` (`gen_server:start`).
    pub(crate) async fn start_actor<A: Actor>(
        self: &Arc<Self>,
        actor: A,
        opts: SpawnOptions,
        parent: Option<&ProcessCore>,
    ) -> Result<Addr<A>, SpawnError> {
        let (tx, rx) = oneshot::channel();
        let addr = self.spawn_actor(actor, opts, parent, Some(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(addr),
            Ok(Err(reason)) => Err(SpawnError::InitFailed(reason.to_string().into())),
            Err(_) => Err(SpawnError::InitFailed("killed during init".into())),
        }
    }

    pub(crate) fn reserve_slot(&self, use_reserve: bool) -> Result<Reservation<'_, Handle>, SpawnError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(SpawnError::ShuttingDown);
        }
        self.table.reserve(use_reserve).map_err(|full| {
            self.counters.spawn_refusals.fetch_add(1, Ordering::Relaxed);
            crate::limit_event!(warn, "spawn refused: process limit", limit = full.limit);
            SpawnError::ProcessLimit { limit: full.limit }
        })
    }

    pub(crate) fn note_spawned(&self) {
        self.counters.spawned.fetch_add(1, Ordering::Relaxed);
        self.counters
            .processes_hwm
            .fetch_max(self.table.len(), Ordering::Relaxed);
    }

    // ----- registry -----

    pub(crate) fn register(&self, name: &str, pid: Pid) -> Result<(), RegistryError> {
        let p = self.table.get(pid).ok_or(RegistryError::NoProc(pid))?;
        let mut st = p.core().state.lock();
        if st.exiting {
            return Err(RegistryError::NoProc(pid));
        }
        if let Some(existing) = &st.name {
            return Err(RegistryError::AlreadyNamed {
                pid,
                name: existing.clone(),
            });
        }
        let name: Arc<str> = name.into();
        let alive = |holder: Pid| {
            self.table
                .get(holder)
                .is_some_and(|h| !Arc::ptr_eq(&h, &p) && !h.core().state.lock().exiting)
        };
        self.registry.insert(name.clone(), pid, alive).inspect_err(|e| {
            if matches!(e, RegistryError::Full { .. }) {
                self.counters.name_refusals.fetch_add(1, Ordering::Relaxed);
                crate::limit_event!(warn, "name refused: registry full", limit = self.registry.limit());
            }
        })?;
        st.name = Some(name);
        Ok(())
    }

    pub(crate) fn unregister(&self, name: &str) -> bool {
        let Some(pid) = self.registry.get(name) else {
            return false;
        };
        if let Some(p) = self.table.get(pid) {
            let mut st = p.core().state.lock();
            if st.name.as_deref() == Some(name) {
                st.name = None;
            }
        }
        self.registry.remove(name, pid);
        true
    }

    // ----- links -----

    /// Links `me` (the calling process) with `pid`.
    pub(crate) fn link(&self, me: &dyn ProcessHandle, pid: Pid) -> Result<(), LinkError> {
        let my_pid = me.core().pid;
        if pid == my_pid {
            return Ok(());
        }
        let limit = self.config.max_links_per_process;
        {
            let mut st = me.core().state.lock();
            if st.has_link(pid) {
                return Ok(());
            }
            if st.links_len() >= limit {
                self.counters.link_refusals.fetch_add(1, Ordering::Relaxed);
                return Err(LinkError::TooManyLinks { limit });
            }
            st.rel().links.insert(pid);
        }
        // Our side first: if the target exits right now, its cleanup finds the link.
        enum Outcome {
            Linked,
            Gone,
            Full,
        }
        let outcome = match self.table.get(pid) {
            None => Outcome::Gone,
            Some(t) => {
                let mut st = t.core().state.lock();
                if st.exiting {
                    Outcome::Gone
                } else if st.has_link(my_pid) {
                    Outcome::Linked
                } else if st.links_len() >= limit {
                    Outcome::Full
                } else {
                    st.rel().links.insert(my_pid);
                    Outcome::Linked
                }
            }
        };
        match outcome {
            Outcome::Linked => Ok(()),
            Outcome::Full => {
                me.core().state.lock().rel().links.remove(&pid);
                self.counters.link_refusals.fetch_add(1, Ordering::Relaxed);
                Err(LinkError::TooManyLinks { limit })
            }
            Outcome::Gone => {
                // As OTP: linking to a dead process behaves as a link to a process
                // that exits with `noproc`.
                self.deliver_link_exit(me, pid, ExitReason::NoProc);
                Ok(())
            }
        }
    }

    /// Links a child being spawned (not running yet) to its parent.
    pub(crate) fn link_new_child(&self, parent: Pid, child: &dyn ProcessHandle) -> Result<(), LinkError> {
        let limit = self.config.max_links_per_process;
        let child_pid = child.core().pid;
        child.core().state.lock().rel().links.insert(parent);
        let gone = match self.table.get(parent) {
            None => true,
            Some(p) => {
                let mut st = p.core().state.lock();
                if st.exiting {
                    true
                } else if st.links_len() >= limit {
                    drop(st);
                    child.core().state.lock().rel().links.remove(&parent);
                    self.counters.link_refusals.fetch_add(1, Ordering::Relaxed);
                    return Err(LinkError::TooManyLinks { limit });
                } else {
                    st.rel().links.insert(child_pid);
                    false
                }
            }
        };
        if gone {
            self.deliver_link_exit(child, parent, ExitReason::NoProc);
        }
        Ok(())
    }

    pub(crate) fn unlink(&self, me: &dyn ProcessHandle, pid: Pid) {
        let my_pid = me.core().pid;
        if let Some(rel) = me.core().state.lock().rel.as_mut() {
            rel.links.remove(&pid);
        }
        if let Some(t) = self.table.get(pid) {
            if let Some(rel) = t.core().state.lock().rel.as_mut() {
                rel.links.remove(&my_pid);
            }
        }
    }

    /// Delivers the exit of linked process `from` to `target`, by OTP's rules.
    fn deliver_link_exit(&self, target: &dyn ProcessHandle, from: Pid, reason: ExitReason) {
        let core = target.core();
        let mut st = core.state.lock();
        if st.exiting || !st.has_link(from) {
            return;
        }
        if core.traps_exits() {
            // The link stays until the loop handles the signal: one pending signal
            // per link, so the system lane stays bounded.
            target.push_signal(
                Signal::Exit {
                    from,
                    reason,
                    linked: true,
                },
                false,
            );
            return;
        }
        st.rel().links.remove(&from);
        drop(st);
        if !reason.is_normal() {
            core.kill(reason);
        }
    }

    /// An explicit exit signal (`exit/2`).
    pub(crate) fn exit_signal(&self, from: Option<Pid>, target: Pid, reason: ExitReason) {
        let Some(t) = self.table.get(target) else {
            return;
        };
        let core = t.core();
        if core.traps_exits() {
            let from = from.unwrap_or_else(|| self.node_pid());
            t.push_signal(
                Signal::Exit {
                    from,
                    reason,
                    linked: false,
                },
                true,
            );
        } else if !reason.is_normal() || from == Some(target) {
            core.kill(reason);
        }
    }

    // ----- monitors -----

    fn next_ref(&self) -> MonitorRef {
        MonitorRef(self.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn monitor(&self, me: &dyn ProcessHandle, pid: Pid) -> Result<MonitorRef, LinkError> {
        let limit = self.config.max_monitors_per_process;
        let r = self.next_ref();
        {
            let mut st = me.core().state.lock();
            if st.monitors_len() >= limit {
                self.counters.link_refusals.fetch_add(1, Ordering::Relaxed);
                return Err(LinkError::TooManyMonitors { limit });
            }
            st.rel().monitors.insert(r, pid);
        }
        let registered = self.table.get(pid).is_some_and(|t| {
            let mut st = t.core().state.lock();
            if st.exiting {
                return false;
            }
            st.rel().monitored_by.insert(r, Watcher::Process(me.core().pid));
            true
        });
        if !registered {
            // The monitor stays held until its Down is handled: bounded by the
            // monitor limit however often a process monitors dead pids.
            me.push_signal(
                Signal::Down(Down {
                    monitor: r,
                    pid,
                    reason: ExitReason::NoProc,
                }),
                false,
            );
        }
        Ok(r)
    }

    pub(crate) fn demonitor(&self, me: &dyn ProcessHandle, r: MonitorRef) -> bool {
        let target = me
            .core()
            .state
            .lock()
            .rel
            .as_mut()
            .and_then(|rel| rel.monitors.remove(&r));
        let Some(pid) = target else {
            return false;
        };
        if let Some(t) = self.table.get(pid) {
            if let Some(rel) = t.core().state.lock().rel.as_mut() {
                rel.monitored_by.remove(&r);
            }
        }
        true
    }

    pub(crate) fn watch(&self, pid: Pid) -> Result<oneshot::Receiver<ExitReason>, LinkError> {
        let (tx, rx) = oneshot::channel();
        let limit = self.config.max_monitors_per_process;
        match self.table.get(pid) {
            Some(t) => {
                let mut st = t.core().state.lock();
                if st.exiting {
                    let _ = tx.send(ExitReason::NoProc);
                } else {
                    let watchers = st.rel().monitored_by.len();
                    if watchers >= limit {
                        self.counters.link_refusals.fetch_add(1, Ordering::Relaxed);
                        return Err(LinkError::TooManyMonitors { limit });
                    }
                    st.rel()
                        .monitored_by
                        .insert(self.next_ref(), Watcher::External(tx));
                }
            }
            None => {
                let _ = tx.send(ExitReason::NoProc);
            }
        }
        Ok(rx)
    }

    // ----- exit -----

    /// Everything that happens when a process ends, in one place: the mailbox, the
    /// table slot and counters, then the name, links and monitors. The slot is freed
    /// before anyone can learn of the exit (a watch, a `Down`, an exit signal, or a
    /// `NoProc` answer to a link or monitor), so whoever learns of it can spawn a
    /// replacement at once, even at the process limit.
    pub(crate) fn process_exited(&self, handle: &Handle, reason: ExitReason) {
        let core = handle.core();
        let pid = core.pid;
        core.set_status(crate::ProcessState::Exiting);
        handle.close_mailbox();
        let m = handle.mailbox_stats();
        crate::process::SubtreeBudget::release_chain(&core.counted_in);
        self.table.remove(pid);
        let c = &self.counters;
        c.retired_accepted.fetch_add(m.accepted, Ordering::Relaxed);
        c.retired_handled.fetch_add(m.handled, Ordering::Relaxed);
        c.retired_rejected.fetch_add(m.rejected, Ordering::Relaxed);
        c.retired_dropped.fetch_add(m.dropped, Ordering::Relaxed);
        c.retired_expired.fetch_add(m.expired, Ordering::Relaxed);
        let kind = match &reason {
            ExitReason::Normal => &c.exits_normal,
            ExitReason::Shutdown => &c.exits_shutdown,
            ExitReason::Killed => &c.exits_killed,
            ExitReason::Panic(_) => &c.panics,
            ExitReason::MailboxOverflow => &c.overflow_kills,
            _ => &c.exits_other,
        };
        kind.fetch_add(1, Ordering::Relaxed);
        c.exited.fetch_add(1, Ordering::Relaxed);
        let (name, rel) = {
            let mut st = core.state.lock();
            st.exiting = true;
            st.abort = None;
            (st.name.take(), st.rel.take())
        };
        if let Some(name) = name {
            self.registry.remove(&name, pid);
        }
        if let Some(rel) = rel {
            for linked in rel.links {
                if let Some(t) = self.table.get(linked) {
                    self.deliver_link_exit(&*t, pid, reason.clone());
                }
            }
            for (r, watcher) in rel.monitored_by {
                match watcher {
                    Watcher::External(tx) => {
                        let _ = tx.send(reason.clone());
                    }
                    Watcher::Process(w) => {
                        if let Some(w) = self.table.get(w) {
                            let st = w.core().state.lock();
                            let active = !st.exiting
                                && st.rel.as_ref().is_some_and(|rel| rel.monitors.contains_key(&r));
                            if active {
                                w.push_signal(
                                    Signal::Down(Down {
                                        monitor: r,
                                        pid,
                                        reason: reason.clone(),
                                    }),
                                    false,
                                );
                            }
                        }
                    }
                }
            }
            // Monitors this process held: withdraw them from their targets.
            for (r, target) in rel.monitors {
                if let Some(t) = self.table.get(target) {
                    if let Some(trel) = t.core().state.lock().rel.as_mut() {
                        trel.monitored_by.remove(&r);
                    }
                }
            }
        }
        if reason == ExitReason::MailboxOverflow {
            crate::limit_event!(warn, "process killed: mailbox overflow", %pid);
        } else if !reason.is_clean() {
            tracing::debug!(%pid, %reason, "process exited");
        }
    }

    // ----- observation -----

    pub(crate) fn stats(&self) -> NodeStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = NodeStats {
            processes: self.table.len(),
            process_limit: self.table.limit(),
            reserved_processes: self.table.reserved(),
            processes_hwm: c.processes_hwm.load(Ordering::Relaxed),
            spawned: load(&c.spawned),
            spawn_refusals: load(&c.spawn_refusals),
            exited: load(&c.exited),
            exits_normal: load(&c.exits_normal),
            exits_shutdown: load(&c.exits_shutdown),
            exits_killed: load(&c.exits_killed),
            panics: load(&c.panics),
            overflow_kills: load(&c.overflow_kills),
            exits_other: load(&c.exits_other),
            mailbox_bytes: self.budget.used(),
            mailbox_budget_bytes: self.budget.limit(),
            budget_refusals: self.budget.refusals(),
            accepted: load(&c.retired_accepted),
            handled: load(&c.retired_handled),
            rejected: load(&c.retired_rejected),
            dropped: load(&c.retired_dropped),
            expired: load(&c.retired_expired),
            names: self.registry.len(),
            name_limit: self.registry.limit(),
            name_refusals: load(&c.name_refusals),
            timer_refusals: load(&c.timer_refusals),
            link_refusals: load(&c.link_refusals),
            restarts: load(&c.restarts),
            escalations: load(&c.escalations),
            max_children_refusals: load(&c.max_children_refusals),
            subtree_budget_refusals: load(&c.subtree_budget_refusals),
        };
        for p in self.table.entries() {
            let m = p.mailbox_stats();
            s.accepted += m.accepted;
            s.handled += m.handled;
            s.rejected += m.rejected;
            s.dropped += m.dropped;
            s.expired += m.expired;
        }
        s
    }

    /// Watch hook: processes in a handler right now, with their handler run number.
    pub(crate) fn running_handlers(&self) -> Vec<crate::observe::RunningHandler> {
        self.table
            .entries()
            .iter()
            .filter_map(|p| {
                let core = p.core();
                core.running_handler()
                    .map(|run| crate::observe::RunningHandler { pid: core.pid, run })
            })
            .collect()
    }

    pub(crate) fn processes(&self) -> Vec<ProcessInfo> {
        self.table.entries().iter().map(|p| info(&**p)).collect()
    }

    // ----- shutdown -----

    /// Asks one process to stop with `Shutdown`: through its loop if it traps exits
    /// (so `terminate` runs), at once otherwise.
    fn signal_shutdown(p: &dyn ProcessHandle) {
        Self::stop_process(p, ExitReason::Shutdown);
    }

    /// `gen_server:stop`: a trapping process stops through its loop (running
    /// `terminate`), any other is ended with `reason`.
    pub(crate) fn stop_process(p: &dyn ProcessHandle, reason: ExitReason) {
        let core = p.core();
        if !(core.traps_exits() && p.push_signal(Signal::Stop(reason.clone()), false)) {
            core.kill(reason);
        }
    }

    pub(crate) async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.shutting_down.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + timeout;
        let entries = self.table.entries();
        let started = entries.len();
        // Top down, as OTP stops applications: first the roots (no live parent), so
        // supervisors stop their subtrees in order, then whatever is left.
        let roots: Vec<Pid> = entries
            .iter()
            .filter(|p| {
                p.core()
                    .parent
                    .is_none_or(|parent| self.table.get(parent).is_none())
            })
            .map(|p| p.core().pid)
            .collect();
        for p in entries.iter().filter(|p| roots.contains(&p.core().pid)) {
            Self::signal_shutdown(&**p);
        }
        drop(entries);
        while roots.iter().any(|&r| self.table.get(r).is_some()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for p in self.table.entries() {
            Self::signal_shutdown(&*p);
        }
        while self.table.len() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let left = self.table.len();
        if left > 0 {
            for p in self.table.entries() {
                // A process still running after the timeout is killed, whatever was
                // asked of it before.
                let abort = {
                    let mut st = p.core().state.lock();
                    st.kill = Some(ExitReason::Killed);
                    st.abort.clone()
                };
                if let Some(a) = abort {
                    a.abort();
                }
            }
            let grace = tokio::time::Instant::now() + Duration::from_millis(500);
            while self.table.len() > 0 && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let remaining = self.table.len();
        ShutdownReport {
            stopped: started.saturating_sub(left),
            killed: left - remaining,
            remaining,
        }
    }
}
