//! The `girder drill` command, run as a user runs it: the built binary, short attacks.

use std::process::{Command, Output};

use serde_json::Value;

/// Every drill, in the order `girder drill` runs them.
const DRILLS: [&str; 19] = [
    "mailbox-flood",
    "wide-flood",
    "call-storm",
    "priority-under-flood",
    "runaway-producer",
    "crash-loop",
    "dynamic-children",
    "task-per-item",
    "subtree-bomb",
    "chaos",
    "slow-handler",
    "conn-flood",
    "slowloris",
    "request-flood",
    "slow-subscriber",
    "publish-flood",
    "breaker",
    "dedup",
    "spawn-bomb",
];

fn girder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_girder"))
        .args(args)
        .output()
        .expect("run the girder binary")
}

fn listed() -> Vec<String> {
    let out = girder(&["drill", "--list"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn every_drill_passes_with_short_attacks_and_reports_the_contract_fields() {
    let out = girder(&["drill", "--json", "--duration-ms", "300"]);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let reports: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["drill"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, listed(), "one line per drill, in order");
    for r in &reports {
        let name = &r["drill"];
        for field in ["reason", "verdict"] {
            assert!(r[field].is_string(), "{name}: `{field}` missing");
        }
        for field in [
            "peak_rss_bytes",
            "duration_ms",
            "rss_growth_bytes",
            "legit_calls",
            "legit_errors",
            "legit_p50_us",
            "legit_p99_us",
        ] {
            assert!(r[field].is_u64(), "{name}: `{field}` missing or not a count");
        }
        assert!(r["peak_rss_bytes"].as_u64() > Some(0), "{name}: RSS not measured");
        assert!(
            r["legit_calls"].as_u64() > Some(0),
            "{name}: no legitimate traffic"
        );
        assert_eq!(r["verdict"], "pass", "{name} failed: {}", r["reason"]);
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("all ") && reason.contains("<="),
            "{name}: the reason should state the bounds: {reason}"
        );
    }
    assert!(
        out.status.success(),
        "exit status {:?} with every drill passing",
        out.status
    );
}

#[test]
fn an_unknown_drill_is_a_usage_error_naming_the_known_ones() {
    let out = girder(&["drill", "mailbox-flood", "no-such-drill"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no drill should run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown drill `no-such-drill`"), "{stderr}");
    for name in DRILLS {
        assert!(stderr.contains(name), "known drill {name} not listed: {stderr}");
    }
}

#[test]
fn list_names_every_drill() {
    let out = girder(&["drill", "--list"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, DRILLS, "every drill, spawn-bomb last");
}
