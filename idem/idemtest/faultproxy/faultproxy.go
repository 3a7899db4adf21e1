package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol is what the proxy reads on the wire to find requests and their
// responses.
type Protocol int

const (
	// CQL is Cassandra's native protocol, version 4 frames.
	CQL Protocol = iota + 1
	// HTTP is HTTP/1.1 over plain TCP.
	HTTP
)

// String names it, as test logs show it.
func (p Protocol) String() string {
	switch p {
	case CQL:
		return "CQL"
	case HTTP:
		return "HTTP"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// Fault is what the proxy does to one request.
type Fault int

const (
	// Pass forwards the request and delivers its response.
	Pass Fault = iota
	// DropResponse forwards the request and never delivers its response.
	DropResponse
	// CutAtResponse forwards the request; when its response arrives, the
	// proxy closes the client's connection instead of delivering it.
	CutAtResponse
	// CutNow closes the client's connection at once; the request is not
	// forwarded.
	CutNow
	// Delay forwards the request and delivers its response Config.DelayBy
	// after it arrives.
	Delay
	// DelayRequest holds the request for Config.DelayBy, then forwards it
	// and delivers its response.
	DelayRequest
	// DropRequest never forwards the request and leaves the connection
	// open: the client waits for an answer that cannot come.
	DropRequest
)

var faultNames = [...]string{"Pass", "DropResponse", "CutAtResponse", "CutNow", "Delay", "DelayRequest", "DropRequest"}

// String names it, as test logs show it.
func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// Request describes one faultable request to Config.Decide and Config.Trace.
type Request struct {
	Conn int64 // the client's connection, numbered from 1 in the order the proxy accepted them
	Seq  int64 // the request's number among the faultable requests, from 1, in the order the proxy read them

	// CQL only.
	Opcode byte  // 0x07 QUERY, 0x09 PREPARE, 0x0A EXECUTE, 0x0D BATCH
	Stream int16 // the frame's stream id, which its response carries too

	// HTTP only.
	Method string      // "POST"
	Path   string      // the request target as sent: "/", "/items?id=1"
	Header http.Header // the request's header fields (a copy): X-Amz-Target names a DynamoDB operation
}

// Config configures a Proxy. Only Target and Protocol are required.
type Config struct {
	Target   string   // host:port of the server
	Protocol Protocol // CQL or HTTP
	Listen   string   // the address to listen on; default "127.0.0.1:0". Loopback addresses only.

	// Seed makes the random faults reproducible (see the package
	// documentation for exactly what is deterministic). 0 picks a random
	// seed, which Proxy.Seed returns so that it can be logged.
	Seed uint64

	// The probability of each fault per faultable request. Each must be in
	// [0, 1] and their sum at most 1; the rest of the requests pass.
	Drop, CutAtResponse, CutNow, Delay, DelayRequest, DropRequest float64

	DelayBy  time.Duration // how long Delay and DelayRequest hold; default 1s
	Lifetime time.Duration // the proxy closes itself this long after Start; default 10m

	// Decide, when set, chooses each request's fault instead of the random
	// draw. It may block to hold the request: with CQL it runs on a
	// goroutine of its own, so the connection's other requests go on; with
	// HTTP it holds the connection, whose requests are in order anyway. A
	// Decide that blocks must also return once Proxy.Done is closed, since
	// Close waits for it; by then every connection is closed, so nothing
	// it returns is forwarded. It is not called while faults are off.
	Decide func(Request) Fault

	// Trace, when set, is told every faultable request and the fault chosen
	// for it (Pass while faults are off), before the fault is applied. It
	// may be called from several goroutines at once; Request.Seq orders the
	// calls.
	Trace func(Request, Fault)
}

// Stats counts what the proxy did. A fault is counted when it is applied:
// a dropped response when it arrived and was thrown away, a cut when the
// connection was closed, a delay when the hold began.
type Stats struct {
	Requests        int64 // faultable requests seen
	Dropped         int64 // responses dropped
	CutAtResponse   int64 // connections closed when a response arrived
	CutNow          int64 // connections closed instead of forwarding a request
	Delayed         int64 // responses delayed
	DelayedRequests int64 // requests delayed
	DroppedRequests int64 // requests never forwarded, their connection left open
	Refused         int64 // CQL connections refused for not speaking protocol v4
}

// Applied returns how many times fault f was applied (0 for Pass).
func (s Stats) Applied(f Fault) int64 {
	switch f {
	case DropResponse:
		return s.Dropped
	case CutAtResponse:
		return s.CutAtResponse
	case CutNow:
		return s.CutNow
	case Delay:
		return s.Delayed
	case DelayRequest:
		return s.DelayedRequests
	case DropRequest:
		return s.DroppedRequests
	}
	return 0
}

// Proxy is a running fault-injecting proxy. Its methods may be called from
// any goroutine.
type Proxy struct {
	cfg    Config
	seed   uint64
	ln     net.Listener
	ctx    context.Context // done when the proxy closes
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup // every goroutine the proxy started

	faultsOn atomic.Bool
	seq      atomic.Int64
	connSeq  atomic.Int64
	stats    struct{ requests, dropped, cutAtResponse, cutNow, delayed, delayedRequests, droppedRequests, refused atomic.Int64 }

	mu     sync.Mutex
	closed bool
	links  map[*link]struct{}
	timer  *time.Timer // Lifetime
}

// Defaults of Config.
const (
	DefaultDelayBy  = time.Second
	DefaultLifetime = 10 * time.Minute
)

// Start listens on cfg.Listen and forwards every connection to cfg.Target,
// injecting faults (on from the start; see SetFaults) until Close is called
// or cfg.Lifetime has passed.
func Start(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{cfg: cfg, seed: cfg.Seed, ln: ln, links: map[*link]struct{}{}}
	for p.seed == 0 {
		p.seed = mrand.Uint64()
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.faultsOn.Store(true)
	p.wg.Add(1)
	go p.accept()
	p.mu.Lock()
	p.timer = time.AfterFunc(cfg.Lifetime, func() { p.Close() })
	p.mu.Unlock()
	return p, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Target == "" {
		return cfg, errors.New("faultproxy: Config.Target is empty")
	}
	if cfg.Protocol != CQL && cfg.Protocol != HTTP {
		return cfg, fmt.Errorf("faultproxy: unknown %v", cfg.Protocol)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return cfg, fmt.Errorf("faultproxy: Config.Listen: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return cfg, fmt.Errorf("faultproxy: Config.Listen %q: want a loopback address", cfg.Listen)
	}
	sum := 0.0
	for _, x := range []float64{cfg.Drop, cfg.CutAtResponse, cfg.CutNow, cfg.Delay, cfg.DelayRequest, cfg.DropRequest} {
		if math.IsNaN(x) || x < 0 || x > 1 {
			return cfg, fmt.Errorf("faultproxy: fault probability %v: want 0 to 1", x)
		}
		sum += x
	}
	if sum > 1+1e-9 {
		return cfg, fmt.Errorf("faultproxy: fault probabilities add up to %v: want at most 1", sum)
	}
	if cfg.DelayBy < 0 || cfg.Lifetime < 0 {
		return cfg, errors.New("faultproxy: negative DelayBy or Lifetime")
	}
	if cfg.DelayBy == 0 {
		cfg.DelayBy = DefaultDelayBy
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	return cfg, nil
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port returns the port of Addr.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Seed returns the seed of the random faults: Config.Seed, or the one
// picked when it was 0.
func (p *Proxy) Seed() uint64 { return p.seed }

// SetFaults turns fault injection on (as Start leaves it) or off. While
// off, every request passes; requests still get their Seq.
func (p *Proxy) SetFaults(on bool) { p.faultsOn.Store(on) }

// Done returns a channel closed when the proxy closes, by Close or at the
// end of its Lifetime.
func (p *Proxy) Done() <-chan struct{} { return p.ctx.Done() }

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	s := &p.stats
	return Stats{
		Requests: s.requests.Load(), Dropped: s.dropped.Load(), CutAtResponse: s.cutAtResponse.Load(),
		CutNow: s.cutNow.Load(), Delayed: s.delayed.Load(), DelayedRequests: s.delayedRequests.Load(),
		DroppedRequests: s.droppedRequests.Load(), Refused: s.refused.Load(),
	}
}

// Close stops the listener, closes every connection (client and server
// sides) and returns once every goroutine of the proxy has ended. Calling it
// again does nothing more. Do not call it from Decide or Trace.
func (p *Proxy) Close() error {
	p.once.Do(func() {
		p.ln.Close()
		p.mu.Lock()
		p.closed = true
		links := p.links
		p.links = nil
		p.timer.Stop() // set under mu by Start before the timer can call Close
		p.mu.Unlock()
		for l := range links {
			l.close()
		}
		p.cancel() // after the links close: a Decide woken by Done forwards nothing

	})
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			if !p.wait(10*time.Millisecond, nil) { // out of file descriptors, say: try again
				return
			}
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects one client to the server and forwards between them.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	l := &link{p: p, id: p.connSeq.Add(1), client: client, closed: make(chan struct{})}
	if !p.track(l) {
		client.Close()
		return
	}
	defer p.untrack(l)
	defer l.close()
	d := net.Dialer{Timeout: 10 * time.Second}
	server, err := d.DialContext(p.ctx, "tcp", p.cfg.Target)
	if err != nil {
		return
	}
	if !l.setServer(server) {
		return
	}
	switch p.cfg.Protocol {
	case CQL:
		l.cql()
	case HTTP:
		l.http()
	}
}

func (p *Proxy) track(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.links[l] = struct{}{}
	return true
}

func (p *Proxy) untrack(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}

// decide numbers a faultable request and chooses its fault.
func (p *Proxy) decide(r Request) (Request, Fault) {
	r.Seq = p.seq.Add(1)
	p.stats.requests.Add(1)
	f := Pass
	if p.faultsOn.Load() {
		if p.cfg.Decide != nil {
			f = p.cfg.Decide(r)
		} else {
			f = p.draw(r.Seq)
		}
	}
	if p.cfg.Trace != nil {
		p.cfg.Trace(r, f)
	}
	return r, f
}

// draw is the random fault of request seq: a pure function of the seed and
// seq.
func (p *Proxy) draw(seq int64) Fault {
	x := mrand.New(mrand.NewPCG(p.seed, uint64(seq))).Float64()
	for i, q := range []float64{p.cfg.Drop, p.cfg.CutAtResponse, p.cfg.CutNow, p.cfg.Delay, p.cfg.DelayRequest, p.cfg.DropRequest} {
		if x < q {
			return Fault(i + 1)
		}
		x -= q
	}
	return Pass
}

// wait waits d, and reports false instead if the proxy or gone closes first.
func (p *Proxy) wait(d time.Duration, gone <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-gone:
		return false
	case <-p.ctx.Done():
		return false
	}
}

// goLater runs f on a goroutine the proxy waits for on Close.
func (p *Proxy) goLater(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// link is one client connection and its connection to the server.
type link struct {
	p      *Proxy
	id     int64
	client net.Conn

	mu       sync.Mutex
	server   net.Conn // nil until dialled
	isClosed bool
	closed   chan struct{} // closed by close

	clientMu, serverMu sync.Mutex // serialise writes to each side
}

func (l *link) setServer(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		s.Close()
		return false
	}
	l.server = s
	return true
}

// close closes both sides; the goroutines forwarding between them end.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		return
	}
	l.isClosed = true
	close(l.closed)
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

func (l *link) writeClient(b []byte) error {
	l.clientMu.Lock()
	defer l.clientMu.Unlock()
	_, err := l.client.Write(b)
	return err
}

func (l *link) writeServer(b []byte) error {
	l.serverMu.Lock()
	defer l.serverMu.Unlock()
	_, err := l.server.Write(b)
	return err
}
