package idemhttp

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// recorder buffers the handler's response so it can be stored before the
// client sees it: a client that got an answer and retries always gets that
// answer replayed. A response over max bytes is streamed instead
// (passthrough) and stored without its body.
//
// It answers http.ResponseController's Flush (a no-op while buffering),
// SetReadDeadline and SetWriteDeadline. It does not offer Hijack or Unwrap,
// which would let a handler bypass it.
type recorder struct {
	w           http.ResponseWriter
	header      http.Header
	status      int
	body        bytes.Buffer
	max         int
	passthrough bool
}

// Header implements http.ResponseWriter: the headers being recorded.
func (r *recorder) Header() http.Header { return r.header }

// WriteHeader implements http.ResponseWriter. Informational (1xx) codes
// are dropped; the first final code is recorded.
func (r *recorder) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("idemhttp: invalid WriteHeader code %v", code))
	}
	if r.status != 0 || code < 200 {
		return // superfluous, or informational (not recorded)
	}
	r.status = code
}

// Write implements http.ResponseWriter: it buffers p, or streams it once
// the body is over the limit.
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(r.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if r.passthrough {
		return r.w.Write(p)
	}
	if r.body.Len()+len(p) <= r.max {
		return r.body.Write(p)
	}
	// Too large to store: send what we have and stream the rest.
	r.passthrough = true
	r.body.Write(p)
	r.settle()
	dst := r.w.Header()
	for k, vs := range r.header {
		dst[k] = vs
	}
	r.w.WriteHeader(r.status)
	_, err := r.w.Write(r.body.Bytes())
	r.body = bytes.Buffer{}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// FlushError implements the interface http.ResponseController uses. While
// buffering there is nothing to flush.
func (r *recorder) FlushError() error {
	if r.passthrough {
		return http.NewResponseController(r.w).Flush()
	}
	return nil
}

// Flush implements http.Flusher.
func (r *recorder) Flush() { _ = r.FlushError() }

// SetReadDeadline implements the interface http.ResponseController uses.
func (r *recorder) SetReadDeadline(t time.Time) error {
	return http.NewResponseController(r.w).SetReadDeadline(t)
}

// SetWriteDeadline implements the interface http.ResponseController uses.
func (r *recorder) SetWriteDeadline(t time.Time) error {
	return http.NewResponseController(r.w).SetWriteDeadline(t)
}

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// settle fixes the Content-Type as net/http would sniff it, so that the
// first response and its replays carry the same one.
func (r *recorder) settle() {
	if _, ok := r.header["Content-Type"]; !ok && r.body.Len() > 0 && bodyAllowed(r.statusCode()) {
		r.header.Set("Content-Type", http.DetectContentType(r.body.Bytes()))
	}
}

// flushTo writes the buffered response to w, with every header the
// handler set.
func (r *recorder) flushTo(w http.ResponseWriter) {
	r.settle()
	dst := w.Header()
	for k, vs := range r.header {
		dst[k] = vs
	}
	status := r.statusCode()
	if bodyAllowed(status) {
		dst.Set("Content-Length", strconv.Itoa(r.body.Len()))
	}
	w.WriteHeader(status)
	if r.body.Len() > 0 {
		w.Write(r.body.Bytes())
	}
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
