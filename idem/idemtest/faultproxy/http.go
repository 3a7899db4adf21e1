package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
)

const (
	httpMaxHead     = 1 << 20 // bytes of a request or response head
	httpMaxPipeline = 64      // requests forwarded ahead of their responses
)

var errHTTPMalformed = errors.New("faultproxy: malformed HTTP message")

// head is the start line and header fields of an HTTP message, as read.
type head struct {
	raw    []byte // forwarded as is
	start  []string
	header http.Header
}

// httpPending is what the response of one forwarded request is due.
type httpPending struct {
	method string
	fault  Fault
}

// httpLink is the state of one HTTP connection.
type httpLink struct {
	*link
	queue    chan httpPending // in request order
	silenced atomic.Bool      // a request or response was dropped: nothing more goes either way
}

func (l *link) http() {
	h := &httpLink{link: l, queue: make(chan httpPending, httpMaxPipeline)}
	l.p.wg.Add(1)
	go func() {
		defer l.p.wg.Done()
		if !h.down() && !h.silenced.Load() {
			l.close()
		}
	}()
	h.up()
}

// readHead reads a start line and header fields up to the empty line.
func readHead(r *bufio.Reader) (*head, error) {
	h := &head{header: http.Header{}}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errHTTPMalformed
		}
		if err != nil {
			return nil, err
		}
		h.raw = append(h.raw, line...)
		if len(h.raw) > httpMaxHead {
			return nil, errHTTPMalformed
		}
		text := strings.TrimRight(string(line), "\r\n")
		switch {
		case h.start == nil:
			if text == "" { // a stray empty line before a message is allowed (and forwarded)
				continue
			}
			h.start = strings.SplitN(text, " ", 3)
		case text == "":
			return h, nil
		default:
			name, value, ok := strings.Cut(text, ":")
			if ok {
				h.header.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(value))
			}
		}
	}
}

// bodyKind is how a message's body is delimited.
type bodyKind int

const (
	noBody bodyKind = iota
	lengthBody
	chunkedBody
	untilEOF
)

// framing returns how the body after h is delimited. A response to HEAD,
// and 1xx, 204 and 304 responses, have none; a request without a length
// has none, a response without one runs to the end of the connection.
func framing(h *head, request bool, method string, status int) (bodyKind, int64, error) {
	if !request && (method == http.MethodHead || status/100 == 1 || status == http.StatusNoContent || status == http.StatusNotModified) {
		return noBody, 0, nil
	}
	if te := h.header.Values("Transfer-Encoding"); len(te) > 0 {
		codings := strings.Split(te[len(te)-1], ",")
		if strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked") {
			return chunkedBody, 0, nil
		}
		if request {
			return 0, 0, errHTTPMalformed
		}
		return untilEOF, 0, nil
	}
	if cl := h.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, errHTTPMalformed
		}
		return lengthBody, n, nil
	}
	if request {
		return noBody, 0, nil
	}
	return untilEOF, 0, nil
}

// copyBody copies a body delimited as kind from r to w (io.Discard to drop
// it), flushing as it goes.
func copyBody(w *bufio.Writer, r *bufio.Reader, kind bodyKind, n int64) error {
	var err error
	switch kind {
	case lengthBody:
		_, err = io.CopyN(w, r, n)
	case untilEOF:
		_, err = io.Copy(w, r)
	case chunkedBody:
		err = copyChunks(w, r)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

// copyChunks copies a chunked body, its last chunk and its trailer.
func copyChunks(w *bufio.Writer, r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(strings.TrimSpace(string(line)), ";")
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil || n < 0 || n > 1<<62 {
			return errHTTPMalformed
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if _, err := io.CopyN(w, r, n+2); err != nil { // the data and its CRLF
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	for { // trailer fields, up to the empty line
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// up forwards the client's requests in order, applying faults.
func (h *httpLink) up() {
	defer h.close()
	r := bufio.NewReader(h.client)
	w := bufio.NewWriter(lockedWriter{h.link, false})
	for {
		m, err := readHead(r)
		if h.silenced.Load() {
			h.drain(r)
			return
		}
		if err != nil || len(m.start) != 3 || !strings.HasPrefix(m.start[2], "HTTP/1.") {
			return
		}
		kind, n, err := framing(m, true, "", 0)
		if err != nil || m.start[0] == http.MethodConnect || m.header.Get("Upgrade") != "" {
			return // upgrades are not supported: the bytes after them are not HTTP/1.1
		}
		req, ft := h.p.decide(Request{Conn: h.id, Method: m.start[0], Path: m.start[1], Header: m.header.Clone()})
		switch ft {
		case CutNow:
			h.p.stats.cutNow.Add(1)
			return
		case DropRequest:
			h.p.stats.droppedRequests.Add(1)
			h.silence() // what follows on the connection would be answered in its place
			h.drain(r)
			return
		case DelayRequest:
			h.p.stats.delayedRequests.Add(1)
			if !h.p.wait(h.p.cfg.DelayBy, h.closed) {
				return
			}
		}
		select {
		case h.queue <- httpPending{method: req.Method, fault: ft}:
		case <-h.closed:
			return
		}
		w.Write(m.raw)
		if strings.EqualFold(m.header.Get("Expect"), "100-continue") {
			w.Flush() // the client sends the body once the server says to
		}
		if err := copyBody(w, r, kind, n); err != nil {
			if h.silenced.Load() {
				h.drain(r)
			}
			return
		}
	}
}

// drain reads and discards what the client sends on a silenced connection,
// until it hangs up or the proxy closes.
func (h *httpLink) drain(r io.Reader) { io.Copy(io.Discard, r) }

// down forwards the server's responses, each to the request at the head of
// the queue, applying its fault. It reports whether it left the connection
// to the client open (silenced).
func (h *httpLink) down() bool {
	r := bufio.NewReader(h.server)
	w := bufio.NewWriter(lockedWriter{h.link, true})
	for {
		m, err := readHead(r)
		if err != nil || len(m.start) < 2 {
			return false
		}
		status, err := strconv.Atoi(m.start[1])
		if err != nil || status == http.StatusSwitchingProtocols {
			return false
		}
		if status/100 == 1 { // interim: the final response is still to come
			if _, err := w.Write(m.raw); err != nil || w.Flush() != nil {
				return false
			}
			continue
		}
		var due httpPending // an answer nothing asked for passes
		select {
		case due = <-h.queue:
		default:
		}
		kind, n, err := framing(m, false, due.method, status)
		if err != nil {
			return false
		}
		switch due.fault {
		case CutAtResponse:
			h.p.stats.cutAtResponse.Add(1)
			return false
		case DropResponse:
			h.p.stats.dropped.Add(1)
			copyBody(bufio.NewWriter(io.Discard), r, kind, n)
			h.silence()
			return true
		case Delay:
			h.p.stats.delayed.Add(1)
			if !h.p.wait(h.p.cfg.DelayBy, h.closed) {
				return false
			}
		}
		w.Write(m.raw)
		if copyBody(w, r, kind, n) != nil || kind == untilEOF {
			return false
		}
	}
}

// silence ends the exchange after a dropped response or request without
// telling the client: the server's side is closed, and the client's stays open with
// nothing more delivered, until the client hangs up (a timeout, typically)
// or the proxy closes. The responses of requests behind the dropped one can
// then never be taken for its own.
func (h *httpLink) silence() {
	h.silenced.Store(true)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.server.Close()
}

// lockedWriter writes to one side of a link.
type lockedWriter struct {
	l        *link
	toClient bool
}

func (w lockedWriter) Write(b []byte) (int, error) {
	var err error
	if w.toClient {
		err = w.l.writeClient(b)
	} else {
		err = w.l.writeServer(b)
	}
	if err != nil {
		return 0, fmt.Errorf("faultproxy: %w", err)
	}
	return len(b), nil
}
