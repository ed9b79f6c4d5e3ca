//! What goes over the wire: the HTTP request the loader sends, the response every server
//! answers with, and the request parser of the Rust servers (the same as `examples/http.rs`
//! and `bench/go/main.go`).

/// The one response of every HTTP server, byte for byte: the loader checks each response
/// against it.
pub const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
pub const HTTP_BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// What the loader sends (TechEmpower's plaintext request, shortened).
pub const HTTP_REQUEST: &[u8] =
    b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";
/// A request head (or pipelined remainder) larger than this is refused.
pub const HTTP_MAX_BUFFER: usize = 64 * 1024;

/// What the front of a server's input buffer holds.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole request of `len` bytes; `close` when the client asked to close after it.
    Request {
        len: usize,
        close: bool,
    },
    Incomplete,
    Bad,
}

/// Parses the request at the front of `buf`: HTTP/1.0 or 1.1, an optional body sized by
/// `Content-Length`, `Connection: close`/`keep-alive`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let Some(head_len) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let mut lines = buf[..head_len].split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let version = match request_line.trim_ascii().rsplit(|&b| b == b' ').next() {
        Some(b"HTTP/1.1") => 1,
        Some(b"HTTP/1.0") => 0,
        _ => return Parsed::Bad,
    };
    let mut close = version == 0;
    let mut body = 0;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Bad;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                Some(n) => body = n,
                None => return Parsed::Bad,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let len = head_len + 4 + body;
    if buf.len() < len {
        Parsed::Incomplete
    } else {
        Parsed::Request { len, close }
    }
}

/// Answers every complete request at the front of `input`, appending the responses to `out`.
/// Returns the bytes consumed and whether the connection must close after `out` is written.
pub fn answer_requests(input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut start = 0;
    loop {
        match parse_request(&input[start..]) {
            Parsed::Request { len, close } => {
                out.extend_from_slice(HTTP_RESPONSE);
                start += len;
                if close {
                    return (start, true);
                }
            }
            Parsed::Incomplete => return (start, false),
            Parsed::Bad => {
                out.extend_from_slice(HTTP_BAD_REQUEST);
                return (start, true);
            }
        }
    }
}

/// The echo loaders' byte stream: connection `seed`'s byte at stream offset `k` is
/// `PATTERN[(seed + k) % PATTERN_LEN]`, so every echoed byte can be checked with `memcmp`.
pub const PATTERN_LEN: usize = 1 << 16;

/// A pseudo-random pattern (xorshift), `PATTERN_LEN` bytes followed by a repeat of its first
/// `extra` bytes so that any message of up to `extra` bytes is one contiguous slice.
pub fn pattern(extra: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    let mut p: Vec<u8> = (0..PATTERN_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let head: Vec<u8> = p[..extra.min(PATTERN_LEN)].to_vec();
    p.extend_from_slice(&head);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_are_answered_and_the_partial_tail_is_kept() {
        let mut input = HTTP_REQUEST.repeat(3);
        input.extend_from_slice(&HTTP_REQUEST[..10]);
        let mut out = Vec::new();
        let (used, close) = answer_requests(&input, &mut out);
        assert_eq!(used, HTTP_REQUEST.len() * 3);
        assert!(!close);
        assert_eq!(out, HTTP_RESPONSE.repeat(3));
    }

    #[test]
    fn connection_close_and_bodies_are_honoured() {
        let req = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcGET";
        assert_eq!(
            parse_request(req),
            Parsed::Request {
                len: req.len() - 3,
                close: true
            }
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.0\r\n\r\n"),
            Parsed::Request {
                len: 18,
                close: true
            }
        );
        assert_eq!(parse_request(b"GET / SPDY\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Parsed::Incomplete);
    }

    #[test]
    fn pattern_tail_repeats_its_head() {
        let p = pattern(4096);
        assert_eq!(p.len(), PATTERN_LEN + 4096);
        assert_eq!(p[PATTERN_LEN..], p[..4096]);
        // Not a constant stream: a stuck byte would verify.
        assert!(p.windows(2).any(|w| w[0] != w[1]));
    }
}
