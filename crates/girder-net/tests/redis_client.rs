//! The server's commands through a real client library (the `redis` crate, its
//! blocking connection: every reply is read one by one, so reply counts and orders
//! are checked exactly, pub/sub confirmations included).

use std::time::{Duration, Instant};

mod common;

use common::Fixture;
use girder_net::server::ServerConfig;
use redis::{Connection, RedisResult, Value};

fn conn_url(url: &str) -> Connection {
    let c = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

trait Connect {
    /// A blocking connection to the fixture's server.
    fn conn(&self) -> Connection;
}

impl Connect for Fixture {
    fn conn(&self) -> Connection {
        conn_url(&self.url)
    }
}

fn cmd(c: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn ok(c: &mut Connection, args: &[&str]) -> Value {
    cmd(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(c: &mut Connection, args: &[&str]) -> String {
    match cmd(c, args) {
        Ok(v) => panic!("{args:?}: expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn okay() -> Value {
    Value::Okay
}

/// Sends one command and reads `n` replies (pub/sub commands answer once per name).
fn send_recv(c: &mut Connection, args: &[&str], n: usize) -> Vec<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    c.send_packed_command(&cmd.get_packed_command()).unwrap();
    (0..n).map(|_| c.recv_response().unwrap()).collect()
}

/// A pub/sub event as RESP2 sends it: `[kind, name, count-or-payload...]`.
fn event(parts: &[&str], count: Option<i64>) -> Value {
    let mut v: Vec<Value> = parts.iter().map(|p| bulk(p)).collect();
    if let Some(n) = count {
        v.push(Value::Int(n));
    }
    Value::Array(v)
}

#[test]
fn a_pipeline_of_1000_gets_1000_replies_in_order() {
    let f = Fixture::start(ServerConfig::default());
    let mut c = f.conn();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        match i % 3 {
            0 => pipe.cmd("INCR").arg("counter"),
            1 => pipe.cmd("ECHO").arg(format!("e{i}")),
            _ => pipe.cmd("SET").arg(format!("k{i}")).arg(i),
        };
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 1000);
    for (i, r) in replies.iter().enumerate() {
        let want = match i % 3 {
            0 => Value::Int(i as i64 / 3 + 1),
            1 => bulk(&format!("e{i}")),
            _ => okay(),
        };
        assert_eq!(r, &want, "reply {i}");
    }
    // And a second pipeline on the same connection reads back what the first wrote.
    let mut pipe = redis::pipe();
    for i in (2..1000).step_by(3) {
        pipe.cmd("GET").arg(format!("k{i}"));
    }
    let got: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(got, (2..1000).step_by(3).collect::<Vec<i64>>());
    assert!(f.server().stats().counters.commands >= 1333);
}

#[test]
fn set_options() {
    let f = Fixture::start(ServerConfig::default());
    let mut c = f.conn();
    assert_eq!(ok(&mut c, &["SET", "k", "v1", "NX"]), okay());
    assert_eq!(ok(&mut c, &["SET", "k", "v2", "NX"]), Value::Nil);
    assert_eq!(ok(&mut c, &["GET", "k"]), bulk("v1"));
    assert_eq!(ok(&mut c, &["SET", "k", "v3", "XX"]), okay());
    assert_eq!(ok(&mut c, &["SET", "missing", "v", "XX"]), Value::Nil);
    assert_eq!(ok(&mut c, &["EXISTS", "missing"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["SET", "k", "v4", "GET"]), bulk("v3"));
    assert_eq!(ok(&mut c, &["SET", "fresh", "v", "GET"]), Value::Nil);
    assert_eq!(ok(&mut c, &["SET", "k", "v5", "NX", "GET"]), bulk("v4"));
    assert_eq!(ok(&mut c, &["GET", "k"]), bulk("v4"), "NX GET did not store");
    assert_eq!(ok(&mut c, &["SET", "k", "v6", "XX", "GET"]), bulk("v4"));
    assert_eq!(ok(&mut c, &["GET", "k"]), bulk("v6"));
    // Expiry: long ones are still there; short ones go (checked with slack).
    assert_eq!(ok(&mut c, &["SET", "ex", "v", "EX", "100"]), okay());
    assert_eq!(ok(&mut c, &["SET", "px", "v", "PX", "100000"]), okay());
    assert_eq!(ok(&mut c, &["SET", "short", "v", "PX", "50"]), okay());
    assert_eq!(ok(&mut c, &["SET", "short2", "v", "px", "50", "nx"]), okay());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(&mut c, &["EXISTS", "short", "short2"]) != Value::Int(0) {
        assert!(Instant::now() < deadline, "PX 50 never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ok(&mut c, &["GET", "short"]), Value::Nil);
    assert_eq!(ok(&mut c, &["EXISTS", "ex", "px"]), Value::Int(2));
    // KEEPTTL keeps it; a plain SET clears it.
    assert_eq!(ok(&mut c, &["SET", "kt", "v", "PX", "60"]), okay());
    assert_eq!(ok(&mut c, &["SET", "kt", "w", "KEEPTTL"]), okay());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(&mut c, &["EXISTS", "kt"]) != Value::Int(0) {
        assert!(Instant::now() < deadline, "KEEPTTL lost the expiry");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Errors, as Redis words them.
    assert!(err(&mut c, &["SET", "k", "v", "NX", "XX"]).contains("syntax error"));
    assert!(err(&mut c, &["SET", "k", "v", "EX", "0"]).contains("invalid expire time"));
    assert!(err(&mut c, &["SET", "k", "v", "PX", "-5"]).contains("invalid expire time"));
    assert!(err(&mut c, &["SET", "k", "v", "EX", "abc"]).contains("not an integer"));
    assert!(err(&mut c, &["SET", "k", "v", "EX"]).contains("syntax error"));
    assert!(err(&mut c, &["SET", "k", "v", "EX", "5", "PX", "5"]).contains("syntax error"));
    assert!(err(&mut c, &["SET", "k", "v", "BOGUS"]).contains("syntax error"));
    assert!(err(&mut c, &["SET", "k"]).contains("wrong number of arguments for 'set'"));
    assert_eq!(
        ok(&mut c, &["GET", "k"]),
        bulk("v6"),
        "refused SETs changed nothing"
    );
}

#[test]
fn del_exists_incr_decr() {
    let f = Fixture::start(ServerConfig::default());
    let mut c = f.conn();
    for k in ["a", "b", "c"] {
        ok(&mut c, &["SET", k, "1"]);
    }
    assert_eq!(ok(&mut c, &["EXISTS", "a", "b", "c", "nope"]), Value::Int(3));
    assert_eq!(
        ok(&mut c, &["EXISTS", "a", "a", "a"]),
        Value::Int(3),
        "counted per name"
    );
    assert_eq!(ok(&mut c, &["DEL", "a", "a", "nope", "b"]), Value::Int(2));
    assert_eq!(ok(&mut c, &["EXISTS", "a", "b", "c"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["UNLINK", "c"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["DBSIZE"]), Value::Int(0));
    assert!(err(&mut c, &["DEL"]).contains("wrong number of arguments for 'del'"));

    assert_eq!(ok(&mut c, &["INCR", "n"]), Value::Int(1));
    assert_eq!(ok(&mut c, &["DECR", "n"]), Value::Int(0));
    assert_eq!(ok(&mut c, &["DECR", "n"]), Value::Int(-1));
    assert_eq!(ok(&mut c, &["INCRBY", "n", "11"]), Value::Int(10));
    assert_eq!(ok(&mut c, &["DECRBY", "n", "3"]), Value::Int(7));
    assert_eq!(ok(&mut c, &["DECR", "fresh"]), Value::Int(-1));
    assert_eq!(ok(&mut c, &["GET", "n"]), bulk("7"));
    ok(&mut c, &["SET", "s", "abc"]);
    assert!(err(&mut c, &["INCR", "s"]).contains("not an integer"));
    ok(&mut c, &["SET", "sp", " 1"]);
    assert!(err(&mut c, &["INCR", "sp"]).contains("not an integer"));
    assert!(err(&mut c, &["INCRBY", "n", "x"]).contains("not an integer"));
    ok(&mut c, &["SET", "max", &i64::MAX.to_string()]);
    assert!(err(&mut c, &["INCR", "max"]).contains("overflow"));
    assert_eq!(ok(&mut c, &["GET", "max"]), bulk(&i64::MAX.to_string()));
    ok(&mut c, &["SET", "min", &i64::MIN.to_string()]);
    assert!(err(&mut c, &["DECR", "min"]).contains("overflow"));
    assert!(err(&mut c, &["DECRBY", "n", &i64::MIN.to_string()]).contains("overflow"));
    assert!(err(&mut c, &["INCR"]).contains("wrong number of arguments for 'incr'"));
}

#[test]
fn pubsub_semantics_and_reply_counts() {
    let f = Fixture::start(ServerConfig::default());
    let mut sub = f.conn();
    let mut publ = f.conn();
    let mut other = f.conn();

    // One confirmation per name, with the running count of subscriptions.
    assert_eq!(
        send_recv(&mut sub, &["SUBSCRIBE", "a", "b", "a"], 3),
        vec![
            event(&["subscribe", "a"], Some(1)),
            event(&["subscribe", "b"], Some(2)),
            event(&["subscribe", "a"], Some(2)),
        ]
    );
    assert_eq!(
        send_recv(&mut sub, &["PSUBSCRIBE", "n*", "x?"], 2),
        vec![
            event(&["psubscribe", "n*"], Some(3)),
            event(&["psubscribe", "x?"], Some(4)),
        ]
    );
    assert_eq!(
        send_recv(&mut other, &["SUBSCRIBE", "a"], 1),
        vec![event(&["subscribe", "a"], Some(1))]
    );
    // PUBLISH counts receivers: channel subscribers plus matching patterns.
    assert_eq!(ok(&mut publ, &["PUBLISH", "a", "hello"]), Value::Int(2));
    assert_eq!(ok(&mut publ, &["PUBLISH", "news", "n1"]), Value::Int(1));
    assert_eq!(ok(&mut publ, &["PUBLISH", "xy", "x1"]), Value::Int(1));
    assert_eq!(
        ok(&mut publ, &["PUBLISH", "nobody", "z"]),
        Value::Int(1),
        "n* matches"
    );
    assert_eq!(ok(&mut publ, &["PUBLISH", "zzz", "z"]), Value::Int(0));
    let got: Vec<Value> = (0..4).map(|_| sub.recv_response().unwrap()).collect();
    assert_eq!(
        got,
        vec![
            event(&["message", "a", "hello"], None),
            event(&["pmessage", "n*", "news", "n1"], None),
            event(&["pmessage", "x?", "xy", "x1"], None),
            event(&["pmessage", "n*", "nobody", "z"], None),
        ]
    );
    assert_eq!(
        other.recv_response().unwrap(),
        event(&["message", "a", "hello"], None)
    );

    // Subscribed: only the pub/sub commands, PING (as an array), QUIT, RESET.
    let e = send_recv(&mut sub, &["GET", "k"], 1);
    assert!(
        matches!(&e[0], Value::ServerError(e) if e.details().unwrap_or("").contains("only (P|S)SUBSCRIBE")),
        "{e:?}"
    );
    assert_eq!(
        send_recv(&mut sub, &["PING"], 1),
        vec![event(&["pong", ""], None)]
    );
    assert_eq!(
        send_recv(&mut sub, &["PING", "hi"], 1),
        vec![event(&["pong", "hi"], None)]
    );

    // Unsubscribing names what was left; no names means all of that kind.
    assert_eq!(
        send_recv(&mut sub, &["UNSUBSCRIBE", "a", "zz"], 2),
        vec![
            event(&["unsubscribe", "a"], Some(3)),
            event(&["unsubscribe", "zz"], Some(3)),
        ]
    );
    assert_eq!(
        send_recv(&mut sub, &["UNSUBSCRIBE"], 1),
        vec![event(&["unsubscribe", "b"], Some(2))]
    );
    assert_eq!(
        ok(&mut publ, &["PUBLISH", "a", "again"]),
        Value::Int(1),
        "only `other`"
    );
    assert_eq!(
        send_recv(&mut sub, &["PUNSUBSCRIBE", "x?"], 1),
        vec![event(&["punsubscribe", "x?"], Some(1))]
    );
    assert_eq!(
        send_recv(&mut sub, &["PUNSUBSCRIBE"], 1),
        vec![event(&["punsubscribe", "n*"], Some(0))]
    );
    // Out of pub/sub mode: normal commands again.
    assert_eq!(ok(&mut sub, &["PING"]), Value::SimpleString("PONG".into()));
    ok(&mut sub, &["SET", "k", "v"]);
    // Unsubscribing with nothing subscribed still answers once, with a nil name.
    let none = send_recv(&mut sub, &["UNSUBSCRIBE"], 1);
    assert_eq!(
        none,
        vec![Value::Array(vec![bulk("unsubscribe"), Value::Nil, Value::Int(0)])]
    );
    let none = send_recv(&mut sub, &["PUNSUBSCRIBE"], 1);
    assert_eq!(
        none,
        vec![Value::Array(vec![
            bulk("punsubscribe"),
            Value::Nil,
            Value::Int(0)
        ])]
    );
    assert_eq!(ok(&mut sub, &["GET", "k"]), bulk("v"));
    // RESET leaves pub/sub mode in one step, with one reply (no confirmations).
    send_recv(&mut sub, &["SUBSCRIBE", "r1", "r2"], 2);
    send_recv(&mut sub, &["PSUBSCRIBE", "r*"], 1);
    assert_eq!(
        send_recv(&mut sub, &["RESET"], 1),
        vec![Value::SimpleString("RESET".into())]
    );
    assert_eq!(
        ok(&mut sub, &["ECHO", "next"]),
        bulk("next"),
        "nothing else queued"
    );
    assert_eq!(ok(&mut publ, &["PUBLISH", "r1", "x"]), Value::Int(0));
    assert_eq!(ok(&mut sub, &["PING"]), Value::SimpleString("PONG".into()));
    assert!(err(&mut publ, &["SUBSCRIBE"]).contains("wrong number of arguments"));
    assert!(err(&mut publ, &["PUBLISH", "a"]).contains("wrong number of arguments"));
    let s = f.server().stats();
    assert_eq!(s.subscriptions, 1, "only `other` is left subscribed: {s:?}");
    assert_eq!(s.counters.published, 7);
}

#[test]
fn client_list_and_setname() {
    let f = Fixture::start(ServerConfig::default());
    let mut a = f.conn();
    let mut b = f.conn();
    assert_eq!(ok(&mut a, &["CLIENT", "GETNAME"]), Value::Nil);
    assert_eq!(ok(&mut a, &["CLIENT", "SETNAME", "worker-1"]), okay());
    assert_eq!(ok(&mut a, &["CLIENT", "GETNAME"]), bulk("worker-1"));
    assert!(err(&mut a, &["CLIENT", "SETNAME", "bad name"]).contains("cannot contain spaces"));
    let Value::Int(id_b) = ok(&mut b, &["CLIENT", "ID"]) else {
        panic!("CLIENT ID")
    };
    let list = match ok(&mut b, &["CLIENT", "LIST"]) {
        Value::BulkString(s) => String::from_utf8(s).unwrap(),
        v => panic!("{v:?}"),
    };
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines.iter().any(|l| l.contains(" name=worker-1 ")), "{list}");
    let mine = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={id_b} ")))
        .unwrap_or_else(|| panic!("no id={id_b}: {list}"));
    assert!(
        mine.contains(" cmd=client ") && mine.contains(" addr=127.0.0.1:"),
        "{mine}"
    );
    let info = match ok(&mut a, &["CLIENT", "INFO"]) {
        Value::BulkString(s) => String::from_utf8(s).unwrap(),
        v => panic!("{v:?}"),
    };
    assert!(info.contains("name=worker-1"), "{info}");
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.server().stats().connections != 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let list = match ok(&mut a, &["CLIENT", "LIST"]) {
        Value::BulkString(s) => String::from_utf8(s).unwrap(),
        v => panic!("{v:?}"),
    };
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(err(&mut a, &["CLIENT", "KILL", "x"]).contains("unknown subcommand"));
}

#[test]
fn info_sections() {
    let f = Fixture::start(ServerConfig::default());
    let mut c = f.conn();
    ok(&mut c, &["SET", "k", "v"]);
    let info = |c: &mut Connection, args: &[&str]| -> String {
        match ok(c, args) {
            Value::BulkString(s) => String::from_utf8(s).unwrap(),
            v => panic!("{v:?}"),
        }
    };
    let all = info(&mut c, &["INFO"]);
    for h in ["# Server", "# Clients", "# Stats", "# Girder", "# Keyspace"] {
        assert!(all.contains(h), "{h} missing: {all}");
    }
    assert!(all.contains("redis_version:"));
    let port = f.server().local_addr().port();
    let server = info(&mut c, &["INFO", "server"]);
    assert!(server.contains(&format!("tcp_port:{port}")), "{server}");
    assert!(!server.contains("# Clients"));
    let clients = info(&mut c, &["INFO", "CLIENTS"]);
    assert!(clients.starts_with("# Clients") && clients.contains("connected_clients:1"));
    assert!(!clients.contains("# Server"));
    let ks = info(&mut c, &["INFO", "keyspace"]);
    assert!(ks.contains("db0:keys=1"), "{ks}");
    let stats = info(&mut c, &["INFO", "stats"]);
    assert!(stats.contains("total_commands_processed:") && stats.contains("protocol_errors:0"));
    assert!(info(&mut c, &["INFO", "girder"]).contains("processes:"));
    assert_eq!(info(&mut c, &["INFO", "nosuchsection"]), "");
}

#[test]
fn hello_select_quit() {
    let f = Fixture::start(ServerConfig::default());
    let mut c = f.conn();
    let e = err(&mut c, &["HELLO", "3"]);
    assert!(e.contains("NOPROTO"), "{e}");
    assert!(err(&mut c, &["HELLO", "x"]).contains("Protocol version is not an integer"));
    let Value::Array(h) = ok(&mut c, &["HELLO", "2", "SETNAME", "hi"]) else {
        panic!("HELLO 2")
    };
    assert_eq!(h.len(), 14);
    let proto = h.iter().position(|v| v == &bulk("proto")).unwrap();
    assert_eq!(h[proto + 1], Value::Int(2));
    assert_eq!(ok(&mut c, &["CLIENT", "GETNAME"]), bulk("hi"));
    assert!(matches!(ok(&mut c, &["HELLO"]), Value::Array(_)));

    assert_eq!(ok(&mut c, &["SELECT", "0"]), okay());
    assert!(err(&mut c, &["SELECT", "1"]).contains("DB index is out of range"));
    assert!(err(&mut c, &["SELECT"]).contains("wrong number of arguments"));
    assert!(err(&mut c, &["NOSUCH", "a"]).contains("unknown command 'NOSUCH'"));

    assert_eq!(ok(&mut c, &["QUIT"]), okay());
    assert!(cmd(&mut c, &["PING"]).is_err(), "QUIT closes the connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.server().stats().connections != 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn auth_flows() {
    // No password configured: AUTH is refused, everything else works.
    let open = Fixture::start(ServerConfig::default());
    let mut c = open.conn();
    assert!(err(&mut c, &["AUTH", "x"]).contains("without any password configured"));
    assert_eq!(ok(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
    drop(c);
    drop(open);

    let f = Fixture::start(ServerConfig {
        requirepass: Some("s3cret".into()),
        ..Default::default()
    });
    let mut c = f.conn();
    assert!(err(&mut c, &["GET", "k"]).starts_with("NOAUTH"));
    assert!(err(&mut c, &["PING"]).starts_with("NOAUTH"));
    assert!(err(&mut c, &["HELLO", "2"]).starts_with("NOAUTH"));
    assert!(err(&mut c, &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    assert!(err(&mut c, &["AUTH", "admin", "s3cret"]).starts_with("WRONGPASS"));
    assert!(err(&mut c, &["AUTH"]).contains("wrong number of arguments"));
    assert!(
        err(&mut c, &["GET", "k"]).starts_with("NOAUTH"),
        "still not authenticated"
    );
    assert_eq!(ok(&mut c, &["AUTH", "s3cret"]), okay());
    assert_eq!(ok(&mut c, &["GET", "k"]), Value::Nil);

    let mut d = f.conn();
    assert_eq!(ok(&mut d, &["AUTH", "default", "s3cret"]), okay());
    assert_eq!(ok(&mut d, &["PING"]), Value::SimpleString("PONG".into()));

    let mut h = f.conn();
    assert!(err(&mut h, &["HELLO", "2", "AUTH", "default", "nope"]).starts_with("WRONGPASS"));
    assert!(matches!(
        ok(&mut h, &["HELLO", "2", "AUTH", "default", "s3cret"]),
        Value::Array(_)
    ));
    assert_eq!(ok(&mut h, &["PING"]), Value::SimpleString("PONG".into()));

    // The client library's own AUTH from the URL.
    let addr = f.server().local_addr();
    let mut u = conn_url(&format!("redis://:s3cret@{addr}/"));
    assert_eq!(ok(&mut u, &["PING"]), Value::SimpleString("PONG".into()));
    assert!(redis::Client::open(format!("redis://:bad@{addr}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .is_err());
    // QUIT works unauthenticated.
    let mut q = f.conn();
    assert_eq!(ok(&mut q, &["QUIT"]), okay());
    // RESET deauthenticates (as in Redis).
    assert_eq!(ok(&mut d, &["RESET"]), Value::SimpleString("RESET".into()));
    assert!(err(&mut d, &["GET", "k"]).starts_with("NOAUTH"));
    assert_eq!(ok(&mut d, &["AUTH", "s3cret"]), okay());
    assert_eq!(ok(&mut d, &["GET", "k"]), Value::Nil);
    // Failures: AUTH wrong, AUTH admin, HELLO AUTH nope, the bad URL.
    assert_eq!(f.server().stats().counters.auth_failures, 4);
}
