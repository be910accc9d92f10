//! Feeds arbitrary bytes, split at arbitrary points, into `girder_net::resp::Parser`
//! with small limits, and checks its invariants:
//!
//! - it never panics;
//! - every request it accepts is non-empty and within the limits (arguments, each
//!   argument's length, the request's size);
//! - what it holds while waiting for more bytes is bounded by the limits;
//! - however the input is split, it yields the same requests, and fails (or not)
//!   alike.
#![no_main]

use bytes::{Bytes, BytesMut};
use girder_net::resp::{Limits, Parser};
use libfuzzer_sys::fuzz_target;

/// The outcome of parsing a stream: the requests, then whether it ended in an error.
#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<Vec<Bytes>>,
    failed: bool,
}

fn check(req: &[Bytes], l: &Limits) {
    assert!(!req.is_empty(), "an empty request");
    assert!(req.len() <= l.max_args, "{} args > {}", req.len(), l.max_args);
    let total: usize = req.iter().map(|a| a.len()).sum();
    let cap = l.max_request_bytes.max(l.max_inline_len);
    assert!(total <= cap, "request of {total} bytes > {cap}");
    for a in req {
        let cap = l.max_bulk_len.max(l.max_inline_len);
        assert!(a.len() <= cap, "an argument of {} bytes > {cap}", a.len());
    }
}

/// Parses `data` fed in chunks whose sizes come from `cuts` (cycled).
fn parse(data: &[u8], cuts: &[u8], l: Limits) -> Outcome {
    let mut p = Parser::new(l);
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let step = if cuts.is_empty() {
            data.len()
        } else {
            usize::from(cuts[i % cuts.len()]).max(1)
        };
        i += 1;
        let end = (pos + step).min(data.len());
        buf.extend_from_slice(&data[pos..end]);
        pos = end;
        loop {
            match p.next(&mut buf) {
                Ok(Some(req)) => {
                    check(&req, &l);
                    requests.push(req);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(e.to_string().starts_with("Protocol error: "), "{e}");
                    return Outcome {
                        requests,
                        failed: true,
                    };
                }
            }
        }
        // Waiting for more: what is held is bounded by the limits.
        // (An inline line, a bulk string, or a header line: at most 21 bytes.)
        let held = l.max_inline_len.max(l.max_bulk_len + 1).max(21);
        assert!(buf.len() <= held, "holds {} bytes > {held}", buf.len());
        assert!(buf.is_empty() || p.in_request(&buf));
    }
    Outcome {
        requests,
        failed: false,
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 5 {
        return;
    }
    let (head, rest) = input.split_at(5);
    let max_request_bytes = 16 + usize::from(head[0]) * 4; // 16..=1036
    let l = Limits {
        max_request_bytes,
        max_bulk_len: (1 + usize::from(head[1])).min(max_request_bytes),
        max_args: 1 + usize::from(head[2] % 16),
        max_inline_len: 1 + usize::from(head[3]),
    };
    l.validate().expect("limits built valid");
    // The stream, then the chunk sizes to feed it in.
    let ncuts = usize::from(head[4] % 32).min(rest.len());
    let (cuts, data) = rest.split_at(ncuts);
    let whole = parse(data, &[], l);
    let split = parse(data, cuts, l);
    let bytewise = parse(data, &[1], l);
    assert_eq!(whole, split, "a split changed the outcome");
    assert_eq!(whole, bytewise, "byte-at-a-time changed the outcome");
});
