package testenv

import (
	"crypto/rand"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// RequireServers reports whether IDEM_REQUIRE_SERVERS is set to 1 (or true): then a test
// that finds no server fails instead of skipping. CI sets it, so that a run in which every
// integration test skipped cannot look green.
func RequireServers() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("IDEM_REQUIRE_SERVERS"))) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// unavailable skips t with the reason, or fails it when RequireServers.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if RequireServers() {
		t.Fatalf("%s (IDEM_REQUIRE_SERVERS=1 turns this skip into a failure)", reason)
	}
	t.Skip(reason)
}

// maxNameLen is the longest unquoted CQL identifier Cassandra accepts for a keyspace or table.
const maxNameLen = 48

// runID tells apart the names made by different test binaries (go test runs packages in
// parallel processes) and by successive runs against the same long-lived server.
var runID = func() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	s := strconv.FormatUint(n, 36)
	return strings.Repeat("0", 8-len(s)) + s // 40 random bits, always 8 base-36 digits
}()

var nameSeq atomic.Uint64

// UniqueName returns a name for a table or keyspace that no other test, test binary or run
// uses: prefix, then as much of t.Name() as fits, then a random run id and a counter. It is
// valid both as a DynamoDB table name and as an unquoted CQL identifier: it starts with a
// letter, has only [a-z0-9_], and is at most 48 characters long.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	p := strings.Trim(sanitize(prefix), "_")
	if p == "" || p[0] < 'a' || p[0] > 'z' {
		p = "t" + p
	}
	suffix := runID + strconv.FormatUint(nameSeq.Add(1), 36)
	// Keep the prefix and suffix whole; the test name gets what is left.
	if room := maxNameLen - len(suffix) - 1; len(p) > room-2 {
		p = strings.TrimRight(p[:room-2], "_")
	}
	name := p
	if room := maxNameLen - len(p) - len(suffix) - 2; room > 0 {
		if tn := testNamePart(t.Name(), room); tn != "" {
			name += "_" + tn
		}
	}
	return name + "_" + suffix
}

// testNamePart shortens a test name to at most room characters of [a-z0-9_], keeping the
// most specific part: the trailing subtest names that fit, else the leaf truncated. The
// "Test" every top-level name starts with is dropped.
func testNamePart(name string, room int) string {
	parts := strings.Split(strings.TrimPrefix(name, "Test"), "/")
	out := ""
	for i := len(parts) - 1; i >= 0; i-- {
		p := strings.Trim(sanitize(parts[i]), "_")
		if p == "" {
			continue
		}
		switch {
		case out == "":
			if len(p) > room {
				p = strings.TrimRight(p[:room], "_")
			}
			out = p
		case len(p)+1+len(out) <= room:
			out = p + "_" + out
		default:
			return out
		}
	}
	return out
}

// sanitize lowercases s and turns every run of characters outside [a-z0-9] into one '_'.
func sanitize(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
		} else if !under {
			b.WriteByte('_')
			under = true
		}
	}
	return b.String()
}

// splitList splits a comma-separated environment value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
