//! Property: any sequence of child crashes leaves a supervision tree in the state OTP's
//! rules predict, or escalated exactly when the restart intensity says so.
//!
//! A random tree (strategies, restart types, intensities, nesting) is started; random
//! children (workers or nested supervisors) end one at a time — panic, normal exit,
//! `shutdown` exit, or kill — and after each step the test waits for the tree to
//! settle and compares it with a small reference model of OTP's rules: which children
//! run, which kept their pid, which were restarted (new pid), which were forgotten,
//! and the node's restart and escalation counters.

mod suptest;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use girder::supervisor::{
    ChildKind, ChildSpec, Restart, Strategy as SupStrategy, Supervisor, SupervisorRef, SupervisorSpec,
};
use girder::{ExitReason, Node, Pid};
use proptest::prelude::*;
use suptest::*;

/// Long enough that no restart ever leaves the intensity window during a case.
const PERIOD: Duration = Duration::from_secs(3600);

// ----- shapes (generated) -----

#[derive(Clone, Debug)]
struct SupShape {
    strategy: SupStrategy,
    max_restarts: u32,
    children: Vec<ChildShape>,
}

#[derive(Clone, Debug)]
struct ChildShape {
    restart: Restart,
    /// `None`: a worker; `Some`: a nested supervisor.
    sup: Option<SupShape>,
}

fn id(i: usize) -> String {
    format!("c{i}")
}

fn restart_type() -> impl Strategy<Value = Restart> {
    prop_oneof![
        Just(Restart::Permanent),
        Just(Restart::Transient),
        Just(Restart::Temporary)
    ]
}

fn sup_strategy() -> impl Strategy<Value = SupStrategy> {
    prop_oneof![
        Just(SupStrategy::OneForOne),
        Just(SupStrategy::OneForAll),
        Just(SupStrategy::RestForOne)
    ]
}

fn sup_shape(depth: u32) -> BoxedStrategy<SupShape> {
    let child = if depth == 0 {
        restart_type()
            .prop_map(|restart| ChildShape { restart, sup: None })
            .boxed()
    } else {
        prop_oneof![
            3 => restart_type().prop_map(|restart| ChildShape { restart, sup: None }),
            1 => (restart_type(), sup_shape(depth - 1))
                .prop_map(|(restart, s)| ChildShape { restart, sup: Some(s) }),
        ]
        .boxed()
    };
    (sup_strategy(), 0..=3u32, prop::collection::vec(child, 1..=4))
        .prop_map(|(strategy, max_restarts, children)| SupShape {
            strategy,
            max_restarts,
            children,
        })
        .boxed()
}

fn build_spec(shape: &SupShape, log: &Log) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new(shape.strategy).intensity(shape.max_restarts, PERIOD);
    for (i, c) in shape.children.iter().enumerate() {
        let child = match &c.sup {
            None => Worker::new(&id(i), log).spec(),
            Some(s) => ChildSpec::supervisor(id(i), build_spec(s, log)),
        };
        spec = spec.child(child.restart(c.restart));
    }
    spec
}

// ----- the reference model -----

#[derive(Debug)]
struct MSup {
    strategy: SupStrategy,
    max_restarts: u32,
    restarts: u32,
    children: Vec<MChild>,
}

#[derive(Debug)]
struct MChild {
    id: String,
    restart: Restart,
    shape: Option<SupShape>,
    /// The incarnation running, if any (a fresh number at every start).
    incarnation: Option<u64>,
    /// The running nested supervisor's state.
    sup: Option<MSup>,
}

#[derive(Default, Debug)]
struct Model {
    next: u64,
    restarts: u64,
    escalations: u64,
}

impl Model {
    fn fresh(&mut self, shape: &SupShape) -> MSup {
        let children = shape
            .children
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut child = MChild {
                    id: id(i),
                    restart: c.restart,
                    shape: c.sup.clone(),
                    incarnation: None,
                    sup: None,
                };
                self.start(&mut child);
                child
            })
            .collect();
        MSup {
            strategy: shape.strategy,
            max_restarts: shape.max_restarts,
            restarts: 0,
            children,
        }
    }

    fn start(&mut self, c: &mut MChild) {
        self.next += 1;
        c.incarnation = Some(self.next);
        c.sup = c.shape.as_ref().map(|s| self.fresh(s));
    }

    /// Child `i` of `sup` exited with `reason`. Returns `true` if `sup` escalated
    /// (it stopped its children and exits with `shutdown`).
    fn child_exited(&mut self, sup: &mut MSup, i: usize, reason: &ExitReason) -> bool {
        sup.children[i].incarnation = None;
        sup.children[i].sup = None;
        let restart = sup.children[i].restart;
        let restarts = match restart {
            Restart::Permanent => true,
            Restart::Transient => !matches!(reason, ExitReason::Normal | ExitReason::Shutdown),
            Restart::Temporary => false,
        };
        if !restarts {
            if restart == Restart::Temporary {
                sup.children.remove(i);
            }
            return false;
        }
        sup.restarts += 1;
        if sup.restarts > sup.max_restarts {
            self.escalations += 1;
            return true;
        }
        self.restarts += 1;
        let n = sup.children.len();
        let group = match sup.strategy {
            SupStrategy::OneForOne => i..i + 1,
            SupStrategy::OneForAll => 0..n,
            SupStrategy::RestForOne => i..n,
        };
        // Stopped for a sibling: temporary children are forgotten, the others (running
        // or not) restart in start order, nested supervisors as fresh subtrees.
        let mut kept = Vec::new();
        for (j, mut c) in std::mem::take(&mut sup.children).into_iter().enumerate() {
            if group.contains(&j) {
                if c.restart == Restart::Temporary && j != i {
                    continue;
                }
                self.start(&mut c);
            }
            kept.push(c);
        }
        sup.children = kept;
        false
    }

    /// Ends the process at `path` below `sup`. Returns `true` if `sup` escalated.
    fn end(&mut self, sup: &mut MSup, path: &[usize], reason: &ExitReason) -> bool {
        if path.len() == 1 {
            return self.child_exited(sup, path[0], reason);
        }
        let nested = sup.children[path[0]].sup.as_mut().expect("a running supervisor");
        if self.end(nested, &path[1..], reason) {
            return self.child_exited(sup, path[0], &ExitReason::Shutdown);
        }
        false
    }
}

/// Every running process below `sup` (workers and nested supervisors), depth first:
/// its path, its incarnation and whether it is a supervisor.
fn targets(sup: &MSup, prefix: &mut Vec<usize>, out: &mut Vec<(Vec<usize>, u64, bool)>) {
    for (i, c) in sup.children.iter().enumerate() {
        let Some(inc) = c.incarnation else { continue };
        prefix.push(i);
        out.push((prefix.clone(), inc, c.sup.is_some()));
        if let Some(s) = &c.sup {
            targets(s, prefix, out);
        }
        prefix.pop();
    }
}

// ----- comparing the real tree with the model -----

/// Compares the tree below `sup_ref` with `model`. `seen` maps incarnations to the pids
/// already observed; new incarnations must have pids never seen before. On success,
/// returns the new incarnation → pid pairs.
async fn compare(
    node: &Node,
    sup_ref: &SupervisorRef,
    model: &MSup,
    seen: &HashMap<u64, Pid>,
    seen_pids: &HashSet<Pid>,
    path: &str,
    fresh: &mut Vec<(u64, Pid)>,
) -> Result<(), String> {
    let children = sup_ref
        .which_children()
        .await
        .map_err(|e| format!("{path}: which_children: {e}"))?;
    let ids: Vec<&str> = children.iter().map(|c| &*c.id).collect();
    let want: Vec<&str> = model.children.iter().map(|c| c.id.as_str()).collect();
    if ids != want {
        return Err(format!("{path}: children {ids:?}, model {want:?}"));
    }
    for (real, m) in children.iter().zip(&model.children) {
        let here = format!("{path}/{}", m.id);
        match (real.pid, m.incarnation) {
            (None, None) => {}
            (Some(p), None) => return Err(format!("{here}: running as {p}, model: stopped")),
            (None, Some(_)) => return Err(format!("{here}: stopped, model: running")),
            (Some(p), Some(inc)) => {
                if !node.is_alive(p) {
                    return Err(format!("{here}: {p} is dead"));
                }
                match seen.get(&inc) {
                    Some(&q) if q != p => {
                        return Err(format!("{here}: pid {p}, model: still {q} (not restarted)"))
                    }
                    Some(_) => {}
                    None if seen_pids.contains(&p) => {
                        return Err(format!("{here}: pid {p} kept, model: restarted"))
                    }
                    None => fresh.push((inc, p)),
                }
                if let Some(nested) = &m.sup {
                    if real.kind != ChildKind::Supervisor {
                        return Err(format!("{here}: not a supervisor"));
                    }
                    let addr = node
                        .lookup::<Supervisor>(p)
                        .ok_or_else(|| format!("{here}: supervisor {p} gone"))?;
                    let r = SupervisorRef::new(addr).with_timeout(Duration::from_secs(2));
                    Box::pin(compare(node, &r, nested, seen, seen_pids, &here, fresh)).await?;
                }
            }
        }
    }
    Ok(())
}

/// Waits until the real tree matches the model; records new incarnations' pids.
async fn settle_on_model(
    node: &Node,
    root: &SupervisorRef,
    model: &MSup,
    counters: &Model,
    seen: &mut HashMap<u64, Pid>,
    step: &str,
) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let seen_pids: HashSet<Pid> = seen.values().copied().collect();
        let mut fresh = Vec::new();
        let mut result = compare(node, root, model, seen, &seen_pids, "root", &mut fresh).await;
        if result.is_ok() {
            let s = node.stats();
            if (s.restarts, s.escalations) != (counters.restarts, counters.escalations) {
                result = Err(format!(
                    "counters: restarts {} escalations {}, model {} and {}",
                    s.restarts, s.escalations, counters.restarts, counters.escalations
                ));
            }
        }
        match result {
            Ok(()) => {
                seen.extend(fresh);
                return;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "{step}: the tree never matched the model: {e}\nmodel: {model:#?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

const ENDS: [End; 4] = [End::Panic, End::Normal, End::Shutdown, End::Kill];

async fn run_case(shape: SupShape, events: Vec<(usize, usize)>) {
    let node = node();
    let log = Log::new();
    let root = Supervisor::start(&node, build_spec(&shape, &log)).await.unwrap();
    let root_watch = node.watch(root.pid());
    let mut counters = Model::default();
    let mut model = counters.fresh(&shape);
    let mut seen = HashMap::new();
    settle_on_model(&node, &root, &model, &counters, &mut seen, "start").await;

    for (k, (pick, end)) in events.into_iter().enumerate() {
        let mut all = Vec::new();
        targets(&model, &mut Vec::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let (path, inc, is_sup) = all[pick % all.len()].clone();
        let pid = seen[&inc];
        // Supervisors are only killed; workers end every way.
        let end = if is_sup {
            End::Kill
        } else {
            ENDS[end % ENDS.len()].clone()
        };
        let step = format!("step {k}: {end:?} at {path:?}");
        let reason = end_child(&node, pid, &end).await;
        assert_eq!(reason, end.reason(), "{step}");
        if counters.end(&mut model, &path, &reason) {
            // The root escalated: it stops everything and exits with shutdown.
            assert_eq!(
                within("root escalation", root_watch).await,
                ExitReason::Shutdown,
                "{step}"
            );
            all_gone(&node).await;
            let s = node.stats();
            assert_eq!(
                (s.restarts, s.escalations),
                (counters.restarts, counters.escalations),
                "{step}"
            );
            return;
        }
        settle_on_model(&node, &root, &model, &counters, &mut seen, &step).await;
    }
    // Settled for good: nothing changes afterwards.
    tokio::time::sleep(Duration::from_millis(20)).await;
    settle_on_model(&node, &root, &model, &counters, &mut seen, "final").await;
    assert!(node.is_alive(root.pid()));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_crash_sequence_leaves_the_tree_as_otp_predicts(
        shape in sup_shape(2),
        events in prop::collection::vec((any::<usize>(), 0..ENDS.len()), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(shape, events));
    }
}
