//! The key-value commands (`GET`, `SET`, `DEL`, `EXISTS`, `INCR` and kin): each a
//! call to the key's shard through the circuit breaker.
//!
//! They touch nothing of the connection but its reply buffer, so a run of them in a
//! pipeline is sent to the shards at once and the replies awaited in order
//! ([`run_batch`]): one wake-up of the connection per batch instead of one round trip
//! per command. Commands on one key stay in order (one key, one shard, one FIFO
//! mailbox).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use girder::CallError;

use super::keyspace::{IncrError, KsMsg, SetOpts, SetOutcome};
use super::Shared;
use crate::resp;

/// Whether `cmd` (lowercase) is a key-value command [`run`] answers.
pub(crate) fn is_kv(cmd: &[u8]) -> bool {
    matches!(
        cmd,
        b"get" | b"set" | b"del" | b"unlink" | b"exists" | b"incr" | b"decr" | b"incrby" | b"decrby"
    )
}

/// Runs the key-value commands of a pipeline concurrently, replies in order.
pub(crate) async fn run_batch(shared: &Shared, reqs: &[(String, Vec<Bytes>)], out: &mut BytesMut) {
    if reqs.len() == 1 {
        return run(shared, &reqs[0].0, &reqs[0].1, out).await;
    }
    let replies = futures_util::future::join_all(reqs.iter().map(|(cmd, args)| async move {
        let mut o = BytesMut::new();
        run(shared, cmd, args, &mut o).await;
        o
    }))
    .await;
    for r in replies {
        out.extend_from_slice(&r);
    }
}

fn wrong_args(out: &mut BytesMut, cmd: &str) {
    resp::error(out, &format!("ERR wrong number of arguments for '{cmd}' command"));
}

/// Runs one key-value command, appending its reply to `out`.
pub(crate) async fn run(shared: &Shared, cmd: &str, args: &[Bytes], out: &mut BytesMut) {
    let argc = args.len();
    match cmd {
        "get" if argc == 2 => {
            let key = &args[1];
            match call(shared, out, key, |r| KsMsg::Get(key.clone(), r)).await {
                Ok(Some(v)) => resp::bulk(out, &v),
                Ok(None) => resp::null_bulk(out),
                Err(()) => {}
            }
        }
        "set" if argc >= 3 => set(shared, args, out).await,
        "del" | "unlink" | "exists" if argc >= 2 => {
            let mut n = 0;
            for key in &args[1..] {
                let r = if cmd == "exists" {
                    call(shared, out, key, |r| KsMsg::Exists(key.clone(), r)).await
                } else {
                    call(shared, out, key, |r| KsMsg::Del(key.clone(), r)).await
                };
                match r {
                    Ok(hit) => n += i64::from(hit),
                    Err(()) => return,
                }
            }
            resp::integer(out, n);
        }
        "incr" | "decr" if argc == 2 => incr(shared, &args[1], if cmd == "incr" { 1 } else { -1 }, out).await,
        "incrby" | "decrby" if argc == 3 => {
            let by = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            match by {
                Some(by) => match if cmd == "incrby" {
                    Some(by)
                } else {
                    by.checked_neg()
                } {
                    Some(by) => incr(shared, &args[1], by, out).await,
                    None => resp::error(out, "ERR increment or decrement would overflow"),
                },
                None => resp::error(out, "ERR value is not an integer or out of range"),
            }
        }
        _ => wrong_args(out, cmd),
    }
}

async fn set(shared: &Shared, args: &[Bytes], out: &mut BytesMut) {
    let mut opts = SetOpts::default();
    let mut i = 3;
    while i < args.len() {
        let o = args[i].to_ascii_lowercase();
        match &o[..] {
            b"nx" if !opts.xx => opts.nx = true,
            b"xx" if !opts.nx => opts.xx = true,
            b"get" => opts.get = true,
            b"keepttl" if opts.expire.is_none() => opts.keep_ttl = true,
            b"ex" | b"px" if opts.expire.is_none() && !opts.keep_ttl => {
                let Some(raw) = args.get(i + 1) else {
                    return resp::error(out, "ERR syntax error");
                };
                let Some(n) = std::str::from_utf8(raw).ok().and_then(|s| s.parse::<i64>().ok()) else {
                    return resp::error(out, "ERR value is not an integer or out of range");
                };
                let ms = if &o[..] == b"ex" {
                    n.checked_mul(1000)
                } else {
                    Some(n)
                };
                match ms {
                    Some(ms) if ms > 0 => opts.expire = Some(Duration::from_millis(ms as u64)),
                    _ => return resp::error(out, "ERR invalid expire time in 'set' command"),
                }
                i += 1;
            }
            _ => return resp::error(out, "ERR syntax error"),
        }
        i += 1;
    }
    let key = &args[1];
    let value = args[2].clone();
    let get = opts.get;
    let res = call(shared, out, key, |r| KsMsg::Set {
        key: key.clone(),
        value,
        opts,
        reply: r,
    })
    .await;
    match res {
        Ok(SetOutcome::Stored { old } | SetOutcome::NotStored { old }) if get => match old {
            Some(v) => resp::bulk(out, &v),
            None => resp::null_bulk(out),
        },
        Ok(SetOutcome::Stored { .. }) => out.extend_from_slice(resp::OK),
        Ok(SetOutcome::NotStored { .. }) => resp::null_bulk(out),
        Ok(SetOutcome::Oom) => oom(shared, out),
        Err(()) => {}
    }
}

fn oom(shared: &Shared, out: &mut BytesMut) {
    shared.counters.oom_refusals(1);
    resp::error(
        out,
        "OOM command not allowed when used memory > 'maxmemory' (girder: keyspace.max_keys or keyspace.max_bytes reached)",
    );
}

async fn incr(shared: &Shared, key: &Bytes, by: i64, out: &mut BytesMut) {
    match call(shared, out, key, |r| KsMsg::Incr(key.clone(), by, r)).await {
        Ok(Ok(n)) => resp::integer(out, n),
        Ok(Err(IncrError::NotInteger)) => resp::error(out, "ERR value is not an integer or out of range"),
        Ok(Err(IncrError::Overflow)) => resp::error(out, "ERR increment or decrement would overflow"),
        Ok(Err(IncrError::Oom)) => oom(shared, out),
        Err(()) => {}
    }
}

/// A call to the key's shard, through the circuit breaker. On failure the error
/// reply is written to `out` and `Err(())` returned.
async fn call<R: Send + 'static>(
    shared: &Shared,
    out: &mut BytesMut,
    key: &[u8],
    msg: impl FnOnce(girder::Reply<R>) -> KsMsg,
) -> Result<R, ()> {
    let permit = match shared.breaker.try_acquire() {
        Ok(p) => p,
        Err(open) => {
            shared.counters.breaker_rejections(1);
            resp::error(
                out,
                &format!(
                    "ERR keyspace unavailable: circuit breaker open after repeated failures; retry in {} ms",
                    open.retry_after.as_millis().max(1)
                ),
            );
            return Err(());
        }
    };
    let addr = shared.keyspace[shared.shard_of(key)].read().clone();
    let timeout = Duration::from_millis(shared.config.keyspace.timeout_ms);
    let res = match addr {
        Some(a) => a.call(msg, timeout).await,
        None => Err(CallError::Down),
    };
    match res {
        Ok(v) => {
            permit.success();
            Ok(v)
        }
        Err(e) => {
            permit.failure();
            shared.counters.keyspace_failures(1);
            let why = match e {
                CallError::Timeout => format!("no answer within {} ms", timeout.as_millis()),
                CallError::Full | CallError::NodeBudget => "overloaded".into(),
                _ => "restarting".into(),
            };
            resp::error(out, &format!("ERR keyspace unavailable: {why}"));
            Err(())
        }
    }
}
