//! One connection: a girder process (under the server's connection supervisor) plus
//! the two tasks it owns, a reader and a writer.
//!
//! The reader waits for the socket to be readable (no buffer is held by an idle
//! connection), parses requests within the input limits, applies the rate limits,
//! enforces the handshake, request and idle timeouts, and hands whole batches of
//! requests to the process with an awaiting send: when the process falls behind, its
//! bounded mailbox fills, the reader stops reading, and TCP pushes back on the client.
//! The process runs the commands in order and queues the replies on the connection's
//! bounded [`Output`]; the writer drains that queue to the socket. Killing the process
//! (a limit disconnect) aborts both tasks and closes the socket at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use girder::process::{Down, ExitReason, MonitorRef, Pid};
use girder::{Actor, Addr, Ctx, Flow, Mailbox, Overflow, Weight};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::output::{Output, OutputLimits, Refusal};
use super::{commands, kv, Reservation, Shared};
use crate::guard::{ConnLimiter, Decision};
use crate::resp::{self, Parser};

/// What everyone may know about a connection: `CLIENT LIST`, the pub/sub registry
/// (which queues messages on its output), the stats.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) pid: OnceLock<Pid>,
    pub(crate) created: Instant,
    /// Milliseconds after `created` of the last command.
    pub(crate) last_command_ms: AtomicU64,
    /// Channels plus patterns subscribed.
    pub(crate) subs: AtomicUsize,
    /// Bytes in the read buffer.
    pub(crate) qbuf: AtomicUsize,
    pub(crate) commands: AtomicU64,
    pub(crate) last_command: Mutex<&'static str>,
    pub(crate) name: Mutex<Option<Bytes>>,
    pub(crate) output: Output,
}

impl ConnState {
    pub(crate) fn new(id: u64, peer: SocketAddr, local: SocketAddr, shared: &Shared) -> Self {
        let o = shared.config.output;
        ConnState {
            id,
            peer,
            local,
            pid: OnceLock::new(),
            created: Instant::now(),
            last_command_ms: AtomicU64::new(0),
            subs: AtomicUsize::new(0),
            qbuf: AtomicUsize::new(0),
            commands: AtomicU64::new(0),
            last_command: Mutex::new("NULL"),
            name: Mutex::new(None),
            output: Output::new(
                shared.budget.clone(),
                OutputLimits {
                    hard: o.pubsub_hard_limit_bytes,
                    soft: o.pubsub_soft_limit_bytes,
                    soft_for: Duration::from_millis(o.pubsub_soft_limit_ms),
                },
            ),
        }
    }
}

/// One request as the reader hands it over.
pub(crate) enum Req {
    /// A command and its arguments.
    Cmd(Vec<Bytes>),
    /// A request refused by a rate limit: answered with an error, in order.
    Limited(Duration),
}

/// Why the reader (or writer) ends the connection.
#[derive(Debug)]
pub(crate) enum Close {
    /// The client closed.
    Eof,
    /// A timeout fired (already counted).
    Timeout,
    /// A protocol error or input limit: answer, then close.
    Protocol(String),
    /// The peer is banned: answer, then close.
    Banned(Duration),
    /// The socket failed.
    Io,
}

pub(crate) enum ConnMsg {
    Requests(Vec<Req>, usize),
    Close(Close),
}

impl Weight for ConnMsg {
    fn weight(&self) -> usize {
        match self {
            ConnMsg::Requests(_, bytes) => 64 + bytes,
            ConnMsg::Close(_) => 64,
        }
    }
}

/// Aborts the connection's tasks however the process ends.
#[derive(Default)]
struct Tasks {
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in [self.reader.take(), self.writer.take()].into_iter().flatten() {
            t.abort();
        }
    }
}

/// The connection process.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<ConnState>,
    stream: Option<TcpStream>,
    _reservation: Reservation,
    tasks: Tasks,
    pub(crate) authed: bool,
    /// The pub/sub registry this connection subscribed through, monitored: if it
    /// restarts, the subscriptions are gone and the connection closes.
    pub(crate) registry: Option<(Pid, MonitorRef)>,
    /// Replies of the batch being run.
    pub(crate) out: BytesMut,
}

/// The mailbox of a connection process: a few batches, bounded in bytes by the input
/// limits.
pub(crate) fn mailbox(shared: &Shared) -> Mailbox {
    Mailbox::bounded(16)
        .max_bytes(2 * shared.config.limits.max_request_bytes + (64 << 10))
        .overflow(Overflow::Backpressure)
}

impl Conn {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: TcpStream,
        reservation: Reservation,
        state: Arc<ConnState>,
    ) -> Self {
        let authed = shared.config.requirepass.is_none();
        Conn {
            shared,
            state,
            stream: Some(stream),
            _reservation: reservation,
            tasks: Tasks::default(),
            authed,
            registry: None,
            out: BytesMut::new(),
        }
    }

    /// Queues the batch's replies so far on the output. When the node budget is out,
    /// waits (bounded) for room: a normal client's replies are never dropped.
    pub(crate) async fn flush(&mut self) -> Result<(), &'static str> {
        if self.out.is_empty() {
            return Ok(());
        }
        let frame = self.out.split().freeze();
        let give_up = Instant::now() + self.shared.config.idle_timeout();
        let mut wait = Duration::from_millis(1);
        loop {
            match self.state.output.push_reply(frame.clone()) {
                Ok(()) => return Ok(()),
                Err(Refusal::Closed) => return Err("closed"),
                Err(_) if Instant::now() < give_up => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(50));
                }
                Err(_) => {
                    self.shared.counters.output_budget_disconnects(1);
                    return Err(Refusal::BudgetHog.reason());
                }
            }
        }
    }

    /// Answers with an error, flushes, and closes once it is written.
    async fn close_with(&mut self, msg: &str) -> Flow {
        resp::error(&mut self.out, msg);
        let _ = self.flush().await;
        self.state.output.close(true);
        Flow::Stop(ExitReason::Normal)
    }
}

impl Actor for Conn {
    type Msg = ConnMsg;

    async fn init(&mut self, ctx: &mut Ctx<Self>) -> Result<(), ExitReason> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| ExitReason::custom("connection started twice"))?;
        let _ = self.state.pid.set(ctx.pid());
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let limiter = self.shared.guard.conn_limiter();
        self.tasks.writer = Some(tokio::spawn(writer(wr, self.state.clone(), ctx.addr())));
        self.tasks.reader = Some(tokio::spawn(reader(
            rd,
            self.shared.clone(),
            self.state.clone(),
            ctx.addr(),
            limiter,
        )));
        Ok(())
    }

    async fn handle(&mut self, msg: ConnMsg, ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            ConnMsg::Requests(reqs, _) => {
                // Runs of key-value commands go to the shards together (see `kv`);
                // anything else runs alone, in order.
                let mut kv_run: Vec<(String, Vec<Bytes>)> = Vec::new();
                for req in reqs {
                    if let Req::Cmd(args) = &req {
                        if self.authed && self.state.subs.load(Relaxed) == 0 {
                            if let Some(name) = kv_name(&args[0]) {
                                commands::note(self, &name);
                                let Req::Cmd(args) = req else { unreachable!() };
                                kv_run.push((name, args));
                                continue;
                            }
                        }
                    }
                    if !kv_run.is_empty() {
                        kv::run_batch(&self.shared, &kv_run, &mut self.out).await;
                        kv_run.clear();
                    }
                    match req {
                        Req::Limited(retry) => {
                            self.shared.counters.rate_limited(1);
                            resp::error(
                                &mut self.out,
                                &format!(
                                    "ERR rate limit exceeded; retry in {} ms",
                                    retry.as_millis().max(1)
                                ),
                            );
                        }
                        Req::Cmd(args) => {
                            if let commands::Step::Close = commands::run(self, ctx, args).await {
                                let _ = self.flush().await;
                                self.state.output.close(true);
                                return Flow::Stop(ExitReason::Normal);
                            }
                        }
                    }
                }
                if !kv_run.is_empty() {
                    kv::run_batch(&self.shared, &kv_run, &mut self.out).await;
                }
                if let Err(why) = self.flush().await {
                    self.state.output.close(false);
                    return Flow::Stop(ExitReason::custom(why));
                }
                Flow::Continue
            }
            ConnMsg::Close(Close::Protocol(msg)) => {
                self.shared.counters.protocol_errors(1);
                self.close_with(&format!("ERR {msg}")).await
            }
            ConnMsg::Close(Close::Banned(remaining)) => {
                self.shared.counters.banned_closes(1);
                let secs = remaining.as_secs().max(1);
                self.close_with(&format!(
                    "ERR too many requests: this address is banned for repeated rate-limit violations; retry in {secs} s"
                ))
                .await
            }
            ConnMsg::Close(Close::Eof) => {
                // The client shut down its side after its requests: their replies
                // (queued by now, the mailbox is in order) still go out, then EOF.
                self.state.output.close(true);
                Flow::Stop(ExitReason::Normal)
            }
            ConnMsg::Close(Close::Timeout | Close::Io) => {
                self.state.output.close(false);
                Flow::Stop(ExitReason::Normal)
            }
        }
    }

    async fn handle_down(&mut self, down: Down, _ctx: &mut Ctx<Self>) -> Flow {
        if self.registry.as_ref().is_some_and(|(pid, _)| *pid == down.pid) {
            self.registry = None;
            self.state.output.close(false);
            return Flow::Stop(ExitReason::custom(
                "the pub/sub registry restarted; subscriptions are gone",
            ));
        }
        Flow::Continue
    }

    async fn terminate(&mut self, _reason: &ExitReason, _ctx: &mut Ctx<Self>) {
        // Replies already queued (an error before closing, `QUIT`'s +OK) get a short
        // while to go out; then the socket closes.
        self.state.output.close(true);
        if let Some(w) = self.tasks.writer.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
        }
    }
}

/// The lowercase name of a key-value command, if `name` is one.
fn kv_name(name: &[u8]) -> Option<String> {
    if name.len() > 8 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    kv::is_kv(&lower).then(|| String::from_utf8_lossy(&lower).into_owned())
}

/// The reader task.
async fn reader(
    rd: OwnedReadHalf,
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    addr: Addr<Conn>,
    limiter: ConnLimiter,
) {
    let close = read_loop(&rd, &shared, &state, &addr, &limiter).await;
    let _ = addr.send(ConnMsg::Close(close)).await;
}

async fn read_loop(
    rd: &OwnedReadHalf,
    shared: &Shared,
    state: &ConnState,
    addr: &Addr<Conn>,
    limiter: &ConnLimiter,
) -> Close {
    let cfg = &shared.config;
    let ip = state.peer.ip();
    let mut parser = Parser::new(cfg.limits);
    let mut buf = BytesMut::new();
    let mut got_first = false;
    let mut request_started: Option<Instant> = None;
    let mut last_request = Instant::now();
    loop {
        // Whether the connection is subscribed is checked when the idle deadline
        // fires, not when the wait begins: a `SUBSCRIBE` just handed on has not
        // taken effect yet when the reader comes back here.
        let (at, kind) = if !got_first {
            (state.created + cfg.handshake_timeout(), 0)
        } else if let Some(t) = request_started {
            (t + cfg.request_timeout(), 1)
        } else {
            (last_request + cfg.idle_timeout(), 2)
        };
        // A client that does not read its replies is not read from (its requests
        // wait in the socket; TCP pushes back), for at most the idle timeout.
        let pause = cfg.output.normal_pause_bytes;
        if state.output.bytes() > pause && state.subs.load(Relaxed) == 0 {
            let waited = tokio::time::timeout(cfg.idle_timeout(), state.output.wait_below(pause)).await;
            if waited.is_err() {
                shared.counters.timeouts_idle(1);
                return Close::Timeout;
            }
        }
        let ready = match tokio::time::timeout_at(at.into(), rd.readable()).await {
            Ok(r) => r,
            Err(_) => {
                match kind {
                    0 => shared.counters.timeouts_handshake(1),
                    1 => shared.counters.timeouts_request(1),
                    _ if state.subs.load(Relaxed) > 0 => {
                        // Subscribed connections are exempt (as in Redis): look
                        // again after another idle period.
                        last_request = Instant::now();
                        continue;
                    }
                    _ => shared.counters.timeouts_idle(1),
                }
                return Close::Timeout;
            }
        };
        if ready.is_err() {
            return Close::Io;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
        match rd.try_read_buf(&mut buf) {
            Ok(0) if parser.in_request(&buf) => {
                return Close::Protocol(
                    "Protocol error: unexpected end of stream in the middle of a request".into(),
                )
            }
            Ok(0) => return Close::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Close::Io,
        }
        got_first = true;
        let now = Instant::now();
        request_started.get_or_insert(now);
        let mut reqs = Vec::new();
        let mut bytes = 0;
        let mut fatal = None;
        loop {
            match parser.next(&mut buf) {
                Ok(Some(args)) => match shared.guard.check(ip, limiter) {
                    Decision::Allow => {
                        bytes += args.iter().map(|a| a.len() + 16).sum::<usize>();
                        reqs.push(Req::Cmd(args));
                    }
                    Decision::Limited { retry_after } => reqs.push(Req::Limited(retry_after)),
                    Decision::Banned { remaining } => {
                        fatal = Some(Close::Banned(remaining));
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(Close::Protocol(e.to_string()));
                    break;
                }
            }
        }
        if !reqs.is_empty() {
            last_request = now;
            request_started = parser.in_request(&buf).then_some(now);
        }
        if buf.is_empty() {
            // Hold no buffer between requests (an idle connection costs no input
            // memory); arguments handed on keep their own slices alive.
            buf = BytesMut::new();
        }
        state.qbuf.store(buf.len(), Relaxed);
        if !reqs.is_empty() && addr.send(ConnMsg::Requests(reqs, bytes)).await.is_err() {
            return Close::Io;
        }
        if let Some(f) = fatal {
            return f;
        }
    }
}

/// The writer task: drains the output queue to the socket.
async fn writer(mut wr: OwnedWriteHalf, state: Arc<ConnState>, addr: Addr<Conn>) {
    let mut frames = Vec::new();
    let mut buf = BytesMut::new();
    while let Some(n) = state.output.take(&mut frames, 256 << 10).await {
        let res = if frames.len() == 1 {
            wr.write_all(&frames[0]).await
        } else {
            buf.clear();
            for f in &frames {
                buf.extend_from_slice(f);
            }
            wr.write_all(&buf).await
        };
        frames.clear();
        state.output.written_done(n);
        if buf.capacity() > 1 << 20 {
            buf = BytesMut::new();
        }
        if res.is_err() {
            state.output.close(false);
            let _ = addr.try_send_priority(ConnMsg::Close(Close::Io));
            return;
        }
    }
    let _ = wr.shutdown().await;
}
