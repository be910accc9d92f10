//! RESP2: a bounded, incremental request parser and a reply encoder.
//!
//! Requests arrive as RESP arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what client libraries send) or as inline commands (`PING\r\n`, what people type
//! into telnet and what `redis-benchmark`'s `PING_INLINE` sends). The [`Parser`] takes
//! bytes as they arrive, keeps its place between reads (a request split over many
//! reads is never re-scanned from the start), and checks every [`Limits`] bound
//! *before* buffering what the bound covers: a declared bulk length over the limit
//! is refused on its header, not after its bytes arrived.
//!
//! ```
//! use bytes::BytesMut;
//! use girder_net::resp::{Limits, Parser};
//!
//! let mut parser = Parser::new(Limits::default());
//! let mut buf = BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n"[..]);
//! let first = parser.next(&mut buf).unwrap().unwrap();
//! assert_eq!(first, vec![&b"ECHO"[..], &b"hi"[..]]);
//! let second = parser.next(&mut buf).unwrap().unwrap();
//! assert_eq!(second, vec![&b"PING"[..]]);
//! assert!(parser.next(&mut buf).unwrap().is_none()); // wants more bytes
//! ```

mod encode;
mod parse;

pub use encode::{
    array_len, bulk, error, integer, null_array, null_bulk, simple, Frame, CRLF, NULL_BULK, OK, PONG,
};
pub use parse::{Limits, Parser, ProtocolError};
