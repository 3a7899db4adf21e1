// Package recordfmt is the claim record idem stores in a key's value: the
// record, its binary format and the reader of the first format, JSON. idem
// writes and reads it; idem/kernel shows it to tools (kernel.DescribeRecord)
// without exporting the format.
package recordfmt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status is the state of a claim record.
type Status string

// The states of a claim record.
const (
	StatusInProgress Status = "in_progress" // claimed; the owner is working
	StatusCompleted  Status = "completed"   // done; Result or Error is the answer
	StatusReleased   Status = "released"    // given up; the next claim takes it over
)

// Record is the value of a claimed key: who holds it, until when, for which
// request, and once completed, the answer. It is stored in Item.Value in
// the binary format below; records of the first format, JSON (the struct
// tags), are still read.
//
// Lifecycle: Claim writes an in-progress record (PutIfAbsent). The owner
// extends its lease and finally completes it or releases it, each a
// CompareAndSwap on its own version. A released record is a tombstone: the
// next claim takes it over by CompareAndSwap, so the key keeps one chain of
// versions and every earlier owner stays fenced. A claimer that finds an
// in-progress record whose lease has passed takes it over by CompareAndSwap
// on the version it saw, which fences the old owner out. A completed or
// released record lives until its TTL passes; then the key is free again,
// and its next record starts at a fresh version above all of them.
type Record struct {
	Status      Status       `json:"status"`
	Token       string       `json:"token"`            // unique to the claim that wrote the record
	LeaseUntil  time.Time    `json:"lease_until"`      // in progress: exclusive until then
	Fingerprint []byte       `json:"fp,omitempty"`     // the request's fingerprint, if any
	Result      []byte       `json:"result,omitempty"` // completed: the encoded result
	Error       *StoredError `json:"error,omitempty"`  // completed: a permanent error instead of a result
	Attempt     int          `json:"attempt"`          // 1, plus one per takeover
	CreatedAt   time.Time    `json:"created_at"`
	CompletedAt time.Time    `json:"completed_at,omitzero"`
}

// StoredError is a permanent error kept as the answer for a key.
type StoredError struct {
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
}

// The stored form of a record, format 1: a small header, then the result's
// bytes as they are, so a result costs its own size and no more.
//
//	byte     format: 0x01 (a JSON record, the first format, starts with '{')
//	byte     status: 'i' in progress, 'c' completed, 'r' released
//	uvarint  n, the length of the rest of the header
//	n bytes, the rest of the header:
//	  uvarint+bytes  token (length, then the bytes)
//	  time           lease until
//	  varint         attempt
//	  time           created at
//	  time           completed at
//	  uvarint+bytes  fingerprint
//	  byte           0: no error; 1: a permanent error, followed by
//	  uvarint+bytes    its code
//	  uvarint+bytes    its message
//	the rest: the result (completed with a result), raw
//
// A time is uvarint 0 for the zero time, otherwise uvarint 1 + its
// nanoseconds within the second, then varint its Unix seconds: every
// time.Time, nanosecond exact, location dropped. The encoding is
// deterministic (a Lease tells its own write by comparing bytes), and the
// decoder refuses anything else: an unknown format or status, no token, a
// length past the end, bytes left over in the header.
//
// A process that only knows the JSON format reads these records as corrupt:
// upgrade every process that shares a store before the new one writes.
const (
	formatBinary = 0x01
	formatJSON   = '{'
)

var statusCodes = [...]struct {
	s Status
	b byte
}{{StatusInProgress, 'i'}, {StatusCompleted, 'c'}, {StatusReleased, 'r'}}

// Encode returns the stored form of r. It panics on a status other than
// the three above: claims write only these.
func Encode(r Record) []byte {
	var sb byte
	for _, c := range statusCodes {
		if c.s == r.Status {
			sb = c.b
		}
	}
	if sb == 0 {
		panic(fmt.Sprintf("idem: encoding a record of status %q", r.Status)) // claims write only these
	}
	n := headerSize(r)
	b := make([]byte, 0, 2+binary.MaxVarintLen64+n+len(r.Result))
	b = append(b, formatBinary, sb)
	b = binary.AppendUvarint(b, uint64(n))
	b = appendBytes(b, r.Token)
	b = appendTime(b, r.LeaseUntil)
	b = binary.AppendVarint(b, int64(r.Attempt))
	b = appendTime(b, r.CreatedAt)
	b = appendTime(b, r.CompletedAt)
	b = appendBytes(b, r.Fingerprint)
	if r.Error == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendBytes(b, r.Error.Code)
		b = appendBytes(b, r.Error.Message)
	}
	return append(b, r.Result...)
}

// headerSize is the length of r's header after its length.
func headerSize(r Record) int {
	n := bytesSize(len(r.Token)) + timeSize(r.LeaseUntil) + varintSize(int64(r.Attempt)) +
		timeSize(r.CreatedAt) + timeSize(r.CompletedAt) + bytesSize(len(r.Fingerprint)) + 1
	if r.Error != nil {
		n += bytesSize(len(r.Error.Code)) + bytesSize(len(r.Error.Message))
	}
	return n
}

func appendBytes[T string | []byte](b []byte, s T) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(t.Nanosecond())+1)
	return binary.AppendVarint(b, t.Unix())
}

func bytesSize(n int) int { return uvarintSize(uint64(n)) + n }

func timeSize(t time.Time) int {
	if t.IsZero() {
		return 1
	}
	return uvarintSize(uint64(t.Nanosecond())+1) + varintSize(t.Unix())
}

func uvarintSize(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func varintSize(v int64) int {
	u := uint64(v) << 1 // zig-zag, as binary.AppendVarint
	if v < 0 {
		u = ^u
	}
	return uvarintSize(u)
}

// Decode parses a record written by Encode, or by the JSON encoding of the
// first format. The error says what is wrong with data; idem wraps it as
// ErrCorrupt with the key. The record's Result and Fingerprint share
// data's memory.
func Decode(data []byte) (Record, error) {
	var (
		r   Record
		err error
	)
	switch {
	case len(data) == 0:
		err = errors.New("empty record")
	case data[0] == formatBinary:
		r, err = decodeBinary(data)
	case data[0] == formatJSON:
		r, err = decodeJSON(data)
	default:
		err = fmt.Errorf("unknown record format 0x%02x", data[0])
	}
	if err == nil && r.Token == "" {
		err = errors.New("no owner token")
	}
	if err != nil {
		return Record{}, err
	}
	return r, nil
}

// decodeBinary parses a record of the binary format.
func decodeBinary(data []byte) (Record, error) {
	var r Record
	if len(data) < 2 {
		return r, errors.New("truncated header")
	}
	for _, c := range statusCodes {
		if c.b == data[1] {
			r.Status = c.s
		}
	}
	if r.Status == "" {
		return r, fmt.Errorf("unknown status 0x%02x", data[1])
	}
	n, k := binary.Uvarint(data[2:])
	if k <= 0 || n > uint64(len(data)-2-k) {
		return r, errors.New("truncated header")
	}
	h := &reader{b: data[2+k : 2+k+int(n)]}
	r.Token = string(h.bytes())
	r.LeaseUntil = h.time()
	r.Attempt = int(h.varint())
	r.CreatedAt = h.time()
	r.CompletedAt = h.time()
	r.Fingerprint = h.bytes()
	switch h.byte() {
	case 0:
	case 1:
		r.Error = &StoredError{Code: string(h.bytes())}
		r.Error.Message = string(h.bytes())
	default:
		h.fail("unknown error flag")
	}
	switch {
	case h.err != nil:
		return Record{}, h.err
	case len(h.b) > 0:
		return Record{}, fmt.Errorf("%d bytes left over in the header", len(h.b))
	}
	if rest := data[2+k+int(n):]; len(rest) > 0 {
		r.Result = rest[:len(rest):len(rest)]
	}
	return r, nil
}

// reader reads a header; its first error sticks, and reads after it give
// zero values.
type reader struct {
	b   []byte
	err error
}

func (h *reader) fail(what string) {
	if h.err == nil {
		h.err = errors.New(what)
	}
	h.b = nil
}

func (h *reader) byte() byte {
	if len(h.b) == 0 {
		h.fail("truncated header")
		return 0xff
	}
	c := h.b[0]
	h.b = h.b[1:]
	return c
}

func (h *reader) uvarint() uint64 {
	v, k := binary.Uvarint(h.b)
	if k <= 0 {
		h.fail("truncated header")
		return 0
	}
	h.b = h.b[k:]
	return v
}

func (h *reader) varint() int64 {
	v, k := binary.Varint(h.b)
	if k <= 0 {
		h.fail("truncated header")
		return 0
	}
	h.b = h.b[k:]
	return v
}

// bytes reads a length and that many bytes, which share the header's
// memory; nil for none.
func (h *reader) bytes() []byte {
	n := h.uvarint()
	if n > uint64(len(h.b)) {
		h.fail("a length past the end of the header")
		return nil
	}
	if n == 0 {
		return nil
	}
	s := h.b[:n:n]
	h.b = h.b[n:]
	return s
}

func (h *reader) time() time.Time {
	ns := h.uvarint()
	switch {
	case ns == 0:
		return time.Time{}
	case ns > 1e9:
		h.fail("nanoseconds out of range")
		return time.Time{}
	}
	sec := h.varint()
	if h.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(ns-1)).UTC()
}

// decodeJSON parses a record of the first format, JSON.
func decodeJSON(data []byte) (Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return Record{}, err
	}
	if dec.More() {
		return Record{}, errors.New("trailing data")
	}
	if r.Status != StatusInProgress && r.Status != StatusCompleted && r.Status != StatusReleased {
		return Record{}, fmt.Errorf("unknown status %q", r.Status)
	}
	return r, nil
}

// String shows the record for a person debugging a key: its status, owner
// token, attempt and times, and the result or error. A result that is
// printable text is shown as it is, any other in hex; long ones are cut.
func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s token=%s attempt=%d created=%s", r.Status, printable(r.Token), r.Attempt, showTime(r.CreatedAt))
	if !r.LeaseUntil.IsZero() {
		fmt.Fprintf(&b, " lease_until=%s", showTime(r.LeaseUntil))
	}
	if !r.CompletedAt.IsZero() {
		fmt.Fprintf(&b, " completed=%s", showTime(r.CompletedAt))
	}
	if r.Fingerprint != nil {
		fmt.Fprintf(&b, " fp=%x", r.Fingerprint)
	}
	if r.Error != nil {
		fmt.Fprintf(&b, " error=%q code=%q", r.Error.Message, r.Error.Code)
	}
	if r.Result != nil {
		const most = 256
		res, cut := r.Result, ""
		if len(res) > most {
			res, cut = res[:most], "..."
		}
		fmt.Fprintf(&b, " result=(%d bytes) %s%s", len(r.Result), printable(string(res)), cut)
	}
	return b.String()
}

func showTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// printable is s quoted if it is printable text, else its hex.
func printable(s string) string {
	for _, c := range s {
		if c < ' ' || c == 0x7f || c == '\uFFFD' {
			return "0x" + hex.EncodeToString([]byte(s))
		}
	}
	return fmt.Sprintf("%q", s)
}

// LeasePassed reports whether an in-progress record's lease has passed at now.
func (r Record) LeasePassed(now time.Time) bool {
	return r.Status == StatusInProgress && !now.Before(r.LeaseUntil)
}
