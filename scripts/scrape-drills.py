#!/usr/bin/env python3
"""Runs each drill with `girder drill NAME --http ADDR --json` and scrapes /metrics
while it runs; prints, per drill, its verdict and what the last scrape during the drill
showed (the main counters, non-zero ones only).

    cargo build --release -p girder-cli
    python3 scripts/scrape-drills.py [--bin target/release/girder] [--duration-ms 5000] [NAME...]
"""
import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request

KEEP = re.compile(
    r"^(girder_(processes|spawned_total|spawn_refusals_total|max_children_refusals_total|overflow_kills_total"
    r"|messages_total|budget_refusals_total|restarts_total|escalations_total|watchdog_reports_total"
    r"|alerts_fired_total|exits_total)"
    r"|girder_net_\w+_total|girder_net_(connections|output_bytes|subscriptions|dedup_ids|bans_active|breaker_state))"
)


def scrape(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


def parse(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if KEEP.match(name):
            try:
                v = float(value)
            except ValueError:
                continue
            if v:
                out[name] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/girder")
    ap.add_argument("--addr", default="127.0.0.1:7979")
    ap.add_argument("--duration-ms", default="5000")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    names = a.names or [
        l.split()[0] for l in subprocess.run([a.bin, "drill", "--list"], capture_output=True, text=True).stdout.splitlines()
    ]
    for name in names:
        p = subprocess.Popen(
            [a.bin, "drill", name, "--json", "--duration-ms", a.duration_ms, "--http", a.addr],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        last, scrapes = None, 0
        while p.poll() is None:
            t = scrape(a.addr)
            if t:
                last, scrapes = t, scrapes + 1
            time.sleep(0.3)
        out = p.stdout.read().strip().splitlines()
        report = json.loads(out[-1]) if out else {}
        print(f"## {name}: {report.get('verdict', '?')} ({scrapes} scrapes)")
        for k, v in sorted(parse(last or "").items()):
            print(f"    {k} = {v:,.0f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
