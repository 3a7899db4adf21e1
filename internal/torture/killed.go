package torture

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// RunKilled runs test, a test of this test binary, again in a child
// process with the variable env set to spec as JSON, and reports whether
// the child ended by SIGKILL (within a minute). The child's test reads
// spec from env, does its work, and has itself killed at the point under
// test (syscall.Kill of its own pid, from a transport or a connection the
// moment it is handed the request that must never leave). Its output is
// logged when it did not die so.
func RunKilled(t *testing.T, test, env string, spec any) (killed bool) {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+string(js))
	out, err := cmd.CombinedOutput()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && ctx.Err() == nil {
			return true
		}
	}
	t.Logf("child %s: %v\n%s", test, err, out)
	return false
}

// ReadLines returns the lines of the file at path: the side effects a
// killed child appended to it, one a line.
func ReadLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
