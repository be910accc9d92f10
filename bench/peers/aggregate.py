#!/usr/bin/env python3
"""Aggregates the JSON lines of bench/peers/run.sh into markdown tables.

    python3 aggregate.py results/RUN.jsonl [results/OTHER_RUN.jsonl ...]

Several files are pooled (medians over all their runs).

Medians per system x workload; then girder's advantage over each peer per workload
(higher-is-better workloads: girder / peer; lower-is-better: peer / girder; so > 1
always means girder did better); then the flood detail.
"""
import json
import statistics
import sys
from collections import defaultdict

SYSTEMS = ["girder", "tokio", "actix", "ractor", "kameo", "beam"]
WORKLOADS = [
    # name, label, higher is better
    ("tell_1to1", "tell 1→1", True),
    ("tell_2to1", "tell 2→1", True),
    ("request_reply", "request-reply", True),
    ("ping_pong", "ping-pong round trip", False),
    ("spawn", "spawn (idle actors, until all started)", True),
    ("idle_rss", "RSS per idle actor", False),
    ("flood", "flood a slow actor: RSS growth", False),
]
# girder's flood bound: the default mailbox's byte bound (4 MiB) caps what one
# flooded process can hold; the node-wide budget (1 GiB) caps all of them together.
GIRDER_MAILBOX_BOUND_MIB = 4


def fmt(v, unit):
    if v is None:
        return "—"
    if unit.startswith("M "):
        return f"{v:.2f} M/s" if v >= 0.1 else f"{v * 1000:.0f} k/s"
    if unit.startswith("ns"):
        return f"{v:,.0f} ns" if v < 10000 else f"{v / 1000:,.1f} µs"
    if unit.startswith("B/"):
        return f"{v:,.0f} B"
    if unit.startswith("MiB"):
        return f"{v:,.1f} MiB" if v < 1024 else f"{v / 1024:,.2f} GiB"
    return f"{v:g} {unit}"


def main(paths):
    rows = defaultdict(list)  # (system, workload) -> [record]
    lines = [line for path in paths for line in open(path)]
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[(r["system"], r["workload"])].append(r)
    systems = [s for s in SYSTEMS if any(k[0] == s for k in rows)]
    peers = [s for s in systems if s != "girder"]

    med, unit, count, ns = {}, {}, {}, {}
    for (s, w), rs in rows.items():
        med[(s, w)] = statistics.median(r["value"] for r in rs)
        unit[w] = rs[0]["unit"]
        count[(s, w)] = len(rs)
        ns[(s, w)] = sorted({r["n"] for r in rs if w != "flood"})

    out = []
    out.append("| workload | " + " | ".join(systems) + " |")
    out.append("|---|" + "---:|" * len(systems))
    for w, label, _ in WORKLOADS:
        if not any((s, w) in med for s in systems):
            continue
        cells = [fmt(med.get((s, w)), unit.get(w, "")) for s in systems]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Spread across runs, (max − min) ÷ median (a noisy machine shows here first):")
    out.append("")
    out.append("| workload | " + " | ".join(systems) + " |")
    out.append("|---|" + "---:|" * len(systems))
    for w, label, _ in WORKLOADS:
        if w == "flood" or not any((s, w) in med for s in systems):
            continue
        cells = []
        for s in systems:
            vs = [r["value"] for r in rows.get((s, w), [])]
            cells.append(f"{(max(vs) - min(vs)) / med[(s, w)] * 100:.0f}%" if len(vs) > 1 and med[(s, w)] else "—")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("girder's advantage over each peer (median ÷ median, oriented so that > 1× means girder did better):")
    out.append("")
    out.append("| workload | " + " | ".join(f"vs {p}" for p in peers) + " |")
    out.append("|---|" + "---:|" * len(peers))
    for w, label, higher in WORKLOADS:
        g = med.get(("girder", w))
        if g is None:
            continue
        cells = []
        for p in peers:
            v = med.get((p, w))
            if v is None or v == 0 or g == 0:
                cells.append("—")
            elif w == "flood":
                cells.append("bounded too" if v < 16 else f"peer +{fmt(v, unit[w])}")
            else:
                cells.append(f"{(g / v if higher else v / g):.2f}×")
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    # Flood detail: accepted messages and whether the run hit the RSS cap.
    flood = [(s, rows[(s, "flood")]) for s in systems if (s, "flood") in rows]
    if flood:
        out.append("")
        out.append("Flood detail (medians): messages the default non-blocking send accepted, and RSS growth.")
        out.append("")
        out.append("| system | accepted | refused | RSS growth | runs capped at 3 GiB |")
        out.append("|---|---:|---:|---:|---:|")
        for s, rs in flood:
            acc = statistics.median(r.get("accepted", 0) for r in rs)
            ref = statistics.median(r.get("refused", 0) for r in rs)
            gr = statistics.median(r["value"] for r in rs)
            capped = sum(1 for r in rs if r.get("capped"))
            out.append(f"| {s} | {acc:,.0f} | {ref:,.0f} | {fmt(gr, 'MiB')} | {capped}/{len(rs)} |")
        g = med.get(("girder", "flood"))
        if g is not None:
            ok = "within" if g <= GIRDER_MAILBOX_BOUND_MIB else "OVER"
            out.append("")
            out.append(f"girder's flood growth {g:.2f} MiB: {ok} its configured mailbox bound "
                       f"({GIRDER_MAILBOX_BOUND_MIB} MiB, default `max_bytes`; 1,024 messages).")

    out.append("")
    runs = sorted({c for c in count.values()})
    secs = sorted({round(r.get("secs", 0)) for s in systems for r in rows.get((s, "flood"), [])})
    notes = []
    for w, _, _ in WORKLOADS:
        if w == "flood":
            if secs:
                notes.append(f"flood {'/'.join(map(str, secs))} s")
            continue
        per = {s: ns[(s, w)] for s in systems if (s, w) in ns and ns[(s, w)]}
        if not per:
            continue
        common = statistics.mode(tuple(v) for v in per.values())
        txt = f"{w} {','.join(f'{x:,}' for x in common)}"
        odd = [f"{s} {','.join(f'{x:,}' for x in v)}" for s, v in per.items() if tuple(v) != common]
        if odd:
            txt += " (" + "; ".join(odd) + ")"
        notes.append(txt)
    out.append(f"Runs per cell: {', '.join(map(str, runs))}. Counts: " + "; ".join(notes) + ".")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: aggregate.py RESULTS.jsonl [MORE.jsonl ...]")
    main(sys.argv[1:])
