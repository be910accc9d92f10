//! `INFO` and `CLIENT LIST` text.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::conn::ConnState;
use super::Shared;

/// The Redis version girder answers as: clients check it for features (girder speaks
/// RESP2 and the commands listed in the README).
pub(crate) const REDIS_VERSION: &str = "7.0.0";

/// `INFO [section]`: server, clients, stats, keyspace and girder's own node stats.
pub(crate) fn render(shared: &Shared, section: Option<String>) -> String {
    let want = |name: &str| match section.as_deref() {
        None | Some("all") | Some("everything") | Some("default") => true,
        Some(s) => s == name,
    };
    let s = shared.stats();
    let c = &s.counters;
    let mut out = String::with_capacity(2048);
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\ngirder_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            shared.local_addr.port(),
            s.uptime_s,
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nmax_connections_per_peer:{}\r\npubsub_clients_subscriptions:{}\r\n\r\n",
            s.connections, s.max_connections, shared.config.max_connections_per_peer, s.subscriptions,
        );
    }
    if want("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n\
             rejected_max_clients:{}\r\nrejected_per_peer:{}\r\nrejected_banned:{}\r\nrejected_spawn:{}\r\n\
             timeouts_handshake:{}\r\ntimeouts_request:{}\r\ntimeouts_idle:{}\r\nprotocol_errors:{}\r\n\
             rate_limited:{}\r\nbans:{}\r\nbans_active:{}\r\nbanned_closes:{}\r\n\
             output_bytes:{}\r\noutput_bytes_peak:{}\r\noutput_budget_bytes:{}\r\n\
             output_hard_disconnects:{}\r\noutput_soft_disconnects:{}\r\noutput_budget_disconnects:{}\r\noutput_budget_drops:{}\r\n\
             pubsub_channels:{}\r\npubsub_patterns:{}\r\npublished:{}\r\ndelivered:{}\r\n\
             dedup_ids:{}\r\ndedup_duplicates:{}\r\nauth_failures:{}\r\n\
             breaker_state:{}\r\nbreaker_opened:{}\r\nbreaker_rejections:{}\r\nkeyspace_failures:{}\r\noom_refusals:{}\r\n\r\n",
            c.accepted,
            c.commands,
            c.refused_max_clients + c.refused_per_peer + c.refused_banned + c.refused_spawn,
            c.refused_max_clients,
            c.refused_per_peer,
            c.refused_banned,
            c.refused_spawn,
            c.timeouts_handshake,
            c.timeouts_request,
            c.timeouts_idle,
            c.protocol_errors,
            c.rate_limited,
            s.bans,
            s.bans_active,
            c.banned_closes,
            s.output_bytes,
            s.output_bytes_peak,
            s.output_budget_bytes,
            c.output_hard_disconnects,
            c.output_soft_disconnects,
            c.output_budget_disconnects,
            c.output_budget_drops,
            s.channels,
            s.patterns,
            c.published,
            c.delivered,
            s.dedup_ids,
            c.dedup_duplicates,
            c.auth_failures,
            s.breaker_state,
            s.breaker_opened,
            c.breaker_rejections,
            c.keyspace_failures,
            c.oom_refusals,
        );
    }
    if want("girder") {
        let n = shared.node.stats();
        let _ = write!(
            out,
            "# Girder\r\nprocesses:{}\r\nmax_processes:{}\r\nspawned:{}\r\nspawn_refusals:{}\r\n\
             mailbox_bytes:{}\r\nmailbox_budget_bytes:{}\r\nmessages_rejected:{}\r\nmessages_dropped:{}\r\n\
             messages_expired:{}\r\nrestarts:{}\r\n\r\n",
            n.processes,
            n.process_limit,
            n.spawned,
            n.spawn_refusals,
            n.mailbox_bytes,
            n.mailbox_budget_bytes,
            n.rejected,
            n.dropped,
            n.expired,
            n.restarts,
        );
    }
    if want("keyspace") {
        let _ = write!(out, "# Keyspace\r\n");
        if s.keys > 0 {
            let _ = write!(out, "db0:keys={},expires=0,avg_ttl=0\r\n", s.keys);
        }
    }
    out
}

/// One `CLIENT LIST` line.
pub(crate) fn client_line(c: &ConnState) -> String {
    let age = c.created.elapsed();
    let idle = age.as_millis() as u64 - c.last_command_ms.load(Relaxed).min(age.as_millis() as u64);
    let name = c
        .name
        .lock()
        .clone()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .unwrap_or_default();
    format!(
        "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db=0 sub={} psub=0 multi=-1 qbuf={} obl=0 oll={} omem={} tot-net-out={} cmd={} girder-pid={}\n",
        c.id,
        c.peer,
        c.local,
        name,
        age.as_secs(),
        idle / 1000,
        if c.subs.load(Relaxed) > 0 { "P" } else { "N" },
        c.subs.load(Relaxed),
        c.qbuf.load(Relaxed),
        c.output.frames(),
        c.output.bytes(),
        c.output.written(),
        c.last_command.lock(),
        c.pid.get().map(|p| p.to_string()).unwrap_or_default(),
    )
}

/// `CLIENT LIST`.
pub(crate) fn client_list(shared: &Shared) -> String {
    let conns = shared.conn_states();
    let mut out = String::with_capacity(conns.len() * 200);
    for c in conns {
        out.push_str(&client_line(&c));
    }
    out
}
