//! The commands: what each does, its arity, and its replies, as Redis answers them.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use girder::{CallError, Ctx};
use subtle::ConstantTimeEq;

use super::conn::Conn;
use super::info;
use super::keyspace::KsMsg;
use super::kv;
use super::pubsub::PsMsg;
use crate::resp;

/// After a command: go on, or close the connection once the replies are written.
pub(crate) enum Step {
    Continue,
    Close,
}

const NOAUTH: &str = "NOAUTH Authentication required.";

/// Lowercase ASCII command name, for matching (names longer than 32 bytes are no
/// command we know).
fn lower(name: &[u8]) -> Option<String> {
    (name.len() <= 32).then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

fn wrong_args(conn: &mut Conn, cmd: &str) {
    resp::error(
        &mut conn.out,
        &format!("ERR wrong number of arguments for '{cmd}' command"),
    );
}

/// Counts a command and notes it for `CLIENT LIST`.
pub(crate) fn note(conn: &Conn, cmd: &str) {
    conn.shared.counters.commands(1);
    let st = &conn.state;
    st.commands.fetch_add(1, Relaxed);
    st.last_command_ms
        .store(st.created.elapsed().as_millis() as u64, Relaxed);
    *st.last_command.lock() = static_name(cmd);
}

/// Runs one command, appending its reply to `conn.out`.
pub(crate) async fn run(conn: &mut Conn, ctx: &mut Ctx<Conn>, args: Vec<Bytes>) -> Step {
    let shared = conn.shared.clone();
    let Some(cmd) = lower(&args[0]) else {
        note(conn, "unknown");
        unknown(conn, &args);
        return Step::Continue;
    };
    note(conn, &cmd);
    let argc = args.len();
    if !conn.authed && !matches!(cmd.as_str(), "auth" | "hello" | "quit") {
        resp::error(&mut conn.out, NOAUTH);
        return Step::Continue;
    }
    let subscribed = conn.state.subs.load(Relaxed) > 0;
    if subscribed
        && !matches!(
            cmd.as_str(),
            "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
        )
    {
        resp::error(
            &mut conn.out,
            &format!("ERR Can't execute '{cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
        );
        return Step::Continue;
    }
    match cmd.as_str() {
        "ping" => match argc {
            1 if subscribed => resp_pong_array(conn, b""),
            1 => conn.out.extend_from_slice(resp::PONG),
            2 if subscribed => resp_pong_array(conn, &args[1]),
            2 => resp::bulk(&mut conn.out, &args[1]),
            _ => wrong_args(conn, "ping"),
        },
        "echo" if argc == 2 => resp::bulk(&mut conn.out, &args[1]),
        "quit" => {
            conn.out.extend_from_slice(resp::OK);
            return Step::Close;
        }
        "auth" => auth(conn, &args),
        "hello" => hello(conn, &args),
        "select" if argc == 2 => {
            if &args[1][..] == b"0" {
                conn.out.extend_from_slice(resp::OK);
            } else {
                resp::error(&mut conn.out, "ERR DB index is out of range");
            }
        }
        "reset" => {
            // As Redis: leaves pub/sub mode without confirmations (the one reply is
            // `+RESET`) and deauthenticates the connection.
            if subscribed {
                let _ = conn.flush().await;
                unsubscribe(conn, Vec::new(), false, true).await;
                unsubscribe(conn, Vec::new(), true, true).await;
            }
            conn.authed = conn.shared.config.requirepass.is_none();
            resp::simple(&mut conn.out, "RESET");
        }
        "command" => command(conn, &args),
        "config" => config(conn, &args),
        "info" => {
            let text = info::render(
                &shared,
                args.get(1)
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()),
            );
            resp::bulk(&mut conn.out, text.as_bytes());
        }
        "client" => client(conn, &args),
        "dbsize" if argc == 1 => {
            resp::integer(&mut conn.out, shared.levels.keys.load(Relaxed) as i64);
        }
        "debug" => debug(conn, &args),
        "get" | "set" | "del" | "unlink" | "exists" | "incr" | "decr" | "incrby" | "decrby" => {
            let shared = conn.shared.clone();
            kv::run(&shared, &cmd, &args, &mut conn.out).await;
        }
        "publish" if argc == 3 => {
            let (channel, payload) = (args[1].clone(), args[2].clone());
            if let Ok(n) = ps_call(conn, |r| PsMsg::Publish {
                channel,
                payload,
                reply: r,
            })
            .await
            {
                resp::integer(&mut conn.out, n as i64);
            }
        }
        "girder.publishonce" if argc == 4 => {
            let max = shared.config.dedup.max_id_len;
            if args[2].len() > max {
                resp::error(
                    &mut conn.out,
                    &format!("ERR message id longer than {max} bytes; raise dedup.max_id_len"),
                );
            } else {
                let (channel, id, payload) = (args[1].clone(), args[2].clone(), args[3].clone());
                match ps_call(conn, |r| PsMsg::PublishOnce {
                    channel,
                    id,
                    payload,
                    reply: r,
                })
                .await
                {
                    Ok(Some(n)) => resp::integer(&mut conn.out, n as i64),
                    Ok(None) => resp::null_bulk(&mut conn.out),
                    Err(()) => {}
                }
            }
        }
        "subscribe" | "psubscribe" if argc >= 2 => {
            let pattern = cmd == "psubscribe";
            if conn.flush().await.is_err() {
                return Step::Close;
            }
            subscribe(conn, ctx, args[1..].to_vec(), pattern).await;
        }
        "unsubscribe" | "punsubscribe" => {
            if conn.flush().await.is_err() {
                return Step::Close;
            }
            unsubscribe(conn, args[1..].to_vec(), cmd == "punsubscribe", false).await;
        }
        "echo" | "select" | "dbsize" | "publish" | "girder.publishonce" | "subscribe" | "psubscribe" => {
            wrong_args(conn, &cmd)
        }
        _ => unknown(conn, &args),
    }
    Step::Continue
}

/// A `'static` name for `CLIENT LIST`'s `cmd=` (known commands only).
fn static_name(cmd: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ping",
        "echo",
        "quit",
        "auth",
        "hello",
        "select",
        "reset",
        "command",
        "config",
        "info",
        "client",
        "dbsize",
        "debug",
        "get",
        "set",
        "del",
        "unlink",
        "exists",
        "incr",
        "decr",
        "incrby",
        "decrby",
        "publish",
        "girder.publishonce",
        "subscribe",
        "psubscribe",
        "unsubscribe",
        "punsubscribe",
    ];
    KNOWN.iter().find(|k| **k == cmd).copied().unwrap_or("unknown")
}

fn unknown(conn: &mut Conn, args: &[Bytes]) {
    let a0 = &args[0];
    let name = String::from_utf8_lossy(&a0[..a0.len().min(64)]);
    let mut msg = format!("ERR unknown command '{name}', with args beginning with: ");
    for a in args.iter().skip(1).take(8) {
        msg.push_str(&format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(64)])));
    }
    resp::error(&mut conn.out, &msg);
}

fn resp_pong_array(conn: &mut Conn, msg: &[u8]) {
    resp::array_len(&mut conn.out, 2);
    resp::bulk(&mut conn.out, b"pong");
    resp::bulk(&mut conn.out, msg);
}

/// Constant-time password check (the length is not hidden).
fn password_ok(conn: &Conn, given: &[u8]) -> Option<bool> {
    let want = conn.shared.config.requirepass.as_deref()?;
    Some(want.as_bytes().ct_eq(given).into())
}

fn auth(conn: &mut Conn, args: &[Bytes]) {
    let pass = match args.len() {
        2 => &args[1],
        3 if &args[1][..] == b"default" => &args[2],
        3 => {
            conn.shared.counters.auth_failures(1);
            resp::error(
                &mut conn.out,
                "WRONGPASS invalid username-password pair or user is disabled.",
            );
            return;
        }
        _ => return wrong_args(conn, "auth"),
    };
    match password_ok(conn, pass) {
        None => resp::error(
            &mut conn.out,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
        Some(true) => {
            conn.authed = true;
            conn.out.extend_from_slice(resp::OK);
        }
        Some(false) => {
            conn.shared.counters.auth_failures(1);
            resp::error(&mut conn.out, "WRONGPASS invalid username-password pair or user is disabled.");
        }
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: RESP2 only.
fn hello(conn: &mut Conn, args: &[Bytes]) {
    if let Some(v) = args.get(1) {
        match std::str::from_utf8(v).ok().and_then(|s| s.parse::<u32>().ok()) {
            Some(2) => {}
            Some(_) => {
                return resp::error(
                    &mut conn.out,
                    "NOPROTO sorry, this protocol version is not supported",
                )
            }
            None => {
                return resp::error(
                    &mut conn.out,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
    }
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        if opt == b"auth" && i + 2 < args.len() {
            let (user, pass) = (&args[i + 1], &args[i + 2]);
            let ok = &user[..] == b"default" && password_ok(conn, pass).unwrap_or(false);
            if !ok {
                conn.shared.counters.auth_failures(1);
                return resp::error(
                    &mut conn.out,
                    "WRONGPASS invalid username-password pair or user is disabled.",
                );
            }
            conn.authed = true;
            i += 3;
        } else if opt == b"setname" && i + 1 < args.len() {
            *conn.state.name.lock() = Some(Bytes::copy_from_slice(&args[i + 1]));
            i += 2;
        } else {
            return resp::error(&mut conn.out, "ERR Syntax error in HELLO option");
        }
    }
    if !conn.authed {
        return resp::error(&mut conn.out, NOAUTH);
    }
    let out = &mut conn.out;
    resp::array_len(out, 14);
    for (k, v) in [("server", "redis"), ("version", info::REDIS_VERSION)] {
        resp::bulk(out, k.as_bytes());
        resp::bulk(out, v.as_bytes());
    }
    resp::bulk(out, b"proto");
    resp::integer(out, 2);
    resp::bulk(out, b"id");
    resp::integer(out, conn.state.id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        resp::bulk(out, k.as_bytes());
        resp::bulk(out, v.as_bytes());
    }
    resp::bulk(out, b"modules");
    resp::array_len(out, 0);
}

/// `COMMAND`: enough for clients that ask (`COUNT`, `DOCS`, `INFO`): no command
/// documents are served, which clients treat as "no hints".
fn command(conn: &mut Conn, args: &[Bytes]) {
    if args.len() == 1 {
        return resp::array_len(&mut conn.out, 0);
    }
    let sub = args[1].to_ascii_lowercase();
    match &sub[..] {
        b"count" => resp::integer(&mut conn.out, 0),
        b"docs" | b"info" | b"list" => resp::array_len(&mut conn.out, 0),
        _ => resp::error(
            &mut conn.out,
            &format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(&sub)
            ),
        ),
    }
}

/// `CONFIG GET`: answers what `redis-benchmark` asks at start (`save`,
/// `appendonly`) and the limits girder has; `CONFIG SET` is refused.
fn config(conn: &mut Conn, args: &[Bytes]) {
    let sub = args.get(1).map(|a| a.to_ascii_lowercase());
    if sub.as_deref() != Some(b"get") || args.len() < 3 {
        return resp::error(
            &mut conn.out,
            "ERR CONFIG is read-only here: only CONFIG GET <parameter> is supported",
        );
    }
    let c = &conn.shared.config;
    let known: Vec<(&str, String)> = vec![
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("maxclients", c.max_connections.to_string()),
        ("timeout", (c.idle_timeout_ms / 1000).to_string()),
        ("proto-max-bulk-len", c.limits.max_bulk_len.to_string()),
        (
            "client-query-buffer-limit",
            c.limits.max_request_bytes.to_string(),
        ),
        (
            "client-output-buffer-limit",
            format!(
                "normal 0 0 0 pubsub {} {} {}",
                c.output.pubsub_hard_limit_bytes,
                c.output.pubsub_soft_limit_bytes,
                c.output.pubsub_soft_limit_ms / 1000
            ),
        ),
    ];
    let mut hits = Vec::new();
    for pat in &args[2..] {
        for (k, v) in &known {
            if super::glob::matches(&pat.to_ascii_lowercase(), k.as_bytes())
                && !hits.iter().any(|(h, _)| h == k)
            {
                hits.push((*k, v.clone()));
            }
        }
    }
    resp::array_len(&mut conn.out, hits.len() * 2);
    for (k, v) in hits {
        resp::bulk(&mut conn.out, k.as_bytes());
        resp::bulk(&mut conn.out, v.as_bytes());
    }
}

fn client(conn: &mut Conn, args: &[Bytes]) {
    let sub = args.get(1).map(|a| a.to_ascii_lowercase()).unwrap_or_default();
    match (&sub[..], args.len()) {
        (b"list", 2) => {
            let text = info::client_list(&conn.shared);
            resp::bulk(&mut conn.out, text.as_bytes());
        }
        (b"info", 2) => {
            let text = info::client_line(&conn.state);
            resp::bulk(&mut conn.out, text.as_bytes());
        }
        (b"id", 2) => resp::integer(&mut conn.out, conn.state.id as i64),
        (b"getname", 2) => match conn.state.name.lock().clone() {
            Some(n) => resp::bulk(&mut conn.out, &n),
            None => resp::null_bulk(&mut conn.out),
        },
        (b"setname", 3) => {
            if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
                resp::error(&mut conn.out, "ERR Client names cannot contain spaces, newlines or special characters.");
            } else {
                *conn.state.name.lock() = Some(Bytes::copy_from_slice(&args[2][..args[2].len().min(128)]));
                conn.out.extend_from_slice(resp::OK);
            }
        }
        (b"setinfo", 4) => conn.out.extend_from_slice(resp::OK),
        _ => resp::error(
            &mut conn.out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Supported: LIST, INFO, ID, GETNAME, SETNAME",
                String::from_utf8_lossy(&sub)
            ),
        ),
    }
}

fn debug(conn: &mut Conn, args: &[Bytes]) {
    if !conn.shared.config.enable_debug_command {
        return resp::error(
            &mut conn.out,
            "ERR DEBUG command not allowed. Set enable_debug_command = true in the configuration to use it.",
        );
    }
    let sub = args.get(1).map(|a| a.to_ascii_lowercase()).unwrap_or_default();
    match (
        &sub[..],
        args.get(2)
            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<f64>().ok()),
    ) {
        (b"sleep", Some(secs)) if (0.0..=3600.0).contains(&secs) => {
            // The keyspace shards sleep (a downstream gone slow); this connection
            // answers at once.
            let d = Duration::from_secs_f64(secs);
            for slot in conn.shared.keyspace.iter() {
                if let Some(a) = slot.read().clone() {
                    let _ = a.try_send(KsMsg::Sleep(d));
                }
            }
            conn.out.extend_from_slice(resp::OK);
        }
        _ => resp::error(&mut conn.out, "ERR DEBUG supports only SLEEP <seconds> here"),
    }
}

/// A call to the pub/sub registry. On failure the error reply is written.
async fn ps_call<R: Send + 'static>(
    conn: &mut Conn,
    msg: impl FnOnce(girder::Reply<R>) -> PsMsg,
) -> Result<R, ()> {
    let addr = conn.shared.pubsub.read().clone();
    let timeout = Duration::from_millis(conn.shared.config.keyspace.timeout_ms);
    let res = match addr {
        Some(a) => a.call(msg, timeout).await,
        None => Err(CallError::Down),
    };
    res.map_err(|e| {
        resp::error(&mut conn.out, &format!("ERR pub/sub unavailable: {e}"));
    })
}

async fn subscribe(conn: &mut Conn, ctx: &mut Ctx<Conn>, names: Vec<Bytes>, pattern: bool) {
    let Some(addr) = conn.shared.pubsub.read().clone() else {
        return resp::error(&mut conn.out, "ERR pub/sub unavailable: restarting");
    };
    if conn.registry.as_ref().is_none_or(|(pid, _)| *pid != addr.pid()) {
        if let Ok(m) = ctx.monitor(addr.pid()) {
            conn.registry = Some((addr.pid(), m));
        }
    }
    let state = conn.state.clone();
    let timeout = Duration::from_millis(conn.shared.config.keyspace.timeout_ms);
    match addr
        .call(
            |r| PsMsg::Subscribe {
                conn: state,
                names,
                pattern,
                reply: r,
            },
            timeout,
        )
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => resp::error(&mut conn.out, &e.message()),
        Err(e) => resp::error(&mut conn.out, &format!("ERR pub/sub unavailable: {e}")),
    }
}

/// Confirmations are queued by the registry (or, when it is unreachable, here);
/// `quiet` (for `RESET`) sends none and no error.
async fn unsubscribe(conn: &mut Conn, names: Vec<Bytes>, pattern: bool, quiet: bool) {
    let Some(addr) = conn.shared.pubsub.read().clone() else {
        if !quiet {
            resp::error(&mut conn.out, "ERR pub/sub unavailable: restarting");
        }
        return;
    };
    let state = conn.state.clone();
    let timeout = Duration::from_millis(conn.shared.config.keyspace.timeout_ms);
    if let Err(e) = addr
        .call(
            |r| PsMsg::Unsubscribe {
                conn: state,
                names,
                pattern,
                notify: !quiet,
                reply: r,
            },
            timeout,
        )
        .await
    {
        if !quiet {
            resp::error(&mut conn.out, &format!("ERR pub/sub unavailable: {e}"));
        }
    }
}
