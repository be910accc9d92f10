//! The dashboard in a real browser: headless Chromium, driven through chromedriver
//! (the W3C WebDriver protocol, plain JSON over HTTP), loads the page from a watch
//! on a node under load and checks that the gauges, the supervision tree and the
//! top-process table render and keep updating. A screenshot is kept at
//! `target/artifacts/dashboard.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; or set `CHROMIUM` and `CHROMEDRIVER` to their paths). Without
//! them the test says so loudly and passes — except under `CI=true`, where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use girder::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
use girder::{Actor, Ctx, Flow, Mailbox, Node, Overflow, SpawnOptions};
use girder_watch::{Watch, WatchConfig};
use serde_json::{json, Value};

struct Slow;
impl Actor for Slow {
    type Msg = u64;
    async fn handle(&mut self, _: u64, _: &mut Ctx<Self>) -> Flow {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Flow::Continue
    }
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
        };
        let t0 = Instant::now();
        loop {
            if let Ok(r) = d.agent.get(&format!("{}/status", d.base)).call() {
                let v: Value = r.into_json().unwrap();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match body {
            Some(b) => self.agent.request(method, &url).send_json(b),
            None => self.agent.request(method, &url).call(),
        };
        match r {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => {
                panic!("{method} {path}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
}

#[test]
fn dashboard_renders_and_updates_in_headless_chromium() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let chromium = find(
        "CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    );
    let chromedriver = find(
        "CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        let msg = "chromium and chromedriver are needed (apt-get install chromium chromium-driver, or set CHROMIUM and CHROMEDRIVER)";
        if ci {
            panic!("CI=true: {msg}");
        }
        eprintln!("\n======== SKIPPED dashboard_renders_and_updates_in_headless_chromium: {msg} ========\n");
        return;
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = rt.block_on(async { Node::builder().build().unwrap() });
    let stop = Arc::new(AtomicBool::new(false));
    let watch = rt.block_on(async {
        // A small supervised service and a flooded named mailbox.
        Supervisor::start(
            &node,
            SupervisorSpec::new(Strategy::OneForOne)
                .child(ChildSpec::worker("worker-a", || Slow))
                .child(ChildSpec::worker("worker-b", || Slow)),
        )
        .await
        .unwrap();
        let opts = SpawnOptions::new()
            .name("flooded")
            .mailbox(Mailbox::bounded(64).overflow(Overflow::DropNewest));
        let flooded = node.spawn_with(Slow, opts).unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = flooded.try_send(i);
                i += 1;
                if i % 32 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let cfg = WatchConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: Some("page-token".into()),
            collect_every_ms: 250,
            ..WatchConfig::default()
        };
        Watch::builder(node.clone())
            .config(cfg)
            .extra(Arc::new(
                || json!({"front_door": {"connections": 3, "max_connections": 1024}}),
            ))
            .start()
            .await
            .unwrap()
    });

    let driver = Driver::start(&chromedriver);
    let profile = tempdir();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1440,1100",
                     format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let session = driver.send("POST", "/session", Some(caps));
    let sid = session["sessionId"].as_str().expect("a session id").to_owned();
    let s = |p: &str| format!("/session/{sid}{p}");
    driver.send(
        "POST",
        &s("/url"),
        Some(json!({"url": format!("http://{}/?token=page-token", watch.local_addr())})),
    );

    let probe = r#"
        const rows = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')].filter(r => !r.querySelector('.empty')).length;
        const g = document.querySelector('#g-handled .value');
        return {
            updates: Number(document.body.dataset.updates || 0),
            gauges: document.querySelectorAll('#gauges .gauge').length,
            sparks: document.querySelectorAll('#gauges svg.spark polyline').length,
            tree: document.querySelectorAll('#tree li[data-pid]').length,
            top: rows('top-mailbox'),
            topText: document.querySelector('#top-mailbox tbody') ? document.querySelector('#top-mailbox tbody').innerText : '',
            extra: document.getElementById('extra').innerText,
            handled: g ? g.innerText : '',
            status: document.getElementById('status').className,
        };"#;
    let run = |d: &Driver| {
        d.send(
            "POST",
            &s("/execute/sync"),
            Some(json!({"script": probe, "args": []})),
        )
    };
    let t0 = Instant::now();
    let first = loop {
        let v = run(&driver);
        if v["updates"].as_u64() >= Some(2)
            && v["tree"].as_u64() >= Some(3)
            && v["top"].as_u64() >= Some(1)
            && v["sparks"].as_u64() >= Some(1)
        {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the page did not render: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first["gauges"], 8, "{first}");
    assert!(first["topText"].as_str().unwrap().contains("flooded"), "{first}");
    assert!(
        first["extra"]
            .as_str()
            .unwrap()
            .contains("front_door.connections"),
        "{first}"
    );
    // It keeps updating (live stream), and stays responsive.
    let later = loop {
        let v = run(&driver);
        if v["updates"].as_u64().unwrap() >= first["updates"].as_u64().unwrap() + 3 {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(25),
            "the page stopped updating: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        later["status"], "live",
        "updates come through the event stream: {later}"
    );
    std::thread::sleep(Duration::from_millis(600));
    let shot = driver.send("GET", &s("/screenshot"), None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = artifacts_dir().join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
    driver.send("DELETE", &format!("/session/{sid}"), None);
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);

    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        watch.shutdown().await;
        node.shutdown().await;
    });
}

fn tempdir() -> PathBuf {
    let p = std::env::temp_dir().join(format!("girder-watch-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}
