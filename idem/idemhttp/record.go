package idemhttp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// response is a stored response: what a replay writes.
type response struct {
	Status      int
	Header      http.Header
	Body        []byte
	BodyOmitted bool // the body was over WithMaxResponseBytes and was not stored
}

// The stored form, carried as the result of the key's claim record (which
// keeps it as raw bytes after its header):
//
//	"ih1"                              magic and format version
//	uvarint status
//	uvarint flags                      bit 0: body omitted
//	uvarint #headers, then per header: string name, uvarint #values, string values...
//	string body                        to the end: uvarint length, then bytes
//
// Headers are written in sorted order so equal responses encode equally.
const magic = "ih1"

const flagBodyOmitted = 1

func encodeResponse(r response) []byte {
	n := len(magic) + 3*binary.MaxVarintLen64 + len(r.Body)
	for k, vs := range r.Header {
		n += len(k) + 2*binary.MaxVarintLen64
		for _, v := range vs {
			n += len(v) + binary.MaxVarintLen64
		}
	}
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = binary.AppendUvarint(b, uint64(r.Status))
	var flags uint64
	if r.BodyOmitted {
		flags |= flagBodyOmitted
	}
	b = binary.AppendUvarint(b, flags)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range r.Header {
			if !yield(k) {
				return
			}
		}
	})
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(r.Header[k])))
		for _, v := range r.Header[k] {
			b = appendString(b, v)
		}
	}
	return appendString(b, string(r.Body))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShort = errors.New("truncated")

func decodeResponse(b []byte) (response, error) {
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return response{}, errors.New("not a stored response (bad magic)")
	}
	d := decoder{b: b[len(magic):]}
	status := d.uvarint()
	flags := d.uvarint()
	var r response
	if d.err == nil && (status < 100 || status > 999) {
		return response{}, fmt.Errorf("status %d out of range", status)
	}
	if d.err == nil && flags&^flagBodyOmitted != 0 {
		return response{}, fmt.Errorf("unknown flags %#x", flags)
	}
	r.Status, r.BodyOmitted = int(status), flags&flagBodyOmitted != 0
	nh := d.count()
	if nh > 0 {
		r.Header = make(http.Header, nh)
	}
	for range nh {
		k := d.string()
		nv := d.count()
		if d.err != nil {
			break
		}
		if _, dup := r.Header[k]; dup || k == "" {
			return response{}, fmt.Errorf("bad or repeated header name %q", k)
		}
		vs := make([]string, 0, nv)
		for range nv {
			vs = append(vs, d.string())
		}
		r.Header[k] = vs
	}
	body := d.string()
	switch {
	case d.err != nil:
		return response{}, d.err
	case len(d.b) != 0:
		return response{}, fmt.Errorf("%d bytes of trailing data", len(d.b))
	}
	if body != "" {
		r.Body = []byte(body)
	}
	return r, nil
}

// decoder reads the stored form; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left (each counted thing
// takes at least one byte), so a corrupt count cannot allocate much.
func (d *decoder) count() int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)) {
		d.err = errShort
	}
	if d.err != nil {
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
