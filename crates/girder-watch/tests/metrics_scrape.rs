//! A `/metrics` scrape under load agrees with the load's own accounting: every
//! refusal the senders saw is counted, and nothing else.
//!
//! One test in this binary: the metrics recorder is global to the program.

mod common;

use std::time::Duration;

use girder::{Actor, Ctx, Flow, Mailbox, Node, Overflow, SendError, SpawnError, SpawnOptions};
use girder_watch::Watch;

use common::{get_async, sample};

struct Slow;
impl Actor for Slow {
    type Msg = u64;
    async fn handle(&mut self, _: u64, _: &mut Ctx<Self>) -> Flow {
        tokio::time::sleep(Duration::from_micros(200)).await;
        Flow::Continue
    }
}

struct Idle;
impl Actor for Idle {
    type Msg = ();
    async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow {
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_counts_match_what_the_load_saw() {
    let node = Node::builder()
        .max_processes(64)
        .reserved_processes(4)
        .build()
        .unwrap();
    let watch = Watch::builder(node.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/metrics", watch.local_addr());

    // Load: four flooders against small Reject mailboxes, scraping meanwhile.
    let mut sinks = Vec::new();
    for i in 0..4 {
        let opts = SpawnOptions::new()
            .name(format!("sink-{i}"))
            .mailbox(Mailbox::bounded(16).overflow(Overflow::Reject));
        sinks.push(node.spawn_with(Slow, opts).unwrap());
    }
    let mut floods = Vec::new();
    for s in sinks.clone() {
        floods.push(tokio::spawn(async move {
            let (mut ok, mut full) = (0u64, 0u64);
            for i in 0..20_000u64 {
                match s.try_send(i) {
                    Ok(()) => ok += 1,
                    Err(SendError::Full(_)) => full += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (ok, full)
        }));
    }
    let mid = get_async(url.clone(), None).await;
    assert_eq!(mid.0, 200);
    let (mut sent, mut refused) = (0, 0);
    for f in floods {
        let (ok, full) = f.await.unwrap();
        sent += ok;
        refused += full;
    }
    // Spawn refusals: fill the table (60 ordinary slots) and count the refusals.
    let mut spawn_refused = 0u64;
    let mut idle = Vec::new();
    for _ in 0..100 {
        match node.spawn(Idle) {
            Ok(a) => idle.push(a),
            Err(SpawnError::ProcessLimit { .. }) => spawn_refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Let the sinks drain, then scrape.
    for _ in 0..200 {
        if node.processes().iter().all(|p| p.mailbox.len == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, text) = get_async(url, None).await;
    assert_eq!(status, 200);
    let m = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing from:\n{text}"));
    assert!(refused > 0, "the load must hit the bound");
    assert_eq!(m(r#"girder_messages_total{outcome="rejected"}"#) as u64, refused);
    assert_eq!(m(r#"girder_messages_total{outcome="accepted"}"#) as u64, sent);
    assert_eq!(m(r#"girder_messages_total{outcome="handled"}"#) as u64, sent);
    assert_eq!(m(r#"girder_messages_total{outcome="dropped"}"#) as u64, 0);
    assert_eq!(
        m(r#"girder_spawn_refusals_total{cause="process_limit"}"#) as u64,
        spawn_refused
    );
    assert_eq!(m("girder_processes") as usize, 4 + idle.len());
    assert_eq!(m("girder_process_limit"), 64.0);
    // Named processes get their own series.
    let handled: u64 = (0..4)
        .map(|i| {
            m(&format!(
                r#"girder_process_messages{{process="sink-{i}",outcome="handled"}}"#
            )) as u64
        })
        .sum();
    assert_eq!(handled, sent);
    assert!(text.contains("girder_top_mailbox_len") || sent > 0);
    // The duration histograms exist once a sample was taken (1 in 64 handler runs).
    assert!(text.contains("girder_handler_duration_seconds_bucket"), "{text}");
    watch.shutdown().await;
    node.shutdown().await;
}
