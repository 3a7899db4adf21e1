package faultproxy

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzHTTPForwarding feeds arbitrary bytes to the proxy's reading of HTTP
// messages, as requests and as responses: whatever it forwards must be
// exactly a prefix of what it read (nothing rewritten, nothing reordered),
// and it must never panic.
func FuzzHTTPForwarding(f *testing.F) {
	for _, s := range []string{
		"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nto the end",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, request bool) {
		var out bytes.Buffer
		r, w := bufio.NewReader(bytes.NewReader(data)), bufio.NewWriter(&out)
		for {
			m, err := readHead(r)
			if err != nil {
				break
			}
			status := 200
			if !request && len(m.start) > 1 && len(m.start[1]) == 3 {
				status = int(m.start[1][0]-'0')*100 + int(m.start[1][1]-'0')*10 + int(m.start[1][2]-'0')
			}
			kind, n, err := framing(m, request, "POST", status)
			if err != nil {
				break
			}
			w.Write(m.raw)
			if copyBody(w, r, kind, n) != nil {
				break
			}
		}
		w.Flush()
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("forwarded %q, which does not begin %q", out.Bytes(), data)
		}
	})
}
