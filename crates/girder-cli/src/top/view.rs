//! Drawing `girder top`'s screen.

use std::time::Instant;

use girder_watch::views::SortKey;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::client::Fetched;
use super::sort_name;

/// The screen's state between refreshes.
pub struct Screen {
    addr: String,
    pub(super) sort: SortKey,
    pub(super) paused: bool,
    last: Option<Fetched>,
    error: Option<String>,
    fetched_at: Option<Instant>,
}

fn si(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if a.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn short_type(t: &str) -> String {
    let mut out = String::new();
    let mut seg = String::new();
    for ch in t.chars() {
        match ch {
            ':' => seg.clear(),
            '<' | '>' | ',' | ' ' => {
                out.push_str(&seg);
                seg.clear();
                out.push(ch);
            }
            c => seg.push(c),
        }
    }
    out.push_str(&seg);
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Null => {}
        other => out.push(format!("{prefix} {other}")),
    }
}

impl Screen {
    pub(super) fn new(addr: String, sort: SortKey) -> Self {
        Screen {
            addr,
            sort,
            paused: false,
            last: None,
            error: None,
            fetched_at: None,
        }
    }

    pub(super) fn update(&mut self, r: Result<Fetched, String>) {
        match r {
            Ok(f) => {
                self.last = Some(f);
                self.error = None;
                self.fetched_at = Some(Instant::now());
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub(super) fn draw(&self, f: &mut Frame<'_>) {
        let [head, table, foot] =
            Layout::vertical([Constraint::Length(6), Constraint::Min(3), Constraint::Length(1)])
                .areas(f.area());
        let dim = Style::default().fg(Color::DarkGray);
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let mut lines = Vec::new();
        let age = self.fetched_at.map_or("never".into(), |t| {
            format!("{:.1} s ago", t.elapsed().as_secs_f64())
        });
        lines.push(Line::from(vec![
            Span::styled("girder top ", bold),
            Span::raw(format!("— {}  updated {age}", self.addr)),
            Span::styled(
                if self.paused { "  [paused]" } else { "" },
                Style::default().fg(Color::Yellow),
            ),
        ]));
        if let Some(last) = &self.last {
            let s = &last.stats.node;
            let r = &last.stats.rates;
            lines.push(Line::from(format!(
                "processes {} / {} (peak {})   mailboxes {} / {}   queued {}   names {} / {}",
                si(s.processes as f64),
                si(s.process_limit as f64),
                si(s.processes_hwm as f64),
                bytes(s.mailbox_bytes as u64),
                bytes(s.mailbox_budget_bytes as u64),
                si(s.queued as f64),
                si(s.names as f64),
                si(s.name_limit as f64)
            )));
            lines.push(Line::from(format!(
                "handled {}/s   rejected {}/s   dropped {}/s   expired {}/s   spawn refusals {}/s   restarts {}/s",
                si(r.handled),
                si(r.rejected),
                si(r.dropped),
                si(r.expired),
                si(r.spawn_refusals),
                si(r.restarts)
            )));
            lines.push(Line::from(format!(
                "totals: rejected {}  dropped {}  expired {}  overflow kills {}  spawn refusals {}  restarts {}  escalations {}",
                si(s.rejected as f64),
                si(s.dropped as f64),
                si(s.expired as f64),
                si(s.overflow_kills as f64),
                si((s.spawn_refusals + s.subtree_budget_refusals + s.max_children_refusals) as f64),
                si(s.restarts as f64),
                si(s.escalations as f64)
            )));
            let mut extra = Vec::new();
            flatten("", &last.stats.extra, &mut extra);
            let alert_style = if last.stats.alerts_active > 0 || last.stats.handlers_over_budget > 0 {
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            lines.push(Line::from(vec![
                Span::styled(
                    format!(
                        "alerts {}   slow handlers {} (reported {})",
                        last.stats.alerts_active,
                        last.stats.handlers_over_budget,
                        last.stats.watchdog_reports
                    ),
                    alert_style,
                ),
                Span::styled(
                    if extra.is_empty() {
                        String::new()
                    } else {
                        format!("   {}", extra.join("  "))
                    },
                    dim,
                ),
            ]));
        }
        if let Some(e) = &self.error {
            lines.push(Line::from(Span::styled(
                format!("cannot fetch: {e}"),
                Style::default().fg(Color::Red),
            )));
        }
        f.render_widget(Paragraph::new(lines), head);

        let cols = [
            ("PID", Constraint::Length(14), None),
            ("NAME / TYPE", Constraint::Min(18), None),
            ("STATE", Constraint::Length(8), None),
            ("QUEUED", Constraint::Length(8), Some(SortKey::Mailbox)),
            ("CAP", Constraint::Length(6), None),
            ("BYTES", Constraint::Length(10), Some(SortKey::Bytes)),
            ("HWM", Constraint::Length(6), Some(SortKey::Hwm)),
            ("HANDLED", Constraint::Length(9), Some(SortKey::Handled)),
            ("REJECTED", Constraint::Length(9), Some(SortKey::Rejected)),
            ("DROPPED", Constraint::Length(9), Some(SortKey::Dropped)),
            ("EXPIRED", Constraint::Length(8), Some(SortKey::Expired)),
            ("POLICY", Constraint::Length(12), None),
        ];
        let header = Row::new(cols.iter().map(|(h, _, key)| {
            let style = if *key == Some(self.sort)
                || (self.sort == SortKey::Drops
                    && matches!(key, Some(SortKey::Rejected | SortKey::Dropped | SortKey::Expired)))
            {
                Style::default()
                    .fg(Color::Black)
                    .bg(Color::Cyan)
                    .add_modifier(Modifier::BOLD)
            } else {
                bold
            };
            Cell::from(*h).style(style)
        }));
        let rows: Vec<Row<'_>> = self
            .last
            .iter()
            .flat_map(|l| l.page.processes.iter())
            .map(|p| {
                let m = &p.mailbox;
                let queued = m.len + m.priority_len;
                let who = match &p.name {
                    Some(n) => format!("{n} {}", short_type(&p.actor_type)),
                    None => short_type(&p.actor_type),
                };
                let style = if m.capacity > 0 && queued * 10 >= m.capacity * 9 {
                    Style::default().fg(Color::Yellow)
                } else {
                    Style::default()
                };
                Row::new(vec![
                    p.pid.clone(),
                    who,
                    p.state.clone(),
                    si(queued as f64),
                    si(m.capacity as f64),
                    bytes(m.bytes as u64),
                    si(m.len_hwm as f64),
                    si(m.handled as f64),
                    si(m.rejected as f64),
                    si(m.dropped as f64),
                    si(m.expired as f64),
                    m.overflow.clone(),
                ])
                .style(style)
            })
            .collect();
        let total = self.last.as_ref().map_or(0, |l| l.page.total);
        let title = format!(
            " processes: {} shown of {total}, sorted by {} ",
            rows.len(),
            sort_name(self.sort)
        );
        let table_w = Table::new(rows, cols.iter().map(|(_, w, _)| *w))
            .header(header)
            .block(Block::default().borders(Borders::TOP).title(title));
        f.render_widget(table_w, table);
        f.render_widget(
            Paragraph::new(Line::from(Span::styled(
                "q quit  ←/→ sort  m mailbox  b bytes  w hwm  h handled  r rejected  d dropped  x expired  l lost  p pid  n name  space pause",
                dim,
            ))),
            foot,
        );
    }
}
