package faultproxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"regexp"
	"sync"
	"time"
)

// Native protocol v4 opcodes the proxy looks at.
const (
	opError    = 0x00
	opQuery    = 0x07
	opPrepare  = 0x09
	opExecute  = 0x0A
	opRegister = 0x0B
	opBatch    = 0x0D
)

const (
	cqlHeaderLen    = 9
	cqlVersion      = 4
	cqlMaxBody      = 256 << 20 // the protocol's limit
	cqlFlagCompress = 0x01
	cqlProtocolErr  = 0x000A
)

// driverStatement matches the statements drivers send for themselves: reads
// of the system keyspaces (peers, schema, local) and USE.
var driverStatement = regexp.MustCompile(`(?is)^\s*(use\s|.*\bfrom\s+"?system(_[a-z_]+)?"?\s*\.)`)

// cqlLink is the state of one CQL connection.
type cqlLink struct {
	*link
	mu      sync.Mutex
	pending map[int16]Fault // faults waiting for the response on a stream
}

func (l *link) cql() {
	c := &cqlLink{link: l, pending: map[int16]Fault{}}
	l.p.wg.Add(1)
	go func() {
		defer l.p.wg.Done()
		defer l.close()
		c.down()
	}()
	c.up()
}

// readFrame reads one frame: the 9-byte header and the body.
func readFrame(r io.Reader) ([]byte, error) {
	var h [cqlHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[5:9])
	if n > cqlMaxBody {
		return nil, fmt.Errorf("faultproxy: CQL frame body of %d bytes", n)
	}
	f := make([]byte, cqlHeaderLen+int(n))
	copy(f, h[:])
	if _, err := io.ReadFull(r, f[cqlHeaderLen:]); err != nil {
		return nil, err
	}
	return f, nil
}

func frameStream(f []byte) int16 { return int16(binary.BigEndian.Uint16(f[2:4])) }

// up forwards the client's frames to the server, applying faults.
func (c *cqlLink) up() {
	control := false
	for first := true; ; first = false {
		f, err := readFrame(c.client)
		if err != nil {
			return
		}
		if first && f[0] != cqlVersion {
			c.refuse(f)
			return
		}
		op := f[4]
		if op == opRegister {
			control = true
		}
		if control || !faultable(f) {
			if c.writeServer(f) != nil {
				return
			}
			continue
		}
		r := Request{Conn: c.id, Opcode: op, Stream: frameStream(f)}
		if c.p.cfg.Decide != nil { // it may block: hold this request only
			c.p.goLater(func() {
				r, ft := c.p.decide(r)
				c.apply(r, ft, f)
			})
			continue
		}
		r, ft := c.p.decide(r)
		if !c.apply(r, ft, f) {
			return
		}
	}
}

// faultable reports whether frame f is a request the proxy may fault: a
// QUERY, PREPARE, EXECUTE or BATCH that is not the driver's own.
func faultable(f []byte) bool {
	switch f[4] {
	case opExecute, opBatch:
		return true
	case opQuery, opPrepare:
		if f[1]&cqlFlagCompress != 0 || len(f) < cqlHeaderLen+4 {
			return true
		}
		b := f[cqlHeaderLen:]
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return true
		}
		return !driverStatement.Match(b[4 : 4+n])
	}
	return false
}

// apply sends request frame f of r with fault ft; it reports whether the
// connection is still open.
func (c *cqlLink) apply(r Request, ft Fault, f []byte) bool {
	switch ft {
	case CutNow:
		c.p.stats.cutNow.Add(1)
		c.close()
		return false
	case DropRequest:
		c.p.stats.droppedRequests.Add(1)
		return true
	case DelayRequest:
		c.p.stats.delayedRequests.Add(1)
		c.p.goLater(func() {
			if c.p.wait(c.p.cfg.DelayBy, c.closed) {
				c.writeServer(f)
			}
		})
		return true
	case DropResponse, CutAtResponse, Delay:
		c.mu.Lock()
		c.pending[r.Stream] = ft // before the request goes: its response cannot come first
		c.mu.Unlock()
	}
	return c.writeServer(f) == nil
}

// down forwards the server's frames to the client, applying the faults
// waiting for them.
func (c *cqlLink) down() {
	for {
		f, err := readFrame(c.server)
		if err != nil {
			return
		}
		c.mu.Lock()
		ft, ok := c.pending[frameStream(f)]
		delete(c.pending, frameStream(f))
		c.mu.Unlock()
		switch {
		case !ok:
		case ft == DropResponse:
			c.p.stats.dropped.Add(1)
			continue
		case ft == CutAtResponse:
			c.p.stats.cutAtResponse.Add(1)
			return
		case ft == Delay:
			c.p.stats.delayed.Add(1)
			c.p.goLater(func() {
				if c.p.wait(c.p.cfg.DelayBy, c.closed) {
					c.writeClient(f)
				}
			})
			continue
		}
		if c.writeClient(f) != nil {
			return
		}
	}
}

// refuse answers a first frame that is not protocol v4 as a server that
// does not speak its version would: a protocol error (drivers that probe
// versions then try a lower one), and closes the connection.
func (c *cqlLink) refuse(f []byte) {
	c.p.stats.refused.Add(1)
	msg := fmt.Sprintf("Invalid or unsupported protocol version (%d): faultproxy reads native protocol v4 frames only; "+
		"connect with protocol version 4 (gocql: ClusterConfig.ProtoVersion = 4)", f[0]&0x7F)
	body := binary.BigEndian.AppendUint32(nil, cqlProtocolErr)
	body = binary.BigEndian.AppendUint16(body, uint16(len(msg)))
	body = append(body, msg...)
	v := f[0] & 0x7F
	if v < 3 { // 8-byte headers: answer in v4, which such a client will not read anyway
		v = cqlVersion
	}
	// In the client's own version, before any v5 framing begins: drivers
	// take an error in another version for a broken connection.
	h := []byte{0x80 | v, 0, f[2], f[3], opError, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[5:], uint32(len(body)))
	if c.writeClient(append(h, body...)) != nil {
		return
	}
	// Let the client read the answer before the connection goes: stop
	// writing, and wait (boundedly) for it to hang up.
	if tc, ok := c.client.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c.client)
}
