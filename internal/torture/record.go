package torture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Record is one line of evidence. Every process appends its records to a
// file of its own with one write(2) each (O_APPEND, no buffering), so a
// record written before a SIGKILL is in the file: the kernel has it.
type Record struct {
	T    int64  `json:"t"`             // wall clock when written, Unix ns (one clock: one machine)
	Ev   string `json:"ev"`            // EvStart, EvOK, EvFail, EvAnswer, EvSelfKill, EvTotal
	Kind string `json:"k,omitempty"`   // KindDo, KindOnce, KindAdd
	Key  string `json:"key,omitempty"` // Do key, Once event ID or counter key
	Op   string `json:"op,omitempty"`  // Add: the operation ID
	Task int    `json:"task"`          // the Task.Index, or -1 (recovery pass, totals)
	Proc string `json:"p"`             // the writing process: slot, generation, pid
	Rec  bool   `json:"rec,omitempty"` // written by the recovery pass

	// fn executions (EvStart, EvOK, EvFail) and the answers of the calls
	// that ran one (EvAnswer).
	Run   string `json:"run,omitempty"`   // the execution's nonce
	Att   int    `json:"att,omitempty"`   // Lease.Attempt at fn's start
	TK    bool   `json:"tk,omitempty"`    // a takeover at fn's start (Lease.Attempt above 1)
	Until int64  `json:"until,omitempty"` // Lease.Until at fn's start (EvStart) or end (EvOK, EvFail), Unix ns
	Res   string `json:"res,omitempty"`   // EvOK: fn's result; EvAnswer: the call's result

	// answers (EvAnswer) and totals (EvTotal)
	Err     string `json:"err,omitempty"` // error kind (ErrKind); "" is a success
	Msg     string `json:"msg,omitempty"` // the error's text, cut short
	Ran     bool   `json:"ran,omitempty"` // Do: fn ran in this call; Once: ran is true
	Applied bool   `json:"ap,omitempty"`  // Add: applied
	Total   int64  `json:"tot,omitempty"` // Add: the total it returned; EvTotal: the final total
}

// Events recorded.
const (
	EvStart    = "start"    // fn began (inside Do or Once, holding the lease)
	EvOK       = "ok"       // fn is about to return its result without error
	EvFail     = "fail"     // fn is about to return an error
	EvAnswer   = "ans"      // a Do, Once or Add call returned to its caller
	EvSelfKill = "selfkill" // fn is about to SIGKILL its own process
	EvTotal    = "total"    // a counter's final total, read after the recovery pass
)

// Log appends records to one file. It is safe for concurrent use: each
// record is one Write of the *os.File, which is one write(2).
type Log struct {
	f    *os.File
	proc string
}

// OpenLog opens path for appending records as process proc.
func OpenLog(path, proc string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("torture: opening the log: %w", err)
	}
	return &Log{f: f, proc: proc}, nil
}

// Write stamps r with the time and the process and appends it. A failed
// write panics: evidence that cannot be kept makes the run meaningless.
func (l *Log) Write(r Record) {
	r.T = time.Now().UnixNano()
	r.Proc = l.proc
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("torture: encoding a record: %v", err))
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		panic(fmt.Sprintf("torture: writing a record: %v", err))
	}
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// ReadLogs reads every *.log file in dir. A process killed inside a
// write(2) may leave its file's last line cut short (Linux stops a write
// at a page boundary when a fatal signal is pending); such a final line
// without its newline is ignored, and so a record can go missing only at
// the very end of a killed process's file. Any other malformed line is an
// error.
func ReadLogs(dir string) ([]Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var all []Record
	for _, f := range files {
		recs, err := readLog(f)
		if err != nil {
			return nil, err
		}
		all = append(all, recs...)
	}
	return all, nil
}

func readLog(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
		data = data[:i+1] // a torn last record
	}
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("torture: %s line %d: %w", path, n, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}
