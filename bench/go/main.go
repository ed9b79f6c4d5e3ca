// The Go servers of netpoll-bench: the same logic as netpoll's examples/echo.rs and
// examples/http.rs, one goroutine per connection.
//
//	go build -o server . && ADDR=127.0.0.1:7000 WORKERS=1 ./server echo
//
// ADDR is where to listen (default 127.0.0.1:7000), WORKERS sets GOMAXPROCS (default: one per
// core), DEADLINE_MS makes echo move its read deadline before every read. Runs until killed.
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

var response = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
var badRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

const maxBuffer = 64 * 1024

// outPool holds the HTTP response buffers: a connection takes one for each batch of responses
// and gives it back after the write, as the Rust servers borrow their worker thread's spare
// (see examples/http.rs), so the buffer written is the one the last batch used, still in cache.
var outPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "echo" && os.Args[1] != "http") {
		fmt.Fprintln(os.Stderr, "usage: server echo|http")
		os.Exit(2)
	}
	mode := os.Args[1]
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:7000"
	}
	if w := os.Getenv("WORKERS"); w != "" {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "WORKERS=%q: not a positive integer\n", w)
			os.Exit(2)
		}
		runtime.GOMAXPROCS(n)
	}
	var deadline time.Duration
	if d := os.Getenv("DEADLINE_MS"); d != "" {
		ms, err := strconv.Atoi(d)
		if err != nil || ms < 0 {
			fmt.Fprintf(os.Stderr, "DEADLINE_MS=%q: not a non-negative integer\n", d)
			os.Exit(2)
		}
		deadline = time.Duration(ms) * time.Millisecond
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("go %s listening on %s\n", mode, ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if mode == "echo" {
			go echo(c, deadline)
		} else {
			go serveHTTP(c)
		}
	}
}

func echo(c net.Conn, deadline time.Duration) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		if deadline > 0 {
			c.SetReadDeadline(time.Now().Add(deadline))
		}
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveHTTP(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	filled := 0
	for {
		if filled == len(buf) {
			if len(buf) >= maxBuffer {
				c.Write(badRequest)
				return
			}
			bigger := make([]byte, len(buf)*2)
			copy(bigger, buf[:filled])
			buf = bigger
		}
		n, err := c.Read(buf[filled:])
		if n == 0 || err != nil {
			return
		}
		filled += n
		pooled := outPool.Get().(*[]byte)
		out := (*pooled)[:0]
		start := 0
		closeAfter := false
		for !closeAfter {
			length, close, ok := parse(buf[start:filled])
			if !ok {
				out = append(out, badRequest...)
				closeAfter = true
				break
			}
			if length == 0 {
				break
			}
			out = append(out, response...)
			start += length
			closeAfter = close
		}
		copy(buf, buf[start:filled])
		filled -= start
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
		if cap(out) <= maxBuffer { // an outsized batch's buffer is not kept, as in the Rust servers
			*pooled = out[:0]
			outPool.Put(pooled)
		}
		if closeAfter {
			return
		}
	}
}

// parse reads the request at the front of buf: its length (0 if incomplete), whether the client
// asked to close after it, and false if it is not HTTP/1.x. It allocates nothing, like the Rust
// parsers it mirrors.
func parse(buf []byte) (length int, close bool, ok bool) {
	head := bytes.Index(buf, crlfcrlf)
	if head < 0 {
		return 0, false, true
	}
	rest := buf[:head]
	line, rest := nextLine(rest)
	line = bytes.TrimSpace(line)
	version := line[bytes.LastIndexByte(line, ' ')+1:]
	switch {
	case bytes.Equal(version, http11):
	case bytes.Equal(version, http10):
		close = true
	default:
		return 0, false, false
	}
	body := 0
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return 0, false, false
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		if bytes.EqualFold(name, contentLength) {
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return 0, false, false
			}
			body = n
		} else if bytes.EqualFold(name, connection) {
			if bytes.EqualFold(value, closeToken) {
				close = true
			} else if bytes.EqualFold(value, keepAlive) {
				close = false
			}
		}
	}
	length = head + 4 + body
	if len(buf) < length {
		return 0, false, true
	}
	return length, close, true
}

// nextLine splits buf at its first '\n'.
func nextLine(buf []byte) (line, rest []byte) {
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		return buf[:i], buf[i+1:]
	}
	return buf, nil
}

var (
	crlfcrlf      = []byte("\r\n\r\n")
	http11        = []byte("HTTP/1.1")
	http10        = []byte("HTTP/1.0")
	contentLength = []byte("content-length")
	connection    = []byte("connection")
	closeToken    = []byte("close")
	keepAlive     = []byte("keep-alive")
)
