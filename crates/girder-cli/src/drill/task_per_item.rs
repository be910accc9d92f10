//! `task-per-item`: one task per item of a huge list, through
//! `TaskSupervisor::async_stream`.
//!
//! The naive answer to "process a million items concurrently" is one `Task.async`
//! per item: a million processes at once. Here [`ITEMS`] items (1,000,000 for the
//! default 5 s attack; shorter attacks scale the count down in proportion, to no
//! less than [`MIN_ITEMS`], see [`items`]) go through `async_stream` with
//! `max_concurrency` [`MAX_CONCURRENCY`], ordered. Each item's task counts itself in
//! and out of an atomic around its body (which yields once, so tasks overlap) and
//! returns a value derived from its item; the drill consumes the stream as it comes
//! and checks each result against its item, in input order. The items are a lazy
//! range: nothing holds the whole list. The drill runs until every item is through.
//!
//! Bounds:
//! - concurrency: the tasks' own count of tasks running at once never exceeded
//!   [`MAX_CONCURRENCY`], and neither did the live process count above the
//!   baseline, sampled every [`SAMPLE_EVERY`] on a thread of its own;
//! - every item accounted for: as many `Ok` results as items, each the right value,
//!   in input order; no error; one task process spawned per item, all gone after;
//! - RSS grew by at most [`PER_TASK_BYTES`] per concurrent task plus [`RSS_MARGIN`],
//!   whatever the number of items;
//! - the legitimate client kept working.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::supervisor::{StreamOptions, TaskSupervisor};
use girder::Node;
use serde_json::{json, Map};

use super::measure::{self, fmt_bytes, fmt_count, fmt_us, micros, Checks, LegitClient};
use super::{Outcome, RssBound};

/// Items for the default 5 s attack.
pub const ITEMS: u64 = 1_000_000;
/// The fewest items a short attack scales down to.
pub const MIN_ITEMS: u64 = 10_000;
/// `async_stream`'s `max_concurrency`.
pub const MAX_CONCURRENCY: usize = 16;
/// How often the sampler thread reads the live process count.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// RSS allowed per concurrent task (a process, its future and its result slot).
pub const PER_TASK_BYTES: u64 = 8 << 10;
/// RSS allowance for the runtime and measurement buffers; the bound does not grow
/// with the number of items.
pub const RSS_MARGIN: u64 = 24 << 20;

/// The number of items for an attack of `attack`.
pub fn items(attack: Duration) -> u64 {
    let scaled = ITEMS as u128 * attack.as_millis() / super::DEFAULT_DURATION.as_millis();
    (scaled as u64).clamp(MIN_ITEMS, ITEMS)
}

/// The value the task for item `i` returns.
fn result_of(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5
}

/// Tasks running at once, counted by the tasks themselves.
#[derive(Default)]
struct Concurrency {
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// What the drill saw of the results.
#[derive(Default)]
struct Results {
    ok: u64,
    wrong: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the drill for `attack`.
pub async fn run(attack: Duration) -> Result<Outcome, String> {
    let items = items(attack);
    let node = Node::builder().build().map_err(|e| e.to_string())?;
    let legit = LegitClient::start(&node).map_err(|e| e.to_string())?;
    let tasks = TaskSupervisor::start(&node, TaskSupervisor::spec())
        .await
        .map_err(|e| e.to_string())?;
    let baseline = node.stats();

    let sampler = measure::LiveSampler::start(&node, SAMPLE_EVERY);

    let conc = Arc::new(Concurrency::default());
    let started = Instant::now();
    let mut stream = {
        let conc = conc.clone();
        tasks.async_stream(
            0..items,
            move |i| {
                let conc = conc.clone();
                async move {
                    let now = conc.running.fetch_add(1, Ordering::AcqRel) + 1;
                    conc.peak.fetch_max(now, Ordering::AcqRel);
                    tokio::task::yield_now().await;
                    conc.running.fetch_sub(1, Ordering::AcqRel);
                    (i, result_of(i))
                }
            },
            StreamOptions::default()
                .max_concurrency(MAX_CONCURRENCY)
                .ordered(true),
        )
    };
    let mut results = Results::default();
    let mut next = 0u64;
    // The stream is a boxed `dyn Stream`: its `poll_next` is callable as is.
    while let Some(r) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match r {
            Ok((i, v)) if i == next && v == result_of(i) => results.ok += 1,
            Ok(_) => results.wrong += 1,
            Err(e) => {
                results.errors += 1;
                results.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        next += 1;
    }
    let run_time = started.elapsed();
    drop(stream);
    let legit = legit.finish().await;
    let (sampled, samples) = sampler.finish()?;
    let after = node.stats();

    let mut checks = Checks::default();
    let peak = conc.peak.load(Ordering::Relaxed);
    checks.check(
        peak <= MAX_CONCURRENCY,
        format!(
            "tasks running at once, counted by the tasks: max {peak} <= max_concurrency {MAX_CONCURRENCY}"
        ),
    );
    let live_above = sampled.saturating_sub(baseline.processes);
    checks.check(
        live_above <= MAX_CONCURRENCY,
        format!(
            "live processes above baseline: max {live_above} <= max_concurrency {MAX_CONCURRENCY} ({} samples)",
            fmt_count(samples)
        ),
    );
    checks.check(
        results.ok == items && next == items && results.wrong == 0 && results.errors == 0,
        format!(
            "results in order {} of {} items, wrong {} + errors {}{} = 0",
            fmt_count(results.ok),
            fmt_count(items),
            results.wrong,
            results.errors,
            results
                .first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        ),
    );
    let tasks_spawned = after.spawned - baseline.spawned;
    checks.check(
        tasks_spawned == items && after.processes == baseline.processes,
        format!(
            "one task per item: {} spawned = {} items, {} live after = {} before",
            fmt_count(tasks_spawned),
            fmt_count(items),
            after.processes,
            baseline.processes
        ),
    );
    measure::check_legit(&mut checks, &legit);

    let rate = items as f64 / run_time.as_secs_f64().max(1e-3);
    let mut figures = Map::new();
    figures.insert("items".into(), items.into());
    figures.insert("max_concurrency".into(), MAX_CONCURRENCY.into());
    figures.insert("ordered".into(), true.into());
    figures.insert("peak_concurrent_tasks".into(), peak.into());
    figures.insert("sampled_max_live_above_baseline".into(), live_above.into());
    figures.insert(
        "results".into(),
        json!({
            "ok": results.ok,
            "wrong": results.wrong,
            "errors": results.errors,
            "first_error": results.first_error,
        }),
    );
    figures.insert("tasks_spawned".into(), tasks_spawned.into());
    figures.insert("processes_hwm".into(), after.processes_hwm.into());
    figures.insert("run_time_us".into(), micros(run_time).into());
    figures.insert("items_per_s".into(), json!(rate));
    measure::shut_down(&node, &legit, &mut figures, &mut checks).await;

    Ok(Outcome {
        attack: format!(
            "{} items through async_stream in {}",
            fmt_count(items),
            fmt_us(micros(run_time))
        ),
        limits: format!(
            "at most {peak} tasks at once (cap {MAX_CONCURRENCY}); {} results in order",
            fmt_count(results.ok)
        ),
        legit,
        checks,
        rss_bound: RssBound {
            bytes: MAX_CONCURRENCY as u64 * PER_TASK_BYTES + RSS_MARGIN,
            why: format!(
                "{MAX_CONCURRENCY} tasks × {} + {} margin, whatever the items",
                fmt_bytes(PER_TASK_BYTES),
                fmt_bytes(RSS_MARGIN)
            ),
        },
        figures,
    })
}
