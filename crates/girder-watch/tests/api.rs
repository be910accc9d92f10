//! The HTTP API: the token, the JSON shapes, sorting and pages, the tree, the
//! watchdog and the alert rules.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
use girder::{Actor, Ctx, Flow, Mailbox, Node, Overflow, SpawnOptions};
use girder_watch::{AlertRules, Threshold, Watch, WatchConfig, WatchdogConfig};
use serde_json::Value;

use common::get_async;

struct Stuck;
impl Actor for Stuck {
    type Msg = u64;
    async fn handle(&mut self, ms: u64, _: &mut Ctx<Self>) -> Flow {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Flow::Continue
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_wants_the_token_when_one_is_set() {
    let node = Node::builder().build().unwrap();
    let watch = Watch::builder(node.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .token(Some("t0ken".into()))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", watch.local_addr());
    for route in [
        "/",
        "/metrics",
        "/api/stats",
        "/api/processes",
        "/api/tree",
        "/alerts",
        "/api/frame",
    ] {
        let (code, _) = get_async(format!("{base}{route}"), None).await;
        assert_eq!(code, 401, "{route} without a token");
        let (code, _) = get_async(format!("{base}{route}"), Some("wrong".into())).await;
        assert_eq!(code, 401, "{route} with a wrong token");
        let (code, _) = get_async(format!("{base}{route}"), Some("t0ken".into())).await;
        assert_eq!(code, 200, "{route} with the token");
    }
    let (code, _) = get_async(format!("{base}/api/stats?token=t0ken"), None).await;
    assert_eq!(
        code, 200,
        "the token also works as a query parameter (for the page)"
    );
    watch.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sort_and_paginate_and_the_tree_follows_parents() {
    let node = Node::builder().build().unwrap();
    let sup = Supervisor::start(
        &node,
        SupervisorSpec::new(Strategy::OneForOne)
            .child(ChildSpec::worker("a", || Stuck))
            .child(ChildSpec::worker("b", || Stuck)),
    )
    .await
    .unwrap();
    let _ = sup;
    // Three stuck processes with 1, 2 and 3 messages waiting behind a long handler.
    let mut stuck = Vec::new();
    for n in 1..=3u64 {
        let a = node
            .spawn_with(Stuck, SpawnOptions::new().name(format!("stuck-{n}")))
            .unwrap();
        a.try_send(5_000).unwrap();
        for _ in 0..n {
            a.try_send(1).unwrap();
        }
        stuck.push(a);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let watch = Watch::builder(node.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", watch.local_addr());

    let page = json(
        &get_async(format!("{base}/api/processes?sort=mailbox&limit=2"), None)
            .await
            .1,
    );
    assert_eq!(page["limit"], 2);
    assert_eq!(page["sort"], "mailbox");
    let names: Vec<&str> = page["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["stuck-3", "stuck-2"]);
    let total = page["total"].as_u64().unwrap();
    assert!(total >= 6, "supervisor, 2 children, 3 stuck: {total}");
    let next = json(
        &get_async(
            format!("{base}/api/processes?sort=mailbox&limit=2&offset=2"),
            None,
        )
        .await
        .1,
    );
    assert_eq!(next["processes"][0]["name"], "stuck-1");
    let p = &next["processes"][0];
    for field in ["pid", "actor_type", "state", "mailbox", "lost", "links"] {
        assert!(p.get(field).is_some(), "process field {field}: {p}");
    }
    assert_eq!(p["mailbox"]["len"], 1);
    let (code, body) = get_async(format!("{base}/api/processes?sort=bogus"), None).await;
    assert_eq!(code, 400);
    assert!(body.contains("mailbox"), "the error lists the sort keys: {body}");

    let tree = json(&get_async(format!("{base}/api/tree"), None).await.1);
    let roots = tree["roots"].as_array().unwrap();
    let sup_node = roots
        .iter()
        .find(|r| r["children"].as_array().is_some_and(|c| c.len() == 2))
        .expect("the supervisor with its two children");
    assert!(
        sup_node["actor_type"].as_str().unwrap().contains("Supervisor"),
        "{sup_node}"
    );

    let stats = json(&get_async(format!("{base}/api/stats"), None).await.1);
    assert!(stats["node"]["processes"].as_u64().unwrap() >= 6);
    assert!(stats["node"]["queued"].as_u64().unwrap() >= 6);
    assert!(stats.get("rates").is_some() && stats.get("extra").is_some());
    watch.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_reports_a_stuck_handler_once_and_alerts_fire_and_resolve() {
    let node = Node::builder().build().unwrap();
    let rules = AlertRules {
        mailbox_fill: Threshold::new(0.5, 0.3),
        ..AlertRules::default()
    };
    let cfg = WatchConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        collect_every_ms: 100,
        rules,
        watchdog: WatchdogConfig {
            budget_ms: 200,
            scan_every_ms: 50,
            ..WatchdogConfig::default()
        },
        ..WatchConfig::default()
    };
    let watch = Watch::builder(node.clone())
        .config(cfg)
        .extra(Arc::new(|| serde_json::json!({"connections": 7})))
        .start()
        .await
        .unwrap();
    let opts = SpawnOptions::new()
        .name("blocked")
        .mailbox(Mailbox::bounded(4).overflow(Overflow::Reject));
    let a = node.spawn_with(Stuck, opts).unwrap();
    let t0 = Instant::now();
    a.try_send(1_500).unwrap(); // handled at once: the handler blocks 1.5 s
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..4 {
        a.try_send(1).unwrap(); // fills the mailbox behind it
    }
    // The watchdog names it within budget + 2 scans (+ slack for a loaded machine).
    let report = loop {
        if let Some(r) = watch.slow_handlers().into_iter().next() {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no watchdog report");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(report.name.as_deref(), Some("blocked"));
    assert!(report.actor_type.contains("Stuck"));
    assert!(report.running_ms >= 200);
    // The full mailbox raises a mailbox_fill alert after 0.3 s.
    let alerts = loop {
        let v = watch.alerts(10);
        if v.active.iter().any(|a| a.rule == "mailbox_fill") {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no mailbox_fill alert: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        alerts
            .active
            .iter()
            .any(|a| a.rule == "slow_handler" && a.subject.contains("blocked")),
        "{alerts:?}"
    );
    let body = json(
        &get_async(format!("http://{}/alerts", watch.local_addr()), None)
            .await
            .1,
    );
    assert!(body["active"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["rule"] == "mailbox_fill"));
    // Once it drains, both resolve; the report is kept with how long it ran.
    let resolved = loop {
        let v = watch.alerts(10);
        if v.active.is_empty() {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "alerts never resolved: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(resolved.resolved.iter().any(|a| a.rule == "slow_handler"));
    assert_eq!(watch.slow_handlers().len(), 1, "reported once per occurrence");
    assert!(watch.slow_handlers()[0]
        .finished_after_ms
        .is_some_and(|ms| ms >= 1_000));
    assert_eq!(watch.stats().extra["connections"], 7);
    watch.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_bounded_and_refusals_counted() {
    let node = Node::builder().build().unwrap();
    let cfg = WatchConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        max_streams: 1,
        ..WatchConfig::default()
    };
    let watch = Watch::builder(node.clone()).config(cfg).start().await.unwrap();
    let base = format!("http://{}", watch.local_addr());
    // The first stream stays open (its first event is the current frame)...
    let first = tokio::task::spawn_blocking({
        let url = format!("{base}/api/events");
        move || {
            let r = ureq::get(&url).call().unwrap();
            assert_eq!(r.header("content-type"), Some("text/event-stream"));
            let mut reader = std::io::BufReader::new(r.into_reader());
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(line.starts_with("data: {"), "{line}");
            reader
        }
    })
    .await
    .unwrap();
    // ...so a second one is refused, and the refusal is counted.
    let (code, _) = get_async(format!("{base}/api/events"), None).await;
    assert_eq!(code, 503);
    let (_, metrics) = get_async(format!("{base}/metrics"), None).await;
    assert!(
        common::sample(&metrics, r#"girder_watch_refusals_total{cause="max_streams"}"#) >= Some(1.0),
        "{metrics}"
    );
    drop(first);
    watch.shutdown().await;
    node.shutdown().await;
}

#[test]
fn public_types_are_send_and_sync() {
    fn ok<T: Send + Sync>() {}
    ok::<girder_watch::WatchHandle>();
    ok::<girder_watch::Watchdog>();
    ok::<girder_watch::WatchConfig>();
    ok::<girder_watch::WatchError>();
    ok::<girder_watch::Frame>();
}
