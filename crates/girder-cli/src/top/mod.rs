//! `girder top`: a refreshing, sortable terminal view of a watched node — the
//! etop / observer_cli model — fed by a girder watch's HTTP API (`/api/stats` and
//! `/api/processes`), so it works against `girder serve` and `girder drill --http`
//! alike.
//!
//! ```text
//! girder top --addr 127.0.0.1:7979 [--token T] [--sort mailbox] [--interval-ms 1000]
//! ```
//!
//! Keys: `q`/Esc quit; `←`/`→` (or `<`/`>`) change the sort key; `m` mailbox, `b`
//! bytes, `h` handled, `r` rejected, `d` dropped, `x` expired, `l` lost (drops), `p`
//! pid, `n` name; space pauses.

mod client;
mod view;

use std::time::{Duration, Instant};

use girder_watch::views::SortKey;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

pub use client::Client;
use view::Screen;

/// `girder top`'s options.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// `HOST:PORT` of the watch endpoint (or a full `http://` URL).
    pub addr: String,
    /// Bearer token.
    pub token: Option<String>,
    /// Initial sort key.
    pub sort: SortKey,
    /// Refresh period.
    pub interval: Duration,
    /// Quit by itself after this long (for scripts and tests).
    pub exit_after: Option<Duration>,
}

/// The name `--sort` takes for `key`.
pub fn sort_name(key: SortKey) -> &'static str {
    SortKey::ALL
        .iter()
        .find(|(_, k)| *k == key)
        .map_or("mailbox", |(n, _)| n)
}

/// Parses a `--sort` value.
///
/// # Errors
///
/// The unknown name, with the known ones.
pub fn parse_sort(s: &str) -> Result<SortKey, String> {
    SortKey::ALL
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            let known: Vec<&str> = SortKey::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown sort key `{s}`; use one of: {}", known.join(", "))
        })
}

fn key_for(c: char) -> Option<SortKey> {
    Some(match c {
        'm' => SortKey::Mailbox,
        'b' => SortKey::Bytes,
        'w' => SortKey::Hwm,
        'h' => SortKey::Handled,
        'r' => SortKey::Rejected,
        'd' => SortKey::Dropped,
        'x' => SortKey::Expired,
        'l' => SortKey::Drops,
        'k' => SortKey::Links,
        'p' => SortKey::Pid,
        'n' => SortKey::Name,
        _ => return None,
    })
}

fn step(key: SortKey, by: isize) -> SortKey {
    let n = SortKey::ALL.len() as isize;
    let i = SortKey::ALL.iter().position(|(_, k)| *k == key).unwrap_or(0) as isize;
    SortKey::ALL[((i + by).rem_euclid(n)) as usize].1
}

/// Runs the view until the user quits (or `exit_after`).
///
/// # Errors
///
/// The terminal could not be set up or drawn to.
pub fn run(opts: TopOptions) -> std::io::Result<()> {
    let client = Client::new(&opts.addr, opts.token.clone());
    let mut screen = Screen::new(opts.addr.clone(), opts.sort);
    let mut terminal = ratatui::try_init()?;
    let started = Instant::now();
    let mut next_fetch = Instant::now();
    let mut paused = false;
    let result = (|| -> std::io::Result<()> {
        loop {
            if opts.exit_after.is_some_and(|d| started.elapsed() >= d) {
                return Ok(());
            }
            if !paused && Instant::now() >= next_fetch {
                let rows = terminal.size()?.height.saturating_sub(8).max(1) as usize;
                screen.update(client.fetch(screen.sort, rows));
                next_fetch = Instant::now() + opts.interval;
            }
            screen.paused = paused;
            terminal.draw(|f| screen.draw(f))?;
            let wait = next_fetch
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250));
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                        KeyCode::Char(' ') => paused = !paused,
                        KeyCode::Right | KeyCode::Char('>') => {
                            screen.sort = step(screen.sort, 1);
                            next_fetch = Instant::now();
                        }
                        KeyCode::Left | KeyCode::Char('<') => {
                            screen.sort = step(screen.sort, -1);
                            next_fetch = Instant::now();
                        }
                        KeyCode::Char(c) => {
                            if let Some(key) = key_for(c) {
                                screen.sort = key;
                                next_fetch = Instant::now();
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    })();
    ratatui::try_restore()?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_parse_and_cycle() {
        assert_eq!(parse_sort("drops"), Ok(SortKey::Drops));
        assert!(parse_sort("bogus").unwrap_err().contains("mailbox"));
        assert_eq!(step(SortKey::Mailbox, 1), SortKey::Bytes);
        assert_eq!(step(SortKey::Mailbox, -1), SortKey::Name);
        for (name, key) in SortKey::ALL {
            assert_eq!(sort_name(key), name);
        }
    }
}
