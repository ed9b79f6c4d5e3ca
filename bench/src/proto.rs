//! What goes over the wire: the HTTP request the loader sends, the response every server
//! answers with, the request parser of the Rust servers (the same as `examples/http.rs` and
//! `bench/go/main.go`), and the response parser the loader uses for hyper, whose responses
//! are not byte for byte the same (their `date` header changes every second).

/// The one response of every HTTP server, byte for byte: the loader checks each response
/// against it.
pub const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
/// The body of every HTTP response (hyper's servers included).
pub const HTTP_BODY: &[u8] = b"Hello, World!";
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
    // Vectorised searches, as Go's server does with `bytes.Index`/`IndexByte`: a byte-by-byte
    // scan made the parser's speed (15–18% of the server's CPU) swing with where the compiler
    // happened to place its loop in each binary.
    static END_OF_HEAD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    let Some(head_len) = END_OF_HEAD.find(buf) else {
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
        let Some(colon) = memchr::memchr(b':', line) else {
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

/// The status line every parsed response must start with.
const HTTP_STATUS_OK: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// Checks the response at the front of `buf`: the status line `HTTP/1.1 200 OK`, header
/// lines ended by CRLF, a `Content-Length` (and no `Transfer-Encoding`), and [`HTTP_BODY`]
/// as the body. Returns its length once it is whole, `None` while it is incomplete (an
/// incomplete response is checked as far as it goes), and what is wrong with it otherwise.
pub fn parse_response(buf: &[u8]) -> Result<Option<usize>, String> {
    let status = buf.len().min(HTTP_STATUS_OK.len());
    if buf[..status] != HTTP_STATUS_OK[..status] {
        return Err("the status line is not `HTTP/1.1 200 OK`".into());
    }
    if status < HTTP_STATUS_OK.len() {
        return Ok(None);
    }
    let mut pos = HTTP_STATUS_OK.len();
    let mut content_length = None;
    let head_len = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > HTTP_MAX_BUFFER {
                return Err(format!("a response head over {HTTP_MAX_BUFFER} bytes"));
            }
            return Ok(None);
        };
        let line = &buf[pos..pos + nl];
        pos += nl + 1;
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err("a header line not ended by CRLF".into());
        };
        if line.is_empty() {
            break pos;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err("a header line without a colon".into());
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n: usize = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("an invalid Content-Length")?;
            if content_length.is_some_and(|c| c != n) {
                return Err("two different Content-Lengths".into());
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("a Transfer-Encoding (the body must be sized by Content-Length)".into());
        }
    };
    match content_length {
        None => Err("no Content-Length".into()),
        Some(n) if n != HTTP_BODY.len() => Err(format!(
            "Content-Length {n}, not the {} of `Hello, World!`",
            HTTP_BODY.len()
        )),
        Some(n) => {
            let body = &buf[head_len..buf.len().min(head_len + n)];
            if body != &HTTP_BODY[..body.len()] {
                Err("the body is not `Hello, World!`".into())
            } else if body.len() < n {
                Ok(None)
            } else {
                Ok(Some(head_len + n))
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
