//! Memory per idle process: spawn 100,000 idle actors and read the resident set size
//! (`VmRSS` in `/proc/self/status`, so Linux only) and the live heap bytes before,
//! while they wait, and after they have all exited.
//!
//! ```text
//! cargo run --release -p girder --example idle_memory [COUNT]
//! ```
//!
//! A counting global allocator reports the exact heap bytes and allocations each
//! process holds (RSS also includes allocator slack and page rounding), and the sizes
//! of the allocations one spawn makes. A second round spawns the same number again:
//! if exited processes gave their memory back, RSS does not grow past the first peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use girder::{Actor, Addr, Ctx, ExitReason, Flow, Mailbox, Node, Pid};

// ----- a counting allocator -----

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
const TRACE_MAX: usize = 32;
static TRACE_SIZES: [AtomicUsize; TRACE_MAX] = [const { AtomicUsize::new(0) }; TRACE_MAX];
static TRACE_LEN: AtomicUsize = AtomicUsize::new(0);

fn record(size: usize) {
    if TRACE.load(Ordering::Relaxed) {
        let i = TRACE_LEN.fetch_add(1, Ordering::Relaxed);
        if i < TRACE_MAX {
            TRACE_SIZES[i].store(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` unchanged and only updates counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
            record(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
            record(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ----- measurements -----

#[derive(Clone, Copy)]
struct Sample {
    rss: isize,
    heap: isize,
    allocs: isize,
}

fn rss_bytes() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux only)");
    let kb: isize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

fn sample() -> Sample {
    Sample {
        rss: rss_bytes(),
        heap: LIVE_BYTES.load(Ordering::Relaxed),
        allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
    }
}

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn per(a: Sample, b: Sample, n: usize) -> (f64, f64, f64) {
    let n = n as f64;
    (
        (b.rss - a.rss) as f64 / n,
        (b.heap - a.heap) as f64 / n,
        (b.allocs - a.allocs) as f64 / n,
    )
}

// ----- the idle actor -----

static STARTED: AtomicUsize = AtomicUsize::new(0);
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Does nothing; counts itself in and out.
struct Idle;

impl Drop for Idle {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Actor for Idle {
    type Msg = ();

    async fn init(&mut self, _: &mut Ctx<Self>) -> Result<(), ExitReason> {
        STARTED.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow {
        Flow::Continue
    }
}

fn spawn_idle(node: &Node) -> Addr<Idle> {
    ALIVE.fetch_add(1, Ordering::AcqRel);
    node.spawn(Idle).expect("spawn")
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Spawns `pids.len()` idle actors, waits until every one is parked in its receive
/// loop, and returns the sample taken then.
async fn spawn_round(node: &Node, pids: &mut [Pid]) -> Sample {
    let started = STARTED.load(Ordering::Acquire);
    for slot in pids.iter_mut() {
        *slot = spawn_idle(node).pid();
    }
    let n = pids.len();
    wait_until("init", || STARTED.load(Ordering::Acquire) - started == n).await;
    // Let every process reach `poll_recv` and park.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sample()
}

async fn stop_round(node: &Node, pids: &[Pid]) -> Sample {
    for &pid in pids {
        node.kill(pid);
    }
    wait_until("exits", || ALIVE.load(Ordering::Acquire) == 0).await;
    wait_until("table", || node.stats().processes == 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sample()
}

async fn run(count: usize) {
    let node = Node::builder().build().expect("node");

    // Warm up thread-locals, the runtime's queues and the allocator's arenas.
    let warm: Vec<Pid> = (0..64).map(|_| spawn_idle(&node).pid()).collect();
    wait_until("warm-up", || STARTED.load(Ordering::Acquire) == warm.len()).await;
    stop_round(&node, &warm).await;

    // The pids are kept to stop the processes later; fill the vector now so that its
    // pages are resident before the baseline.
    let mut pids = vec![warm[0]; count];

    // What one spawn allocates (sizes in bytes, in order; includes the task's first
    // poll if a worker runs it meanwhile).
    TRACE_LEN.store(0, Ordering::Relaxed);
    TRACE.store(true, Ordering::Relaxed);
    let one = spawn_idle(&node);
    TRACE.store(false, Ordering::Relaxed);
    let traced = TRACE_LEN.load(Ordering::Relaxed).min(TRACE_MAX);
    let sizes: Vec<usize> = TRACE_SIZES[..traced]
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    wait_until("traced init", || {
        STARTED.load(Ordering::Acquire) == warm.len() + 1
    })
    .await;
    stop_round(&node, &[one.pid()]).await;
    drop(one);

    let base = sample();
    let t = Instant::now();
    let peak = spawn_round(&node, &mut pids).await;
    let spawn_time = t.elapsed();
    let (rss_per, heap_per, allocs_per) = per(base, peak, count);
    let after = stop_round(&node, &pids).await;

    // Round two: the memory of exited processes is reused.
    let peak2 = spawn_round(&node, &mut pids).await;
    let after2 = stop_round(&node, &pids).await;
    let (rss_per2, heap_per2, _) = per(base, peak2, count);

    println!("girder idle-process memory ({count} idle actors, default mailbox, 2 tokio workers)");
    println!();
    println!("allocations made by one spawn (bytes): {sizes:?}");
    println!(
        "size_of: Addr<_> {} B, Pid {} B, Mailbox {} B, ExitReason {} B",
        size_of::<Addr<Idle>>(),
        size_of::<Pid>(),
        size_of::<Mailbox>(),
        size_of::<ExitReason>(),
    );
    println!();
    println!("| moment | RSS MiB | heap MiB | live allocations | processes |");
    println!("|---|---:|---:|---:|---:|");
    let row = |what: &str, s: Sample, procs: usize| {
        println!(
            "| {what} | {:.1} | {:.1} | {} | {procs} |",
            mib(s.rss),
            mib(s.heap),
            s.allocs
        );
    };
    row("baseline", base, 0);
    row(&format!("{count} idle"), peak, count);
    row("all exited", after, 0);
    row(&format!("{count} idle again"), peak2, count);
    row("all exited again", after2, node.stats().processes);
    println!();
    println!(
        "per idle process: {rss_per:.0} B of RSS, {heap_per:.0} B of heap in {allocs_per:.2} allocations"
    );
    println!("per idle process, second round: {rss_per2:.0} B of RSS, {heap_per2:.0} B of heap");
    println!(
        "after exit: {:.0} B of heap per process still held (table slots and free list), processes = {}",
        (after.heap - base.heap) as f64 / count as f64,
        node.stats().processes
    );
    println!(
        "spawn of {count} (until all parked, incl. 200 ms settle): {:.0} ms",
        spawn_time.as_secs_f64() * 1e3
    );
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("COUNT must be a number"))
        .unwrap_or(100_000);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(count));
}
