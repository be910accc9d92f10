//! Bad input, timeouts, connection caps and configuration errors, over raw TCP.
//!
//! Every misbehaving connection gets its `-ERR ...` line (read here) and then EOF;
//! only that connection closes: a bystander opened before keeps answering `PING`.
//! Nothing here asserts tight timings: every wait is a generous upper bound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use girder::Node;
use girder_net::resp::Limits;
use girder_net::server::{Server, ServerConfig, ServerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most any step here may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

async fn start(cfg: ServerConfig) -> (Node, Server) {
    let node = Node::builder().build().unwrap();
    let server = Server::start(&node, ServerConfig { port: 0, ..cfg })
        .await
        .unwrap();
    (node, server)
}

fn small_limits() -> ServerConfig {
    ServerConfig {
        limits: Limits {
            max_request_bytes: 4096,
            max_bulk_len: 1024,
            max_args: 8,
            max_inline_len: 256,
        },
        ..Default::default()
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Reads until EOF (a reset after the reply counts as the end too), bounded.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!(
                "no EOF within {PATIENCE:?}; got so far: {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
}

/// Sends `PING` and expects `+PONG`.
async fn ping(s: &mut TcpStream) {
    s.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 7];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut buf))
        .await
        .expect("PONG timed out")
        .expect("PONG");
    assert_eq!(&buf, b"+PONG\r\n");
}

/// Polls `cond` on the server's stats until it holds (bounded).
async fn wait_for(server: &Server, what: &str, cond: impl Fn(&ServerStats) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = server.stats();
        if cond(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `input`, expects one `-ERR Protocol error: ...` line containing `want`,
/// then EOF.
async fn expect_protocol_error(addr: SocketAddr, input: &[u8], want: &str) {
    let mut s = connect(addr).await;
    s.write_all(input).await.unwrap();
    let got = read_all(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("-ERR Protocol error: ") && text.ends_with("\r\n"),
        "input {:?}: got {text:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(text.matches("\r\n").count(), 1, "one line, then EOF: {text:?}");
    assert!(
        text.contains(want),
        "input {:?}: {text:?} should say {want:?}",
        String::from_utf8_lossy(input)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_only_that_connection() {
    let (_node, server) = start(small_limits()).await;
    let addr = server.local_addr();
    let mut bystander = connect(addr).await;
    ping(&mut bystander).await;

    let mut too_large = b"*8\r\n".to_vec();
    for _ in 0..4 {
        too_large.extend_from_slice(b"$1000\r\n");
        too_large.extend_from_slice(&[b'x'; 1000]);
        too_large.extend_from_slice(b"\r\n");
    }
    too_large.extend_from_slice(b"$1000\r\n"); // the fifth header crosses 4096
    let mut garbage: Vec<u8> = (0..300u32).map(|i| (i * 151 % 251) as u8 | 0x80).collect();
    garbage.retain(|b| *b != b'\n');
    let mut unterminated = b"SET k ".to_vec();
    unterminated.extend_from_slice(&[b'v'; 300]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"*x\r\n".to_vec(), "invalid multibulk length"),
        (b"*1\r\n+PING\r\n".to_vec(), "expected '$', got '+'"),
        (b"*1\r\n$-5\r\n".to_vec(), "invalid bulk length"),
        (b"*1\r\n$2\r\nabc\r\n".to_vec(), "expected CRLF"),
        // Refused on the header: the 1 GB never has to arrive.
        (
            b"*2\r\n$3\r\nSET\r\n$1000000000\r\n".to_vec(),
            "bulk length 1000000000 exceeds the limit of 1024 bytes",
        ),
        (too_large, "request exceeds the limit of 4096 bytes"),
        (b"*9\r\n".to_vec(), "too many arguments (9, the limit is 8)"),
        (
            b"a b c d e f g h i\r\n".to_vec(),
            "too many arguments (9, the limit is 8)",
        ),
        (b"\x00\xff\"\x01garbage\r\n".to_vec(), "unbalanced quotes"),
        (garbage, "too big inline request"),
        (unterminated, "too big inline request"),
    ];
    let n = cases.len() as u64;
    for (input, want) in cases {
        expect_protocol_error(addr, &input, want).await;
        ping(&mut bystander).await;
    }
    wait_for(&server, "protocol_errors", |s| s.counters.protocol_errors == n).await;
    wait_for(&server, "only the bystander left", |s| s.connections == 1).await;
    assert_eq!(server.stats().counters.timeouts_request, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_vanishing_clients() {
    let (_node, server) = start(small_limits()).await;
    let addr = server.local_addr();
    let mut bystander = connect(addr).await;
    ping(&mut bystander).await;

    // A client that sends whole requests and shuts down its write side still gets
    // every reply before EOF (as `printf 'PING\r\n' | nc -N` expects).
    for i in 0..20 {
        let mut s = connect(addr).await;
        s.write_all(b"SET h 1\r\nINCR h\r\n*2\r\n$3\r\nGET\r\n$1\r\nh\r\nPING\r\n")
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let got = read_all(&mut s).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n",
            "round {i}"
        );
    }
    ping(&mut bystander).await;
    assert_eq!(server.stats().counters.protocol_errors, 0);

    // Shut down mid-request: the truncated request is a protocol error, answered.
    for partial in [
        &b"*2\r\n$3\r\nGET\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n$5\r\nab",
        b"PIN",
    ] {
        let mut s = connect(addr).await;
        s.write_all(partial).await.unwrap();
        s.shutdown().await.unwrap();
        let got = read_all(&mut s).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("-ERR Protocol error: ") && text.contains("end of stream"),
            "{:?}: {text:?}",
            String::from_utf8_lossy(partial)
        );
        ping(&mut bystander).await;
    }
    wait_for(&server, "protocol_errors", |s| s.counters.protocol_errors == 3).await;

    // Connects and vanishes: with nothing sent, with half a request, and with a
    // reset (linger 0). The server notices and frees the connections.
    {
        let _silent = connect(addr).await;
        let mut half = connect(addr).await;
        half.write_all(b"*3\r\n$3\r\nSET\r\n").await.unwrap();
        let reset = connect(addr).await;
        reset.set_zero_linger().unwrap();
        wait_for(&server, "four connections", |s| s.connections == 4).await;
    }
    wait_for(&server, "only the bystander left", |s| s.connections == 1).await;
    ping(&mut bystander).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_request_and_idle_timeouts() {
    let cfg = ServerConfig {
        handshake_timeout_ms: 300,
        request_timeout_ms: 300,
        idle_timeout_ms: 300,
        ..Default::default()
    };
    let (_node, server) = start(cfg).await;
    let addr = server.local_addr();

    // Silent: never sends a byte.
    let mut silent = connect(addr).await;
    assert!(read_all(&mut silent).await.is_empty());
    wait_for(&server, "a handshake timeout", |s| {
        s.counters.timeouts_handshake == 1
    })
    .await;

    // A byte at a time: the request never completes in time.
    let mut slow = connect(addr).await;
    let mut request = b"*1\r\n$100\r\n".to_vec();
    request.extend_from_slice(&[b'p'; 100]);
    request.extend_from_slice(b"\r\n");
    let started = Instant::now();
    let mut closed = false;
    for b in &request {
        if slow.write_all(std::slice::from_ref(b)).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("unexpected reply {:?}", String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(closed, "a byte-at-a-time request was not cut off");
    assert!(started.elapsed() >= Duration::from_millis(300));
    wait_for(&server, "a request timeout", |s| s.counters.timeouts_request == 1).await;

    // Idle after a request.
    let mut idle = connect(addr).await;
    ping(&mut idle).await;
    assert!(read_all(&mut idle).await.is_empty());
    wait_for(&server, "an idle timeout", |s| s.counters.timeouts_idle == 1).await;

    // Subscribed connections are exempt from the idle timeout (as in Redis).
    let mut sub = connect(addr).await;
    sub.write_all(b"SUBSCRIBE ch\r\n").await.unwrap();
    let want = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
    let mut buf = vec![0u8; want.len()];
    tokio::time::timeout(PATIENCE, sub.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..], &want[..]);
    let mut one = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(1200), sub.read(&mut one))
            .await
            .is_err(),
        "a subscriber was closed while idle"
    );

    let c = server.stats().counters;
    assert_eq!(
        (c.timeouts_handshake, c.timeouts_request, c.timeouts_idle),
        (1, 1, 1),
        "{c:?}"
    );
    assert_eq!(c.protocol_errors, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_next_one() {
    let cfg = ServerConfig {
        max_connections: 3,
        ..Default::default()
    };
    let (_node, server) = start(cfg).await;
    let addr = server.local_addr();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut s = connect(addr).await;
        ping(&mut s).await;
        conns.push(s);
    }
    let mut extra = connect(addr).await;
    let got = read_all(&mut extra).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR max number of clients reached\r\n"
    );
    for s in &mut conns {
        ping(s).await;
    }
    assert_eq!(server.stats().counters.refused_max_clients, 1);
    // A place freed is a place taken again.
    drop(conns.pop());
    wait_for(&server, "a freed place", |s| s.connections == 2).await;
    let mut again = connect(addr).await;
    ping(&mut again).await;
    server.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_cap_spares_other_peers() {
    use tokio::net::TcpSocket;

    async fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        tokio::time::timeout(PATIENCE, sock.connect(addr))
            .await
            .unwrap()
            .unwrap()
    }

    let cfg = ServerConfig {
        max_connections_per_peer: 2,
        ..Default::default()
    };
    let (_node, server) = start(cfg).await;
    let addr = server.local_addr();
    let mut a1 = connect_from("127.0.0.2", addr).await;
    let mut a2 = connect_from("127.0.0.2", addr).await;
    ping(&mut a1).await;
    ping(&mut a2).await;
    let mut a3 = connect_from("127.0.0.2", addr).await;
    let got = read_all(&mut a3).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR max number of clients reached for this address\r\n"
    );
    let mut b1 = connect_from("127.0.0.3", addr).await;
    let mut b2 = connect_from("127.0.0.3", addr).await;
    ping(&mut b1).await;
    ping(&mut b2).await;
    ping(&mut a1).await;
    let s = server.stats();
    assert_eq!(s.counters.refused_per_peer, 1);
    assert_eq!(s.counters.refused_max_clients, 0);
    assert_eq!((s.connections, s.peers), (4, 2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_fail_start_naming_them() {
    let node = Node::builder().build().unwrap();
    let cases: Vec<(ServerConfig, &str)> = vec![
        (
            ServerConfig {
                max_connections: 0,
                ..Default::default()
            },
            "max_connections must be at least 1",
        ),
        (
            ServerConfig {
                max_connections_per_peer: 0,
                ..Default::default()
            },
            "max_connections_per_peer",
        ),
        (
            ServerConfig {
                requirepass: Some(String::new()),
                ..Default::default()
            },
            "requirepass",
        ),
        (
            ServerConfig {
                idle_timeout_ms: 0,
                ..Default::default()
            },
            "idle_timeout_ms",
        ),
        (
            ServerConfig {
                limits: Limits {
                    max_bulk_len: 10,
                    max_request_bytes: 5,
                    ..Default::default()
                },
                ..Default::default()
            },
            "limits.max_bulk_len",
        ),
        (
            {
                let mut c = ServerConfig::default();
                c.keyspace.shards = 0;
                c
            },
            "keyspace.shards",
        ),
        (
            {
                let mut c = ServerConfig::default();
                c.rate.per_peer_per_second = 0;
                c
            },
            "rate.per_peer_per_second",
        ),
        (
            {
                let mut c = ServerConfig::default();
                c.output.pubsub_soft_limit_bytes = c.output.pubsub_hard_limit_bytes + 1;
                c
            },
            "output.pubsub_soft_limit_bytes",
        ),
    ];
    for (cfg, want) in cases {
        let e = match Server::start(&node, ServerConfig { port: 0, ..cfg }).await {
            Ok(_) => panic!("{want}: started"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{e:?} should name {want}");
    }
    // A port in use names the address.
    let (_n2, running) = start(ServerConfig::default()).await;
    let taken = running.local_addr();
    let e = match Server::start(
        &node,
        ServerConfig {
            port: taken.port(),
            ..Default::default()
        },
    )
    .await
    {
        Ok(_) => panic!("bound a port in use"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&taken.to_string()) && e.contains("--port"), "{e}");
    // TOML: unknown settings and wrong types are named.
    for (toml, want) in [
        ("max_conections = 5", "max_conections"),
        ("[limits]\nmax_args = \"many\"", "max_args"),
        ("[keyspace]\nshards = 0", "keyspace.shards"),
    ] {
        let e = ServerConfig::from_toml_str(toml).unwrap_err().to_string();
        assert!(e.contains(want), "{toml:?}: {e}");
    }
    running.shutdown().await;
}
