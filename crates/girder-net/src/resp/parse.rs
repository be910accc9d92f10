//! The incremental request parser.

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Input limits, checked as requests are parsed. Every limit has a safe default.
///
/// | limit | default | Redis's equivalent |
/// |---|---|---|
/// | `max_request_bytes` | 1 MiB | `client-query-buffer-limit` (1 GiB) |
/// | `max_bulk_len` | 512 KiB | `proto-max-bulk-len` (512 MiB) |
/// | `max_args` | 1,024 | (1,048,576) |
/// | `max_inline_len` | 64 KiB | `PROTO_INLINE_MAX_SIZE` (64 KiB) |
///
/// girder's defaults are far smaller than Redis's: a request is held whole in memory
/// before it runs, and 10,000 connections × 1 GiB is not a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request (all its bytes, headers included).
    pub max_request_bytes: usize,
    /// Largest bulk string (one argument).
    pub max_bulk_len: usize,
    /// Most arguments in one request, the command name included.
    pub max_args: usize,
    /// Longest inline command line (header lines of multibulk requests have their
    /// own fixed bound: 21 bytes, the longest a valid one can be).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 1 << 20,
            max_bulk_len: 512 << 10,
            max_args: 1024,
            max_inline_len: 64 << 10,
        }
    }
}

impl Limits {
    /// Checks the limits are usable; the error names the setting to change.
    ///
    /// # Errors
    ///
    /// A message naming the setting when a limit is zero or `max_bulk_len` exceeds
    /// `max_request_bytes`.
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            ("limits.max_request_bytes", self.max_request_bytes),
            ("limits.max_bulk_len", self.max_bulk_len),
            ("limits.max_args", self.max_args),
            ("limits.max_inline_len", self.max_inline_len),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.max_bulk_len > self.max_request_bytes {
            return Err(format!(
                "limits.max_bulk_len ({}) must not exceed limits.max_request_bytes ({})",
                self.max_bulk_len, self.max_request_bytes
            ));
        }
        Ok(())
    }
}

/// A request the parser refuses. Its `Display` is the text of the error reply after
/// `-ERR ` (e.g. `Protocol error: invalid bulk length`); the connection is then closed,
/// as Redis does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A `*` header that is not a number.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// More arguments than `max_args`.
    #[error("Protocol error: too many arguments ({got}, the limit is {limit})")]
    TooManyArgs {
        /// Arguments declared.
        got: u64,
        /// The limit.
        limit: usize,
    },
    /// An array element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A `$` header that is not a length.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A bulk string longer than `max_bulk_len`.
    #[error("Protocol error: bulk length {got} exceeds the limit of {limit} bytes")]
    BulkTooLong {
        /// Length declared.
        got: u64,
        /// The limit.
        limit: usize,
    },
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: expected CRLF after a bulk string")]
    MissingCrlf,
    /// A request larger than `max_request_bytes`.
    #[error("Protocol error: request exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The limit.
        limit: usize,
    },
    /// An inline command or header line longer than `max_inline_len`.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline command with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

#[derive(Debug)]
enum State {
    /// Between requests.
    Idle,
    /// Inside an array: `remaining` bulk strings to go; `bulk` is the length of the
    /// one whose header was read.
    Array {
        remaining: usize,
        args: Vec<Bytes>,
        bulk: Option<usize>,
        bytes: usize,
    },
}

/// The incremental RESP2 request parser: feed it the connection's read buffer.
///
/// [`next`](Parser::next) consumes what it parsed from the buffer (arguments become
/// [`Bytes`] slices of it, not copies) and keeps the place of a partial request, so
/// each byte is examined once however the request is split across reads.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            state: State::Idle,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a request has been started but not finished (bytes consumed into the
    /// parser's state, or left in `buf`).
    pub fn in_request(&self, buf: &BytesMut) -> bool {
        !matches!(self.state, State::Idle) || !buf.is_empty()
    }

    /// Parses the next complete request from `buf`.
    ///
    /// `Ok(Some(args))` is a request (never empty); `Ok(None)` means more bytes are
    /// needed (everything usable so far was consumed into the parser's state).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the input breaks the protocol or a limit; the
    /// connection should then reply with it and close.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            match &mut self.state {
                State::Idle => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    if buf[0] == b'*' {
                        let before = buf.len();
                        let Some(n) = self.header(buf, ProtocolError::InvalidMultibulkLength)? else {
                            return Ok(None);
                        };
                        if n <= 0 {
                            continue; // `*0` and `*-1`: an empty request, skipped as Redis does.
                        }
                        if n as u64 > self.limits.max_args as u64 {
                            return Err(ProtocolError::TooManyArgs {
                                got: n as u64,
                                limit: self.limits.max_args,
                            });
                        }
                        let n = n as usize;
                        self.state = State::Array {
                            remaining: n,
                            args: Vec::with_capacity(n.min(16)),
                            bulk: None,
                            bytes: before - buf.len(),
                        };
                    } else {
                        match self.inline(buf)? {
                            None => return Ok(None),
                            Some(args) if args.is_empty() => continue,
                            Some(args) => return Ok(Some(args)),
                        }
                    }
                }
                State::Array {
                    remaining,
                    args,
                    bulk,
                    bytes,
                } => {
                    if *remaining == 0 {
                        let args = std::mem::take(args);
                        self.state = State::Idle;
                        return Ok(Some(args));
                    }
                    match *bulk {
                        None => {
                            if buf.is_empty() {
                                return Ok(None);
                            }
                            if buf[0] != b'$' {
                                return Err(ProtocolError::ExpectedBulk(buf[0] as char));
                            }
                            let before = buf.len();
                            let limits = self.limits;
                            let Some(len) = header_line(buf, ProtocolError::InvalidBulkLength)? else {
                                return Ok(None);
                            };
                            if len < 0 {
                                return Err(ProtocolError::InvalidBulkLength);
                            }
                            if len as u64 > limits.max_bulk_len as u64 {
                                return Err(ProtocolError::BulkTooLong {
                                    got: len as u64,
                                    limit: limits.max_bulk_len,
                                });
                            }
                            *bytes += before - buf.len() + len as usize + 2;
                            if *bytes > limits.max_request_bytes {
                                return Err(ProtocolError::RequestTooLarge {
                                    limit: limits.max_request_bytes,
                                });
                            }
                            *bulk = Some(len as usize);
                        }
                        Some(len) => {
                            if buf.len() < len + 2 {
                                // Make room for the whole string at once, not in
                                // doubling steps (bounded: len <= max_bulk_len).
                                buf.reserve(len + 2 - buf.len());
                                return Ok(None);
                            }
                            if &buf[len..len + 2] != b"\r\n" {
                                return Err(ProtocolError::MissingCrlf);
                            }
                            args.push(buf.split_to(len).freeze());
                            buf.advance(2);
                            *bulk = None;
                            *remaining -= 1;
                        }
                    }
                }
            }
        }
    }

    fn header(&self, buf: &mut BytesMut, invalid: ProtocolError) -> Result<Option<i64>, ProtocolError> {
        header_line(buf, invalid)
    }

    /// One inline command line, split into arguments; `None` if the line is not
    /// complete yet.
    fn inline(&self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(nl) = find_lf(buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::InlineTooLong);
            }
            return Ok(None);
        };
        if nl > self.limits.max_inline_len {
            return Err(ProtocolError::InlineTooLong);
        }
        let line = buf.split_to(nl + 1);
        let mut line = &line[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
        if args.len() > self.limits.max_args {
            return Err(ProtocolError::TooManyArgs {
                got: args.len() as u64,
                limit: self.limits.max_args,
            });
        }
        Ok(Some(args))
    }
}

fn find_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// The longest header line that can be valid, up to its `\n`: `*`, `-`, 18 digits,
/// `\r`.
const MAX_HEADER_LINE: usize = 21;

/// Parses a `*n\r\n` or `$n\r\n` header line at the start of `buf`, consuming it.
///
/// A line that cannot be a valid header is refused as `invalid` whether or not its
/// `\n` has arrived, so the outcome never depends on how the bytes were split.
fn header_line(buf: &mut BytesMut, invalid: ProtocolError) -> Result<Option<i64>, ProtocolError> {
    let Some(nl) = find_lf(buf) else {
        if buf.len() > MAX_HEADER_LINE {
            return Err(invalid);
        }
        return Ok(None);
    };
    if nl < 2 || buf[nl - 1] != b'\r' {
        return Err(invalid);
    }
    let n = parse_int(&buf[1..nl - 1]).ok_or(invalid)?;
    buf.advance(nl + 1);
    Ok(Some(n))
}

/// A decimal integer with an optional leading `-`, at most 18 digits.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if neg { -n } else { n })
}

/// Splits an inline command line as Redis's `sdssplitargs` does: arguments separated
/// by whitespace, `"..."` with escapes (`\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"`,
/// `\xHH`) and `'...'` (only `\'` escaped). `None` on unbalanced quotes or a closing
/// quote not followed by whitespace.
fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    in_dq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    in_sq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    c if c.is_ascii_whitespace() => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        debug_assert!(!in_dq && !in_sq);
        args.push(Bytes::from(cur));
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8], limits: Limits) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut p = Parser::new(limits);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(r) = p.next(&mut buf)? {
            out.push(r);
        }
        Ok(out)
    }

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn multibulk_and_inline_and_pipelines() {
        let got = parse_all(
            b"*1\r\n$4\r\nPING\r\nSET a \"x y\"\r\n*0\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![args(&["PING"]), args(&["SET", "a", "x y"]), args(&["GET", "a"])]
        );
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let got = parse_all(b"set k \"a\\x41\\n\" 'it\\'s'\n", Limits::default()).unwrap();
        assert_eq!(
            got,
            vec![vec![
                Bytes::from_static(b"set"),
                Bytes::from_static(b"k"),
                Bytes::from_static(b"aA\n"),
                Bytes::from_static(b"it's")
            ]]
        );
        assert_eq!(
            parse_all(b"set \"k\n", Limits::default()),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_all(b"set \"k\"x\n", Limits::default()),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn refuses_protocol_errors() {
        let l = Limits::default();
        assert_eq!(
            parse_all(b"*x\r\n", l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n+PING\r\n", l),
            Err(ProtocolError::ExpectedBulk('+'))
        );
        assert_eq!(
            parse_all(b"*1\r\n$-1\r\n", l),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n$2\r\nabc\r\n", l),
            Err(ProtocolError::MissingCrlf)
        );
        assert_eq!(parse_all(b"*1\n", l), Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn enforces_limits_on_headers_before_buffering() {
        let l = Limits {
            max_request_bytes: 100,
            max_bulk_len: 50,
            max_args: 3,
            max_inline_len: 20,
        };
        assert_eq!(
            parse_all(b"*4\r\n", l),
            Err(ProtocolError::TooManyArgs { got: 4, limit: 3 })
        );
        assert_eq!(
            parse_all(b"*1\r\n$51\r\n", l),
            Err(ProtocolError::BulkTooLong { got: 51, limit: 50 })
        );
        assert_eq!(
            parse_all(b"*3\r\n$40\r\n", l).map(|v| v.len()),
            Ok(0),
            "incomplete but within limits"
        );
        let mut big = b"*3\r\n$40\r\n".to_vec();
        big.extend_from_slice(&[b'a'; 40]);
        big.extend_from_slice(b"\r\n$45\r\n");
        assert_eq!(
            parse_all(&big, l),
            Err(ProtocolError::RequestTooLarge { limit: 100 })
        );
        assert_eq!(parse_all(&[b'a'; 21], l), Err(ProtocolError::InlineTooLong));
        assert_eq!(
            parse_all(b"a b c d\r\n", l),
            Err(ProtocolError::TooManyArgs { got: 4, limit: 3 })
        );
        assert_eq!(
            parse_all(b"*99999999999999999999\r\n", l),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }

    /// Found by the fuzzer: a header line was refused for `max_inline_len` only while
    /// its `\n` had not arrived, so `*-1\r\n` with a small `max_inline_len` passed
    /// whole and failed a byte at a time. Header lines now have their own bound.
    #[test]
    fn header_lines_do_not_depend_on_the_split() {
        let l = Limits {
            max_inline_len: 2,
            ..Limits::default()
        };
        let bytewise = |input: &[u8]| {
            let mut p = Parser::new(l);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for b in input {
                buf.extend_from_slice(&[*b]);
                while let Some(r) = p.next(&mut buf)? {
                    out.push(r);
                }
            }
            Ok::<_, ProtocolError>(out)
        };
        let input = b"*-1\r\n*1\r\n$10\r\n0123456789\r\n";
        assert_eq!(parse_all(input, l), Ok(vec![args(&["0123456789"])]));
        assert_eq!(bytewise(input), Ok(vec![args(&["0123456789"])]));
        let long = b"*0000000000000000000001\r\n";
        assert_eq!(parse_all(long, l), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(bytewise(long), Err(ProtocolError::InvalidMultibulkLength));
        let long = b"*1\r\n$-000000000000000001\r\n";
        assert_eq!(parse_all(long, l), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(bytewise(long), Err(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn validate_names_the_setting() {
        let l = Limits {
            max_args: 0,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("limits.max_args"));
        let l = Limits {
            max_bulk_len: 10,
            max_request_bytes: 5,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("limits.max_bulk_len"));
    }

    fn encode(reqs: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reqs {
            out.extend_from_slice(format!("*{}\r\n", r.len()).as_bytes());
            for a in r {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    proptest! {
        /// However a pipeline of requests is split into reads, the parser yields
        /// exactly the requests sent, in order: none lost, none duplicated.
        #[test]
        fn any_split_yields_the_same_requests(
            reqs in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..20),
            cuts in prop::collection::vec(1usize..64, 1..50),
        ) {
            let wire = encode(&reqs);
            let mut p = Parser::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < wire.len() {
                let step = cuts[i % cuts.len()].min(wire.len() - pos);
                i += 1;
                buf.extend_from_slice(&wire[pos..pos + step]);
                pos += step;
                while let Some(r) = p.next(&mut buf).unwrap() {
                    got.push(r.into_iter().map(|b| b.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(got, reqs);
            prop_assert!(!p.in_request(&buf));
        }

        /// Arbitrary bytes never panic the parser, and whatever it accepts respects
        /// the limits.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let l = Limits { max_request_bytes: 256, max_bulk_len: 64, max_args: 8, max_inline_len: 128 };
            let mut p = Parser::new(l);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(r)) = p.next(&mut buf) {
                prop_assert!(!r.is_empty() && r.len() <= 8);
            }
        }
    }
}
