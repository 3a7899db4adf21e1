package faultproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
)

// echo is an HTTP server that answers each request with its method, path
// and body, and records when each path arrived.
type echo struct {
	*httptest.Server
	mu      sync.Mutex
	arrived map[string][]time.Time
}

func newEcho(t testing.TB) *echo {
	e := &echo{arrived: map[string][]time.Time{}}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.arrived[r.URL.Path] = append(e.arrived[r.URL.Path], time.Now())
		e.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echo) arrivals(path string) []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Time(nil), e.arrived[path]...)
}

// faultOn returns a Decide that gives fault f to requests for path, and
// lets everything else pass.
func faultOn(path string, f faultproxy.Fault) func(faultproxy.Request) faultproxy.Fault {
	return func(r faultproxy.Request) faultproxy.Fault {
		if r.Path == path {
			return f
		}
		return faultproxy.Pass
	}
}

// TestHTTPFaults gives each fault to one POST on a keep-alive connection
// (after a request that passes on the same connection) and checks both
// ends: whether the server got the request, what the client saw, and that
// the proxy counted the fault. A dropped response must leave the client
// waiting (it gives up after its deadline), and so must a dropped request;
// a cut must reach it as a broken connection, not a timeout; a delay must
// hold the response or the request at least DelayBy.
func TestHTTPFaults(t *testing.T) {
	const delayBy = 300 * time.Millisecond
	for _, tc := range []struct {
		fault   faultproxy.Fault
		reached bool // the server got the request
		ok      bool // the client got the response
	}{
		{faultproxy.Pass, true, true},
		{faultproxy.DropResponse, true, false},
		{faultproxy.CutAtResponse, true, false},
		{faultproxy.CutNow, false, false},
		{faultproxy.Delay, true, true},
		{faultproxy.DelayRequest, true, true},
		{faultproxy.DropRequest, false, false},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			srv := newEcho(t)
			p := start(t, faultproxy.Config{Target: srv.Listener.Addr().String(), Protocol: faultproxy.HTTP,
				DelayBy: delayBy, Decide: faultOn("/faulted", tc.fault)})
			c := &http.Client{Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			if got := post(t, c, p, "/before", "a"); got != "POST /before a" {
				t.Fatalf("before: got %q", got)
			}
			begin := time.Now()
			if ok := postFaulted(t, c, p, tc.fault); ok != tc.ok {
				t.Fatalf("got a response: %v, want %v", ok, tc.ok)
			}
			took := time.Since(begin)
			arrived := srv.arrivals("/faulted")
			if (len(arrived) == 1) != tc.reached || len(arrived) > 1 {
				t.Fatalf("the server got the request %d times, want reached=%v", len(arrived), tc.reached)
			}
			switch tc.fault {
			case faultproxy.Delay:
				if took < delayBy {
					t.Errorf("the delayed response came after %v, want at least %v", took, delayBy)
				}
			case faultproxy.DelayRequest:
				if d := arrived[0].Sub(begin); d < delayBy {
					t.Errorf("the delayed request reached the server after %v, want at least %v", d, delayBy)
				}
			}
			if n := p.Stats().Applied(tc.fault); n != 1 && tc.fault != faultproxy.Pass {
				t.Errorf("stats %+v: want the fault counted once", p.Stats())
			}
			if got := post(t, c, p, "/after", "c"); got != "POST /after c" {
				t.Errorf("after: got %q", got)
			}
		})
	}
}

// postFaulted posts "b" to /faulted and reports whether the echo came back.
// When it does not, the error must be a cut connection, or, for a dropped
// response or request, the client giving up (once the proxy dropped it).
func postFaulted(t testing.TB, c *http.Client, p *faultproxy.Proxy, f faultproxy.Fault) bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waits := f == faultproxy.DropResponse || f == faultproxy.DropRequest
	if waits {
		go cancelWhen(lost(p), cancel) // the client would wait for ever
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.Addr()+"/faulted", strings.NewReader("b"))
	resp, err := c.Do(req)
	if err != nil {
		if canceled := errors.Is(err, context.Canceled); canceled != waits {
			t.Errorf("got %v: want a timeout (here: the client giving up) for a dropped response or request, a cut connection otherwise", err)
		}
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "POST /faulted b" {
		t.Errorf("got %q", body)
	}
	return true
}

func post(t testing.TB, c *http.Client, p *faultproxy.Proxy, path, body string) string {
	t.Helper()
	resp, err := c.Post("http://"+p.Addr()+path, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return string(b)
}

// framingServer answers with each framing a response can have: chunked
// with a trailer (/chunked), no body (/nobody, /notmodified), delimited by
// the end of the connection (/close), or a Content-Length.
func framingServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d-%s;", i, body)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", fmt.Sprint(len(body)))
		case "/nobody":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		case "/close":
			w.Header().Set("Connection", "close")
			fmt.Fprintf(w, "bye %s", body)
		default:
			w.Header().Set("Content-Length", fmt.Sprint(len(body)+3))
			fmt.Fprintf(w, "ok %s", body)
		}
	}))
}

// TestHTTPFraming sends many requests over one keep-alive connection, of
// every framing the proxy must follow to find where a message ends:
// Content-Length and chunked bodies both ways (with a trailer), HEAD, 204
// and 304 responses without a body, Expect: 100-continue, and a response
// delimited by the end of the connection. Every body must come back
// whole, on the one connection, and the proxy must see every request.
func TestHTTPFraming(t *testing.T) {
	srv := framingServer()
	defer srv.Close()
	var conns sync.Map
	p := start(t, faultproxy.Config{Target: srv.Listener.Addr().String(), Protocol: faultproxy.HTTP,
		Trace: func(r faultproxy.Request, _ faultproxy.Fault) { conns.Store(r.Conn, true) }})
	// The client sends a body announced with Expect: 100-continue only
	// once the 100 comes back (or after an hour): the proxy must relay it.
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Hour}, Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	big := strings.Repeat("x", 1<<20)
	do := func(method, path, body string, chunked, expect bool) (*http.Response, string) {
		t.Helper()
		return send(t, c, method, "http://"+p.Addr()+path, body, chunked, expect)
	}
	requests := 0
	for i := range 5 {
		body := fmt.Sprintf("body%d", i)
		for _, chunked := range []bool{false, true} {
			if _, got := do("POST", "/plain", body, chunked, false); got != "ok "+body {
				t.Errorf("plain, chunked request %v: got %q", chunked, got)
			}
			resp, got := do("POST", "/chunked", body, chunked, false)
			if want := fmt.Sprintf("part0-%[1]s;part1-%[1]s;part2-%[1]s;", body); got != want || resp.Trailer.Get("X-Sum") != fmt.Sprint(len(body)) {
				t.Errorf("chunked response: got %q, trailer %v; want %q", got, resp.Trailer, want)
			}
			requests += 2
		}
		if resp, got := do("HEAD", "/plain", "", false, false); got != "" || resp.StatusCode != 200 {
			t.Errorf("HEAD: got %d %q", resp.StatusCode, got)
		}
		if resp, _ := do("GET", "/nobody", "", false, false); resp.StatusCode != http.StatusNoContent {
			t.Errorf("204: got %d", resp.StatusCode)
		}
		if resp, _ := do("GET", "/notmodified", "", false, false); resp.StatusCode != http.StatusNotModified {
			t.Errorf("304: got %d", resp.StatusCode)
		}
		if _, got := do("PUT", "/plain", big, false, true); got != "ok "+big {
			t.Errorf("100-continue: got %d bytes, want %d", len(got), len(big)+3)
		}
		requests += 4
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("the requests used %d connections, want 1 (keep-alive)", n)
	}
	if _, got := do("POST", "/close", "z", false, false); got != "bye z" {
		t.Errorf("close-delimited: got %q", got)
	}
	requests++
	if s := p.Stats(); s.Requests != int64(requests) {
		t.Errorf("the proxy saw %d requests, want %d", s.Requests, requests)
	}
}

// send sends a request and reads the whole response. A chunked request
// has no length known in advance; expect asks for 100-continue.
func send(t testing.TB, c *http.Client, method, url, body string, chunked, expect bool) (*http.Response, string) {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if chunked {
		r = io.MultiReader(strings.NewReader(body)) // no length known: sent chunked
	}
	req, _ := http.NewRequest(method, url, r)
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, string(b)
}

// TestHTTPDropSilences pipelines three requests on one raw connection and
// drops the second one's response: the first response arrives, then
// nothing, although the server got all three; the third response must
// never be delivered in the second's place.
func TestHTTPDropSilences(t *testing.T) {
	srv := newEcho(t)
	p := start(t, faultproxy.Config{Target: srv.Listener.Addr().String(), Protocol: faultproxy.HTTP,
		Decide: faultOn("/2", faultproxy.DropResponse)})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(c, "POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d", i, i)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "POST /1 1" {
		t.Fatalf("first response: got %q", b)
	}
	eventually(t, "the response dropped", lost(p))
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after the dropped response: read %d bytes, %v; want nothing (a timeout)", n, err)
	}
	if got := len(srv.arrivals("/2")); got != 1 {
		t.Errorf("the server got the dropped request %d times, want 1", got)
	}
}
