//! `girder top` through a pseudo-terminal, against a running drill: the screen it
//! draws shows the drill's processes. The pty comes from `script` (util-linux).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The text of a terminal byte stream, escape sequences removed.
fn strip_ansi(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                    // A cursor move starts a new run of text.
                    out.push(' ');
                }
                Some(']') => {
                    for d in chars.by_ref() {
                        if d == '\u{7}' {
                            break;
                        }
                    }
                }
                _ => {
                    chars.next();
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn top_shows_the_processes_of_a_running_drill() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: `script` (util-linux) is needed"
        );
        eprintln!("\n======== SKIPPED top_shows_the_processes_of_a_running_drill: `script` (util-linux) not found ========\n");
        return;
    }
    let girder = env!("CARGO_BIN_EXE_girder");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _drill = Kill(
        Command::new(girder)
            .args([
                "drill",
                "mailbox-flood",
                "--duration-ms",
                "15000",
                "--http",
                &addr,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the drill"),
    );
    // Wait for the endpoint and for the drill's node (its flooders) to be watched.
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
    let t0 = Instant::now();
    loop {
        let ready = agent
            .get(&format!("http://{addr}/api/processes?limit=1"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<serde_json::Value>().ok())
            .is_some_and(|v| v["total"].as_u64() >= Some(5));
        if ready {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the drill's watch endpoint did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let cmd = format!(
        "stty cols 150 rows 30; exec {girder} top --addr {addr} --interval-ms 300 --exit-after-ms 3000"
    );
    let mut top = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped()) // kept open: no keys, no EOF
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run girder top in a pty");
    let mut raw = Vec::new();
    top.stdout.take().unwrap().read_to_end(&mut raw).unwrap();
    let status = top.wait().unwrap();
    let mut err = String::new();
    let _ = top.stderr.take().unwrap().read_to_string(&mut err);
    let screen = strip_ansi(&raw);
    assert!(status.success(), "girder top failed: {status}\n{err}\n{screen}");
    for expected in [
        "girder top",
        "processes",
        "sorted by mailbox",
        "QUEUED",
        "Slow",
        "reject",
        "drop_newest",
        "drop_oldest",
    ] {
        assert!(
            screen.contains(expected),
            "`{expected}` not on the screen:\n{screen}"
        );
    }
}
