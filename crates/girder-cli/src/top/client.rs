//! Fetching what `girder top` shows from a watch's HTTP API.

use std::time::Duration;

use girder_watch::views::{ProcessPage, SortKey};
use girder_watch::StatsResponse;

/// What one refresh fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `/api/stats`.
    pub stats: StatsResponse,
    /// `/api/processes`.
    pub page: ProcessPage,
}

/// A small blocking client of the watch API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the endpoint at `addr` (`HOST:PORT` or an `http://` URL).
    pub fn new(addr: &str, token: Option<String>) -> Self {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        };
        Client {
            base,
            token,
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build(),
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => r.into_json::<T>().map_err(|e| format!("{path}: bad answer: {e}")),
            Err(ureq::Error::Status(401, _)) => {
                Err("401 unauthorized: pass the watch's token with --token".into())
            }
            Err(ureq::Error::Status(code, r)) => Err(format!(
                "{path}: HTTP {code} {}",
                r.into_string().unwrap_or_default().trim()
            )),
            Err(e) => Err(format!("{}: {e}", self.base)),
        }
    }

    /// Fetches the stats and the first `rows` processes by `sort`.
    ///
    /// # Errors
    ///
    /// The endpoint could not be reached or answered with an error.
    pub fn fetch(&self, sort: SortKey, rows: usize) -> Result<Fetched, String> {
        let stats = self.get::<StatsResponse>("/api/stats")?;
        let page = self.get::<ProcessPage>(&format!(
            "/api/processes?sort={}&limit={}",
            super::sort_name(sort),
            rows.clamp(1, girder_watch::views::MAX_PAGE)
        ))?;
        Ok(Fetched { stats, page })
    }
}
