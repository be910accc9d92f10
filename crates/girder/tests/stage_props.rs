//! Property tests for demand-driven stages (issue 4's invariants):
//!
//! - `no_event_lost_or_duplicated`: random dispatchers (demand, broadcast,
//!   partition), numbers of consumers, `max_demand`/`min_demand`, consumer yields,
//!   producer chunking (fewer events than asked, the rest later from `handle_info`) and
//!   producer bursts (events emitted without demand into a small buffer). Demand: the
//!   union of what the consumers received is the emitted sequence, each event once;
//!   broadcast: every consumer gets the same sequence, in order; partition: each
//!   partition's consumer gets exactly its events, in order. The only loss allowed is
//!   the buffer's counted drops, and only when the producer emitted past the demand.
//! - `in_flight_never_exceeds_max_demand`: measured, not assumed. The consumers count
//!   what they have handled (before the stage gives the demand back); at every
//!   emission the producer compares that with what it has handed to subscriptions (its
//!   own `events_out`, exact while it runs) and with what it has emitted, this
//!   emission included; and at the start of every piece each consumer compares it with
//!   the producer's `events_out`. In flight = out − handled ≤ max_demand: per consumer
//!   where the dispatcher alone decides the destination (one consumer, or broadcast),
//!   summed over the consumers otherwise (several demand consumers, partitions).
//! - `broadcast_reaches_every_live_consumer_in_order`: consumers that quit midway get a
//!   prefix of the sequence; every consumer still subscribed gets all of it, in order.
//!
//! Case counts are modest so the file runs in seconds; the only clocks are hang guards.

mod stagetest;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use girder::stage::{
    self, BufferKeep, ConsumerStage, Dispatcher, ProducerConsumer, ProducerConsumerStage, ProducerOptions,
    ProducerStage, StageStats, SubscribeOptions,
};
use girder::{Ctx, ExitReason};
use proptest::prelude::*;
use stagetest::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Demand,
    Broadcast,
    Partition,
}

#[derive(Clone, Copy, Debug)]
struct ConsumerCfg {
    max: usize,
    min: usize,
    yields: usize,
    /// Quit (Normal) once this many events are handled (broadcast property only).
    quit_after: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Burst {
    extra: usize,
    buffer_size: usize,
    keep: BufferKeep,
}

#[derive(Clone, Debug)]
struct Case {
    kind: Kind,
    /// Consumer `i` takes partition `i % partitions` with the partition dispatcher.
    consumers: Vec<ConsumerCfg>,
    partitions: usize,
    n: u64,
    chunk: usize,
    burst: Option<Burst>,
    /// Producer → producer-consumer (subscribed with these max/min demands) →
    /// consumers; the producer-consumer has the case's dispatcher.
    via_pc: Option<(usize, usize)>,
}

fn consumer_cfg() -> impl Strategy<Value = ConsumerCfg> {
    (1usize..=20)
        .prop_flat_map(|max| (Just(max), 0..max, 0usize..3))
        .prop_map(|(max, min, yields)| ConsumerCfg {
            max,
            min,
            yields,
            quit_after: None,
        })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Demand), Just(Kind::Broadcast), Just(Kind::Partition)]
}

fn chunk() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 1usize..30]
}

fn burst() -> impl Strategy<Value = Burst> {
    (
        1usize..10,
        1usize..40,
        prop_oneof![Just(BufferKeep::First), Just(BufferKeep::Last)],
    )
        .prop_map(|(extra, buffer_size, keep)| Burst {
            extra,
            buffer_size,
            keep,
        })
}

fn case(with_bursts_and_pcs: bool) -> impl Strategy<Value = Case> {
    let (b, pc) = if with_bursts_and_pcs {
        (
            prop::option::weighted(0.3, burst()).boxed(),
            prop::option::weighted(0.3, consumer_cfg().prop_map(|c| (c.max, c.min))).boxed(),
        )
    } else {
        (Just(None).boxed(), Just(None).boxed())
    };
    (
        kind(),
        prop::collection::vec(consumer_cfg(), 1..=4),
        0u64..500,
        chunk(),
        b,
        pc,
        0usize..4,
    )
        .prop_map(|(kind, consumers, n, chunk, burst, via_pc, parts)| Case {
            kind,
            partitions: 1 + parts % consumers.len(),
            consumers,
            n,
            chunk,
            burst,
            via_pc,
        })
}

/// Passes events through; records its stats when it stops.
struct Pass(Arc<Mutex<Option<StageStats>>>);

impl ProducerConsumer for Pass {
    type In = u64;
    type Out = u64;
    type Info = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: &mut Ctx<ProducerConsumerStage<Self>>,
    ) -> Vec<u64> {
        events
    }

    async fn terminate(&mut self, _: &ExitReason, ctx: &mut Ctx<ProducerConsumerStage<Self>>) {
        *self.0.lock().unwrap() = ctx.node().process_info(ctx.pid()).and_then(|i| i.stage);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What one run produced.
struct Outcome {
    logs: Vec<Vec<u64>>,
    exits: Vec<ExitReason>,
    producer: StageStats,
    /// The producer-consumer's, if any.
    pc: Option<StageStats>,
    violations: Vec<String>,
}

/// Runs producer → (producer-consumer →) consumers for `case`; every stage subscribes
/// before the producer starts.
fn run(case: &Case) -> Outcome {
    runtime().block_on(async {
        let node = node();
        let k = case.consumers.len();
        let handled: Vec<Arc<AtomicU64>> = (0..k).map(|_| Arc::default()).collect();
        let violations = Arc::new(Mutex::new(Vec::<String>::new()));

        // The in-flight bound (only meaningful when the producer emits against demand
        // alone), checked at each emission two ways:
        // - exactly: events handed to subscriptions so far (the producer's own
        //   events_out; nothing is delivered while it emits) minus events handled;
        // - ahead: events emitted so far, this emission included, minus events handled.
        //   handle_demand only ever gets demand the consumers granted, and a consumer
        //   grants only max_demand plus what it has handled, so even the events not yet
        //   dispatched fit. Not for broadcast: demand asked while only the first
        //   consumers had subscribed is filled once later ones join (the excess waits
        //   in the buffer, not in flight).
        let per_consumer = k == 1 || case.kind == Kind::Broadcast;
        let maxes: Vec<u64> = case.consumers.iter().map(|c| c.max as u64).collect();
        let quitters: Vec<bool> = case.consumers.iter().map(|c| c.quit_after.is_some()).collect();
        let ahead = case.kind != Kind::Broadcast;
        let check: EmitCheck = {
            let (handled, maxes, violations) = (handled.clone(), maxes.clone(), violations.clone());
            Arc::new(move |emitted: u64, delivered: u64| {
                let h: Vec<u64> = handled.iter().map(|h| h.load(Ordering::SeqCst)).collect();
                let mut bad = Vec::new();
                let mut bound = |what: &str, out: u64, handled: u64, max: u64| {
                    if out > handled + max {
                        bad.push(format!("{what}: {out} out, {handled} handled, max_demand {max}"));
                    }
                };
                if per_consumer {
                    for (i, (&h, &m)) in h.iter().zip(&maxes).enumerate() {
                        // A consumer that quits stops bounding the producer once it is
                        // gone: only the others are checked.
                        if quitters[i] {
                            continue;
                        }
                        bound(&format!("delivered to consumer {i}"), delivered, h, m);
                        if ahead {
                            bound(&format!("emitted for consumer {i}"), emitted, h, m);
                        }
                    }
                } else {
                    let (hs, ms) = (h.iter().sum::<u64>(), maxes.iter().sum::<u64>());
                    bound("delivered to all", delivered, hs, ms);
                    bound("emitted for all", emitted, hs, ms);
                }
                violations.lock().unwrap().extend(bad);
            })
        };

        let mut seq = Seq::new(0..case.n).held().chunk(case.chunk);
        let final_stats = seq.final_stats.clone();
        let mut popts = ProducerOptions::default();
        let checks = case.burst.is_none() && case.via_pc.is_none();
        if let Some(b) = case.burst {
            seq = seq.burst(b.extra);
            popts = popts.buffer_size(b.buffer_size).buffer_keep(b.keep);
        }
        if checks {
            seq = seq.check(check);
        }
        let dispatcher = match case.kind {
            Kind::Demand => Dispatcher::demand(),
            Kind::Broadcast => Dispatcher::broadcast(),
            Kind::Partition => Dispatcher::partition(case.partitions, |e: &u64| *e as usize),
        };
        let pc_stats = Arc::new(Mutex::new(None));
        let pc = match case.via_pc {
            Some(_) => Some(
                node.start(ProducerConsumerStage::new(
                    Pass(pc_stats.clone()),
                    ProducerOptions::default().dispatcher(dispatcher.clone()),
                ))
                .await
                .unwrap(),
            ),
            None => {
                popts = popts.dispatcher(dispatcher);
                None
            }
        };
        let p = node.start(ProducerStage::new(seq, popts)).await.unwrap();

        let mut logs = Vec::new();
        let mut watches = Vec::new();
        for (i, cfg) in case.consumers.iter().enumerate() {
            let mut rec = Rec::new().yields(cfg.yields);
            rec.handled = handled[i].clone();
            if let Some(q) = cfg.quit_after {
                rec = rec.stop_after(q);
            }
            if per_consumer && checks && cfg.quit_after.is_none() {
                // From the consumer's side: the producer's events_out lags the actual
                // deliveries (it is counted after them), so this never overstates what
                // is in flight.
                let (node, pid, violations, max) =
                    (node.clone(), p.pid(), violations.clone(), cfg.max as u64);
                rec.on_piece = Some(Arc::new(move |handled_before: u64, _len: usize| {
                    let Some(out) = node.process_info(pid).and_then(|i| i.stage).map(|s| s.events_out) else {
                        return;
                    };
                    if out > handled_before + max {
                        violations.lock().unwrap().push(format!(
                            "consumer {i}: {out} delivered, {handled_before} handled, max_demand {max}"
                        ));
                    }
                }));
            }
            logs.push(rec.log());
            let c = node.start(ConsumerStage::new(rec)).await.unwrap();
            watches.push(node.watch(c.pid()));
            let mut o = SubscribeOptions::default()
                .max_demand(cfg.max)
                .min_demand(cfg.min);
            if case.kind == Kind::Partition {
                o = o.partition(i % case.partitions);
            }
            match &pc {
                Some(pc) => within("subscribe", stage::subscribe(&c, pc, o)).await.unwrap(),
                None => within("subscribe", stage::subscribe(&c, &p, o)).await.unwrap(),
            };
        }
        if let (Some(pc), Some((max, min))) = (&pc, case.via_pc) {
            let o = SubscribeOptions::default().max_demand(max).min_demand(min);
            within("subscribe", stage::subscribe(pc, &p, o)).await.unwrap();
        }
        start_seq(&p).await;
        let mut exits = Vec::new();
        for w in watches {
            exits.push(within("consumer exit", w).await);
        }
        // A broadcast producer whose consumers all quit is still waiting for demand.
        let producer = match node.process_info(p.pid()).and_then(|i| i.stage) {
            Some(s) => {
                node.kill(p.pid());
                s
            }
            None => final_stats
                .lock()
                .unwrap()
                .expect("the producer recorded its stats"),
        };
        let violations = violations.lock().unwrap().clone();
        Outcome {
            logs: logs.iter().map(snapshot).collect(),
            exits,
            producer,
            pc: pc.map(|_| {
                pc_stats
                    .lock()
                    .unwrap()
                    .expect("the producer-consumer recorded its stats")
            }),
            violations,
        }
    })
}

fn increasing(l: &[u64]) -> bool {
    l.windows(2).all(|w| w[0] < w[1])
}

fn check_delivery(case: &Case, out: &Outcome) -> Result<(), TestCaseError> {
    let n = case.n;
    for (i, r) in out.exits.iter().enumerate() {
        prop_assert_eq!(r, &ExitReason::Normal, "consumer {} exit", i);
    }
    if let Some(pc) = out.pc {
        prop_assert_eq!(pc.dropped, 0, "the producer-consumer loses nothing");
        prop_assert_eq!(pc.events_in, n - out.producer.dropped);
    }
    let dropped = out.producer.dropped;
    if case.burst.is_none() {
        prop_assert_eq!(dropped, 0, "no drops when the producer emits against demand");
    }
    for (i, l) in out.logs.iter().enumerate() {
        prop_assert!(
            increasing(l),
            "consumer {} out of order or duplicated: {:?}",
            i,
            l
        );
        prop_assert!(l.iter().all(|&e| e < n));
    }
    match case.kind {
        Kind::Demand => {
            let mut all: Vec<u64> = out.logs.concat();
            all.sort_unstable();
            let len = all.len();
            all.dedup();
            prop_assert_eq!(all.len(), len, "an event was delivered twice");
            prop_assert_eq!(len as u64 + dropped, n, "received + counted drops = emitted");
            if case.burst.is_none() {
                prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
        Kind::Broadcast => {
            for (i, l) in out.logs.iter().enumerate() {
                prop_assert_eq!(l, &out.logs[0], "consumer {} differs from consumer 0", i);
            }
            prop_assert_eq!(out.logs[0].len() as u64 + dropped, n);
            if case.burst.is_none() {
                prop_assert_eq!(&out.logs[0], &(0..n).collect::<Vec<_>>());
            }
        }
        Kind::Partition => {
            let parts = case.partitions;
            let mut total = 0;
            for p in 0..parts {
                // The consumers of partition p share its events.
                let mut got = Vec::new();
                for (i, l) in out.logs.iter().enumerate().filter(|(i, _)| i % parts == p) {
                    prop_assert!(
                        l.iter().all(|&e| e as usize % parts == p),
                        "consumer {} of partition {} got a stranger",
                        i,
                        p
                    );
                    got.extend_from_slice(l);
                }
                got.sort_unstable();
                let len = got.len();
                got.dedup();
                prop_assert_eq!(got.len(), len, "partition {}: an event was delivered twice", p);
                if case.burst.is_none() {
                    let want: Vec<u64> = (0..n).filter(|&e| e as usize % parts == p).collect();
                    prop_assert_eq!(got, want, "partition {}", p);
                }
                total += len as u64;
            }
            prop_assert_eq!(total + dropped, n, "received + counted drops = emitted");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_event_lost_or_duplicated(case in case(true)) {
        let out = run(&case);
        check_delivery(&case, &out)?;
    }

    #[test]
    fn in_flight_never_exceeds_max_demand(case in case(false)) {
        let out = run(&case);
        prop_assert!(out.violations.is_empty(), "{:?}", out.violations);
        check_delivery(&case, &out)?;
        // Every event went out (counted once, even when broadcast).
        prop_assert_eq!(out.producer.events_out, case.n);
    }

    #[test]
    fn broadcast_reaches_every_live_consumer_in_order(
        consumers in prop::collection::vec(
            (consumer_cfg(), prop::option::weighted(0.4, 1u64..400)),
            2..=4,
        ),
        n in 1u64..400,
        chunk in chunk(),
    ) {
        let case = Case {
            kind: Kind::Broadcast,
            consumers: consumers
                .iter()
                .map(|(c, q)| ConsumerCfg { quit_after: *q, ..*c })
                .collect(),
            partitions: 1,
            n,
            chunk,
            burst: None,
            via_pc: None,
        };
        let out = run(&case);
        let full: Vec<u64> = (0..n).collect();
        for (i, (cfg, l)) in case.consumers.iter().zip(&out.logs).enumerate() {
            prop_assert_eq!(&out.exits[i], &ExitReason::Normal);
            match cfg.quit_after {
                None => prop_assert_eq!(l, &full, "live consumer {}", i),
                Some(q) => {
                    prop_assert_eq!(l, &(0..l.len() as u64).collect::<Vec<_>>(), "quitter {} gets a prefix", i);
                    prop_assert!(l.len() as u64 >= q.min(n), "quitter {} quit early", i);
                }
            }
        }
        prop_assert!(out.violations.is_empty(), "{:?}", out.violations);
    }
}
