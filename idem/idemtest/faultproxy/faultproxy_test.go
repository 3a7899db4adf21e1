package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
)

// The tests of this package run one after the other (none calls
// t.Parallel), so that noGoroutines sees only the proxies of the test
// that calls it.

// start starts a proxy and closes it when the test ends.
func start(t testing.TB, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// eventually waits, up to a generous bound, until cond holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after 20s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cancelWhen calls cancel once cond holds, or after a generous bound (the
// test then fails on its counts).
func cancelWhen(cond func() bool, cancel func()) {
	defer cancel()
	for deadline := time.Now().Add(20 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// lost reports whether p has dropped a response or a request.
func lost(p *faultproxy.Proxy) func() bool {
	return func() bool { s := p.Stats(); return s.Dropped+s.DroppedRequests > 0 }
}

// noGoroutines fails t if a goroutine of the proxy package is still
// running. A goroutine that has just signalled its end may take a moment to
// go, so it waits (boundedly) before failing.
func noGoroutines(t testing.TB) {
	t.Helper()
	var stacks []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks = buf[:runtime.Stack(buf, true)]
		if !bytes.Contains(stacks, []byte("idemtest/faultproxy.")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for g := range strings.SplitSeq(string(stacks), "\n\n") {
		if strings.Contains(g, "idemtest/faultproxy.") {
			t.Errorf("a goroutine of the proxy outlived it:\n%s", g)
		}
	}
}

// TestStartRejects: invalid configurations fail Start with an error.
func TestStartRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  faultproxy.Config
	}{
		{"no target", faultproxy.Config{Protocol: faultproxy.HTTP}},
		{"no protocol", faultproxy.Config{Target: "127.0.0.1:1"}},
		{"not loopback", faultproxy.Config{Target: "127.0.0.1:1", Protocol: faultproxy.HTTP, Listen: "0.0.0.0:0"}},
		{"probability above 1", faultproxy.Config{Target: "127.0.0.1:1", Protocol: faultproxy.HTTP, Drop: 1.5}},
		{"negative probability", faultproxy.Config{Target: "127.0.0.1:1", Protocol: faultproxy.HTTP, CutNow: -0.1}},
		{"sum above 1", faultproxy.Config{Target: "127.0.0.1:1", Protocol: faultproxy.HTTP, Drop: 0.6, Delay: 0.5}},
		{"negative lifetime", faultproxy.Config{Target: "127.0.0.1:1", Protocol: faultproxy.HTTP, Lifetime: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := faultproxy.Start(tc.cfg)
			if err == nil {
				p.Close()
				t.Fatalf("Start(%+v) succeeded, want an error", tc.cfg)
			}
			t.Log(err)
		})
	}
}

// TestLifetime: a proxy left open closes itself at the end of its
// Lifetime: Done is closed, an open connection (idle, or waiting for a
// response the proxy holds) is closed, and nobody can connect any more.
// The held response is provoked by a Delay far longer than the lifetime.
func TestLifetime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	p := start(t, faultproxy.Config{
		Target: srv.Listener.Addr().String(), Protocol: faultproxy.HTTP,
		Delay: 1, DelayBy: time.Hour, Lifetime: 300 * time.Millisecond,
	})
	idle, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + p.Addr() + "/held")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy did not close itself")
	}
	if err := <-errc; err == nil {
		t.Error("the held request got a response, want its connection closed")
	}
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: got %v, want io.EOF", err)
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Error("connected after the lifetime")
	}
	if s := p.Stats(); s.Delayed != 1 {
		t.Errorf("stats %+v, want 1 response delayed", s)
	}
	p.Close()
	noGoroutines(t)
}

// TestCloseEndsEverything: Close, with connections in every state (idle,
// a response delayed, a request held in Decide, a connection silenced by a
// dropped response), closes them all and leaves no goroutine behind; a
// second Close does nothing.
func TestCloseEndsEverything(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	held := make(chan struct{})
	var p *faultproxy.Proxy
	p = start(t, faultproxy.Config{
		Target: srv.Listener.Addr().String(), Protocol: faultproxy.HTTP, DelayBy: time.Hour,
		Decide: func(r faultproxy.Request) faultproxy.Fault {
			switch r.Path {
			case "/hold":
				close(held)
				<-p.Done()
			case "/drop":
				return faultproxy.DropResponse
			case "/delay":
				return faultproxy.Delay
			}
			return faultproxy.Pass
		},
	})
	var wg sync.WaitGroup
	for _, path := range []string{"/hold", "/drop", "/delay"} {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{}}
			if resp, err := c.Get("http://" + p.Addr() + path); err == nil {
				resp.Body.Close()
				t.Errorf("%s: got a response, want the connection closed", path)
			}
		})
	}
	idle, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	<-held
	eventually(t, "a response dropped and one delayed", func() bool { s := p.Stats(); return s.Dropped == 1 && s.Delayed == 1 })
	p.Close()
	p.Close()
	wg.Wait()
	noGoroutines(t)
}

// seeded sends n POSTs /0, /1, ... one after the other through a new proxy
// with the seed, faults paused for the requests where pause says so, and
// returns the fault each request got. Every cut must reach the client as
// an error, and only cuts.
func seeded(t *testing.T, srv *httptest.Server, n int, seed uint64, pause func(i int) bool) []faultproxy.Fault {
	var mu sync.Mutex
	got := make([]faultproxy.Fault, n)
	fault := func(i int) faultproxy.Fault {
		mu.Lock()
		defer mu.Unlock()
		return got[i]
	}
	p := start(t, faultproxy.Config{
		Target: srv.Listener.Addr().String(), Protocol: faultproxy.HTTP, Seed: seed,
		CutAtResponse: 0.15, CutNow: 0.15, Delay: 0.1, DelayRequest: 0.1, DelayBy: time.Millisecond,
		Trace: func(r faultproxy.Request, f faultproxy.Fault) {
			i, err := strconv.Atoi(strings.TrimPrefix(r.Path, "/"))
			if err != nil || i != int(r.Seq-1) {
				t.Errorf("request %q has Seq %d", r.Path, r.Seq)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			got[i] = f
		},
	})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for i := range n {
		p.SetFaults(!pause(i))
		// POST: net/http does not send it again on a reused connection
		resp, err := c.Post("http://"+p.Addr()+"/"+strconv.Itoa(i), "text/plain", strings.NewReader("x"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if f := fault(i); (f == faultproxy.CutNow || f == faultproxy.CutAtResponse) != (err != nil) {
			t.Errorf("request %d: fault %v, client error %v", i, f, err)
		}
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestDecisionsFollowTheSeed: sequential requests on one client through
// two proxies with the same seed get the same fault each, request by
// request, even when one of them pauses its faults for a while (the
// requests seen meanwhile pass); another seed gives another sequence. The
// faults are real (cuts and delays), so a client's reconnections are part
// of what must not perturb the sequence.
func TestDecisionsFollowTheSeed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	defer srv.Close()
	const n = 120
	always := func(int) bool { return false }
	a := seeded(t, srv, n, 42, always)
	b := seeded(t, srv, n, 42, func(i int) bool { return i >= 40 && i < 80 })
	c := seeded(t, srv, n, 43, always)
	count := map[faultproxy.Fault]int{}
	for i := range n {
		count[a[i]]++
		paused := i >= 40 && i < 80
		if want := a[i]; paused && b[i] != faultproxy.Pass || !paused && b[i] != want {
			t.Errorf("request %d: seed 42 gave %v, then %v (paused %v)", i, a[i], b[i], paused)
		}
	}
	if len(count) < 5 {
		t.Errorf("faults drawn: %v, want every kind", count)
	}
	if slices.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same decisions")
	}
}
