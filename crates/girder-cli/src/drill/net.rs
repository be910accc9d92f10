//! Pieces shared by the network drills: a small RESP2 client over a tokio
//! [`TcpStream`], the server each drill attacks ([`NetTarget`]), a sampler of the
//! server's stats, and the process's file-descriptor limit.
//!
//! The client is hand-rolled rather than a Redis library so that the drills control
//! every byte: a connection that sends nothing, one byte at a time, or pipelines
//! without end; a socket bound to a chosen loopback address (`127.0.0.2` for an
//! attacker, `127.0.0.3` for a legitimate peer: all of `127.0.0.0/8` is loopback on
//! Linux); a subscriber that never reads; and the raw refusal line a refused
//! connection gets before its socket closes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use girder::Node;
use girder_net::server::{RateConfig, Server, ServerConfig, ServerStats};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use super::measure::{self, Checks, LegitReport};

/// The loopback address attackers connect from, so that per-peer limits and bans
/// fall on them and not on the legitimate client.
pub const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The loopback address a legitimate peer connects from when the drill separates
/// peers.
pub const LEGIT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

// ----- the RESP client -----

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...` (without the `-`).
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$n` bulk string, `None` for the null bulk.
    Bulk(Option<Vec<u8>>),
    /// `*n` array, `None` for the null array.
    Array(Option<Vec<Reply>>),
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn parse_int(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad integer in a reply"))
}

/// Parses one reply from the front of `b`: the reply and the bytes it took, or
/// `None` if `b` holds only part of one.
pub fn parse(b: &[u8]) -> io::Result<Option<(Reply, usize)>> {
    let Some(&kind) = b.first() else {
        return Ok(None);
    };
    let Some(eol) = find_crlf(b) else {
        return Ok(None);
    };
    let line = &b[1..eol];
    let mut used = eol + 2;
    let reply = match kind {
        b'+' => Reply::Simple(String::from_utf8_lossy(line).into_owned()),
        b'-' => Reply::Error(String::from_utf8_lossy(line).into_owned()),
        b':' => Reply::Int(parse_int(line)?),
        b'$' => {
            let n = parse_int(line)?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let n = n as usize;
                if b.len() < used + n + 2 {
                    return Ok(None);
                }
                let data = b[used..used + n].to_vec();
                used += n + 2;
                Reply::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = parse_int(line)?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity((n as usize).min(64));
                for _ in 0..n {
                    match parse(&b[used..])? {
                        Some((r, u)) => {
                            items.push(r);
                            used += u;
                        }
                        None => return Ok(None),
                    }
                }
                Reply::Array(Some(items))
            }
        }
        _ => return Err(bad("not a RESP reply")),
    };
    Ok(Some((reply, used)))
}

/// Rate limits far above anything one drill client sends: for drills whose flood
/// comes from one well-behaved pipelining client, where the rate limiter is not what
/// is being tested (`request-flood` tests it).
pub fn rate_limits_out_of_the_way() -> RateConfig {
    RateConfig {
        per_peer_per_second: 10_000_000,
        per_peer_burst: 10_000_000,
        per_connection_per_second: 10_000_000,
        per_connection_burst: 10_000_000,
        ..RateConfig::default()
    }
}

/// Appends `args` as a RESP command (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads replies from a byte stream.
pub struct RespReader<R> {
    rd: R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: AsyncRead + Unpin> RespReader<R> {
    /// Reads from `rd`.
    pub fn new(rd: R) -> Self {
        RespReader {
            rd,
            buf: Vec::with_capacity(16 << 10),
            pos: 0,
        }
    }

    /// The next reply. `UnexpectedEof` when the server closed.
    pub async fn read(&mut self) -> io::Result<Reply> {
        loop {
            if let Some((r, n)) = parse(&self.buf[self.pos..])? {
                self.pos += n;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                return Ok(r);
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 << 10);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Opens a TCP connection to `to`, from `from` if given (port chosen by the system),
/// with the receive buffer set to `rcvbuf` bytes if given (which also turns off its
/// autotuning: a small one keeps a stalled reader's kernel buffer small).
pub async fn connect(to: SocketAddr, from: Option<IpAddr>, rcvbuf: Option<u32>) -> io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n)?;
    }
    if let Some(ip) = from {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One RESP connection used request by request.
pub struct RespConn {
    rd: RespReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    out: Vec<u8>,
}

impl RespConn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        let (rd, wr) = stream.into_split();
        RespConn {
            rd: RespReader::new(rd),
            wr,
            out: Vec::new(),
        }
    }

    /// Connects (see [`connect`]).
    pub async fn open(to: SocketAddr, from: Option<IpAddr>) -> io::Result<Self> {
        Ok(Self::new(connect(to, from, None).await?))
    }

    /// Sends one command.
    pub async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.out.clear();
        encode(&mut self.out, args);
        self.wr.write_all(&self.out).await
    }

    /// The next reply.
    pub async fn read(&mut self) -> io::Result<Reply> {
        self.rd.read().await
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send(args).await?;
        self.read().await
    }

    /// The two halves, for pipelining (a writer task and a reader task).
    pub fn split(self) -> (RespReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.rd, self.wr)
    }
}

/// A short stable name for an I/O error, for tallies.
pub fn io_error_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "closed",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::InvalidData => "bad_reply",
        _ => "io",
    }
}

// ----- the server under attack -----

/// The node and the RESP server a network drill attacks.
pub struct NetTarget {
    /// The node the server runs on.
    pub node: Node,
    /// The server (shared with the stats sampler).
    pub server: Arc<Server>,
}

impl NetTarget {
    /// Starts a node and a server with `config` on it.
    pub async fn start(config: ServerConfig) -> Result<Self, String> {
        let node = Node::builder().build().map_err(|e| e.to_string())?;
        // Under `girder drill --http`, the watch follows this node.
        super::observe(&node);
        let server = Server::start(&node, config)
            .await
            .map_err(|e| format!("server: {e}"))?;
        Ok(NetTarget {
            node,
            server: Arc::new(server),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The server's stats now.
    pub fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// The end of every network drill: the server's last stats as the `server`
    /// figure, the server shut down, then the node (see [`measure::shut_down`]).
    pub async fn shut_down(self, legit: &LegitReport, figures: &mut Map<String, Value>, checks: &mut Checks) {
        figures.insert(
            "server".into(),
            serde_json::to_value(self.server.stats()).unwrap_or_default(),
        );
        match Arc::try_unwrap(self.server) {
            Ok(server) => server.shutdown().await,
            Err(_) => checks.check(false, "server shut down (still shared)"),
        }
        measure::shut_down(&self.node, legit, figures, checks).await;
    }
}

/// Highest values of the server's levels, sampled on a thread of their own.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StatsPeaks {
    /// Samples taken.
    pub samples: u64,
    /// Most connections open.
    pub connections: u64,
    /// Most output bytes pending.
    pub output_bytes: u64,
    /// Most ids in the dedup window.
    pub dedup_ids: u64,
    /// Most processes on the node.
    pub processes: u64,
}

/// Samples [`ServerStats`] and the node's process count every [`SAMPLE_EVERY`].
pub struct StatsSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<StatsPeaks>,
}

/// How often [`StatsSampler`] samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

impl StatsSampler {
    /// Starts sampling `target`.
    pub fn start(target: &NetTarget) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (server, node, stop2) = (target.server.clone(), target.node.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut p = StatsPeaks::default();
            loop {
                let s = server.stats();
                p.samples += 1;
                p.connections = p.connections.max(s.connections);
                p.output_bytes = p.output_bytes.max(s.output_bytes);
                p.dedup_ids = p.dedup_ids.max(s.dedup_ids);
                p.processes = p.processes.max(node.stats().processes as u64);
                if stop2.load(Ordering::Acquire) {
                    return p;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        StatsSampler { stop, thread }
    }

    /// Stops (after one last sample) and reports.
    pub fn finish(self) -> StatsPeaks {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// Waits until `cond` holds of the server's stats, up to `timeout`; whether it did.
pub async fn wait_for(target: &NetTarget, timeout: Duration, cond: impl Fn(&ServerStats) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond(&target.stats()) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Raises this process's soft limit on open files to its hard limit (many drills
/// hold thousands of sockets, two descriptors per loopback connection) and returns
/// the soft limit now in force.
// `rlim_t` is `u64` on Linux but not on every platform.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit`/`setrlimit` only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    r.rlim_cur as u64
}

/// How many connections a drill can hold at once: `want`, or fewer if the open-file
/// limit (two descriptors per loopback connection, plus `reserve`) does not allow it.
pub fn affordable_connections(want: usize, reserve: usize) -> usize {
    let limit = raise_fd_limit() as usize;
    want.min(limit.saturating_sub(reserve) / 2)
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`, system-wide), if readable.
/// Context for a drill that opens connections faster than they are accepted: a
/// client whose handshake was dropped waits for a retransmission (1 s, 3 s...).
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}
