package cassandra_test

import (
	"encoding/binary"
	"io"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// proxy is a TCP proxy between the driver and Cassandra that understands
// just enough of the native protocol (v4 frames: a 9-byte header with the
// stream id, the opcode and the body length) to lose one request or one
// response on purpose, or, once made lossy, a random share of them.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    lossMode
	pending map[streamOf]lossMode // requests whose response is to be lost
	lost    chan struct{}         // one value per frame lost (while there is room)
	links   []*link
	control map[*link]bool // links that sent REGISTER: the driver's control connection
	random  *randomLoss    // nil: only what arm asks for
	drops   int            // responses dropped at random
	cuts    int            // connections cut at random
}

// randomLoss makes the proxy lose at random: of the EXECUTE requests on
// the driver's pool connections (never the control connection), it
// forwards every one, then drops a share of the responses and, for another
// share, closes the client's connection when the response comes.
type randomLoss struct {
	r         *mrand.Rand
	drop, cut float64
}

type streamOf struct {
	l      *link
	stream int16
}

type lossMode int

const (
	passAll          lossMode = iota
	dropResponse              // forward the next request, drop its response
	closeForResponse          // forward the next request; when its response comes, close the client's connection
	dropRequest               // never forward the next request
)

type link struct{ client, server net.Conn }

const (
	opQuery    = 0x07
	opExecute  = 0x0A
	opRegister = 0x0B
	opBatch    = 0x0D
)

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, pending: map[streamOf]lossMode{}, control: map[*link]bool{}, lost: make(chan struct{}, 16)}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) port() int {
	_, port, _ := net.SplitHostPort(p.addr())
	n, _ := strconv.Atoi(port)
	return n
}

// arm makes the proxy lose the next QUERY, EXECUTE or BATCH, or its response.
func (p *proxy) arm(m lossMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
}

// lossy makes the proxy lose at random from now on (see randomLoss), with
// probabilities drop and cut per EXECUTE request, from a seeded source.
func (p *proxy) lossy(seed uint64, drop, cut float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.random = &randomLoss{r: mrand.New(mrand.NewPCG(seed, seed>>1|1)), drop: drop, cut: cut}
}

// losses returns how many responses the random loss dropped and how many
// connections it cut.
func (p *proxy) losses() (drops, cuts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops, p.cuts
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.client.Close()
		l.server.Close()
	}
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		go p.pipe(l, true)
		go p.pipe(l, false)
	}
}

// pipe copies frames one way: client to server when up.
func (p *proxy) pipe(l *link, up bool) {
	src, dst := l.server, l.client
	if up {
		src, dst = l.client, l.server
	}
	defer func() {
		src.Close()
		dst.Close()
	}()
	header := make([]byte, 9)
	for {
		if _, err := io.ReadFull(src, header); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(header[5:9]))
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		stream, opcode := int16(binary.BigEndian.Uint16(header[2:4])), header[4]
		if !p.pass(l, up, stream, opcode) {
			continue
		}
		if _, err := dst.Write(append(header, body...)); err != nil {
			return
		}
	}
}

// pass decides whether a frame goes through.
func (p *proxy) pass(l *link, up bool, stream int16, opcode byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if up {
		if opcode == opRegister {
			p.control[l] = true
		}
		if p.random != nil && opcode == opExecute && !p.control[l] {
			switch x := p.random.r.Float64(); {
			case x < p.random.drop:
				p.pending[streamOf{l, stream}] = dropResponse
			case x < p.random.drop+p.random.cut:
				p.pending[streamOf{l, stream}] = closeForResponse
			}
			return true
		}
		if p.mode == passAll || (opcode != opQuery && opcode != opExecute && opcode != opBatch) {
			return true
		}
		m := p.mode
		p.mode = passAll
		if m == dropRequest {
			p.signalLost()
			return false
		}
		p.pending[streamOf{l, stream}] = m
		return true
	}
	m, ok := p.pending[streamOf{l, stream}]
	if !ok {
		return true
	}
	delete(p.pending, streamOf{l, stream})
	p.signalLost()
	if p.random != nil {
		if m == closeForResponse {
			p.cuts++
		} else {
			p.drops++
		}
	}
	if m == closeForResponse {
		l.client.Close()
	}
	return false
}

func (p *proxy) signalLost() {
	select {
	case p.lost <- struct{}{}:
	default:
	}
}
