//! The HTTP endpoint: routes, the bearer token, the request and stream bounds.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::state::Shared;
use crate::views::{self, SortKey};

/// The dashboard page: one HTML file, no build step.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

type S = Arc<Shared>;

pub(crate) fn router(shared: S) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .route("/api/processes", get(processes))
        .route("/api/tree", get(tree))
        .route("/api/frame", get(frame))
        .route("/api/events", get(events))
        .route("/api/slow", get(slow))
        .route("/alerts", get(alerts))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Checks the token and bounds concurrent requests.
async fn guard(State(shared): State<S>, req: Request, next: Next) -> Response {
    if let Some(token) = &shared.cfg.token {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| same(t, token));
        let query = req.uri().query().is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("token="))
                .any(|t| same(t, token))
        });
        if !(bearer || query) {
            shared.sink.refused("unauthorized");
            let mut r = (
                StatusCode::UNAUTHORIZED,
                "girder watch: a bearer token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let Ok(_permit) = shared.requests.clone().try_acquire_owned() else {
        shared.sink.refused("max_requests");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "girder watch: too many requests at once\n",
        )
            .into_response();
    };
    next.run(req).await
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(DASHBOARD_HTML))
}

async fn metrics(State(shared): State<S>) -> impl IntoResponse {
    // A fresh reading per scrape, on the blocking pool: a node with many processes
    // takes a while to walk, and the runtime's workers stay free for the node.
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || s.tick_now()).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        shared.sink.render(),
    )
}

async fn stats(State(shared): State<S>) -> impl IntoResponse {
    Json(shared.stats())
}

async fn frame(State(shared): State<S>) -> impl IntoResponse {
    json_text(shared.frame())
}

fn json_text(s: Arc<str>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], s.to_string()).into_response()
}

/// `/api/processes` query.
#[derive(Debug, Deserialize)]
struct PageQuery {
    sort: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn processes(State(shared): State<S>, Query(q): Query<PageQuery>) -> Response {
    let sort = match q.sort.as_deref() {
        None => SortKey::Mailbox,
        Some(s) => match SortKey::ALL.iter().find(|(n, _)| *n == s) {
            Some((_, k)) => *k,
            None => {
                let known: Vec<&str> = SortKey::ALL.iter().map(|(n, _)| *n).collect();
                return (
                    StatusCode::BAD_REQUEST,
                    format!("unknown sort `{s}`; use one of: {}\n", known.join(", ")),
                )
                    .into_response();
            }
        },
    };
    let (procs, at) = shared.snapshot();
    Json(views::page(
        &procs,
        sort,
        q.offset.unwrap_or(0),
        q.limit.unwrap_or(50),
        at,
    ))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct TreeQuery {
    max: Option<usize>,
}

async fn tree(State(shared): State<S>, Query(q): Query<TreeQuery>) -> impl IntoResponse {
    let (procs, _) = shared.snapshot();
    let max = q
        .max
        .unwrap_or(shared.cfg.tree_max_nodes)
        .clamp(1, shared.cfg.tree_max_nodes);
    Json(views::tree(&procs, max))
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    resolved: Option<usize>,
}

async fn alerts(State(shared): State<S>, Query(q): Query<AlertsQuery>) -> impl IntoResponse {
    Json(shared.alerts(q.resolved.unwrap_or(shared.cfg.rules.resolved_kept)))
}

async fn slow(State(shared): State<S>) -> impl IntoResponse {
    Json(shared.slow_handlers())
}

/// The live page's stream: the current frame at once, then one per collection.
/// Bounded: at most `max_streams` at once; a slow reader skips frames rather than
/// queueing them.
async fn events(State(shared): State<S>) -> Response {
    let Ok(permit) = shared.streams.clone().try_acquire_owned() else {
        shared.sink.refused("max_streams");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "girder watch: too many live streams\n",
        )
            .into_response();
    };
    let rx = shared.frames.subscribe();
    let first = shared.frame();
    let stream =
        futures_util::stream::unfold((Some(first), rx, permit), |(first, mut rx, permit)| async move {
            if let Some(f) = first {
                return Some((
                    Ok::<Event, Infallible>(Event::default().data(&*f)),
                    (None, rx, permit),
                ));
            }
            loop {
                match rx.recv().await {
                    Ok(f) => return Some((Ok(Event::default().data(&*f)), (None, rx, permit))),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
