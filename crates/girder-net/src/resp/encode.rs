//! Reply encoding: each function appends one RESP2 value to a buffer.

use bytes::{BufMut, Bytes, BytesMut};

/// The line terminator.
pub const CRLF: &[u8] = b"\r\n";
/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";
/// `+PONG\r\n`.
pub const PONG: &[u8] = b"+PONG\r\n";
/// `$-1\r\n`, the null bulk string (RESP2's nil).
pub const NULL_BULK: &[u8] = b"$-1\r\n";

/// Appends a simple string: `+{s}\r\n`. `s` must not contain CR or LF.
pub fn simple(out: &mut BytesMut, s: &str) {
    debug_assert!(!s.contains(['\r', '\n']));
    out.reserve(s.len() + 3);
    out.put_u8(b'+');
    out.put_slice(s.as_bytes());
    out.put_slice(CRLF);
}

/// Appends an error: `-{msg}\r\n`. `msg` starts with its code (`ERR`, `NOAUTH`, ...);
/// CR and LF in it are replaced by spaces so a reply can never be split.
pub fn error(out: &mut BytesMut, msg: &str) {
    out.reserve(msg.len() + 3);
    out.put_u8(b'-');
    for b in msg.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(CRLF);
}

/// Appends an integer: `:{n}\r\n`.
pub fn integer(out: &mut BytesMut, n: i64) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    out.reserve(s.len() + 3);
    out.put_u8(b':');
    out.put_slice(s.as_bytes());
    out.put_slice(CRLF);
}

/// Appends a bulk string: `${len}\r\n{data}\r\n`.
pub fn bulk(out: &mut BytesMut, data: &[u8]) {
    let mut b = itoa::Buffer::new();
    let s = b.format(data.len());
    out.reserve(data.len() + s.len() + 5);
    out.put_u8(b'$');
    out.put_slice(s.as_bytes());
    out.put_slice(CRLF);
    out.put_slice(data);
    out.put_slice(CRLF);
}

/// Appends the null bulk string `$-1\r\n`.
pub fn null_bulk(out: &mut BytesMut) {
    out.put_slice(NULL_BULK);
}

/// Appends the null array `*-1\r\n`.
pub fn null_array(out: &mut BytesMut) {
    out.put_slice(b"*-1\r\n");
}

/// Appends an array header: `*{n}\r\n`; the `n` elements follow.
pub fn array_len(out: &mut BytesMut, n: usize) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    out.reserve(s.len() + 3);
    out.put_u8(b'*');
    out.put_slice(s.as_bytes());
    out.put_slice(CRLF);
}

/// An encoded array of bulk strings, built once and shared: the frame a published
/// message becomes, cloned (a reference count, not a copy) into every subscriber's
/// output.
///
/// ```
/// use girder_net::resp::Frame;
///
/// let f = Frame::bulks(&[b"message", b"news", b"hello"]);
/// assert_eq!(&f[..], b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
/// ```
pub struct Frame;

impl Frame {
    /// `*{n}\r\n` followed by each part as a bulk string, in one allocation.
    pub fn bulks(parts: &[&[u8]]) -> Bytes {
        let len = 16 + parts.iter().map(|p| p.len() + 16).sum::<usize>();
        let mut out = BytesMut::with_capacity(len);
        array_len(&mut out, parts.len());
        for p in parts {
            bulk(&mut out, p);
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_each_type() {
        let mut out = BytesMut::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR bad\r\nthing");
        integer(&mut out, -42);
        bulk(&mut out, b"");
        null_bulk(&mut out);
        array_len(&mut out, 3);
        null_array(&mut out);
        assert_eq!(
            &out[..],
            b"+OK\r\n-ERR bad  thing\r\n:-42\r\n$0\r\n\r\n$-1\r\n*3\r\n*-1\r\n"
        );
    }
}
