//! Helpers shared by the watch's integration tests.
#![allow(dead_code)]

use std::time::Duration;

/// GETs `url` (with `token` as a bearer token, if any): status and body.
pub fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// GETs `url` on a blocking thread (tests run on a tokio runtime).
pub async fn get_async(url: String, token: Option<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(&url, token.as_deref()))
        .await
        .unwrap()
}

/// The value of the sample `series` (name and labels exactly as rendered) in a
/// Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
