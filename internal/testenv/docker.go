package testenv

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// dockerHealthy reports whether a Docker engine answers, checked once per test binary.
var dockerHealthy = sync.OnceValues(func() (ok bool, why string) {
	defer func() {
		// testcontainers panics on some broken Docker setups instead of returning an error.
		if r := recover(); r != nil {
			ok, why = false, fmt.Sprint("testcontainers: ", r)
		}
	}()
	p, err := testcontainers.ProviderDocker.GetProvider()
	if err != nil {
		return false, err.Error()
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		return false, err.Error()
	}
	return true, ""
})

// containerSpec describes a server image and how to wait for it.
type containerSpec struct {
	image   string
	port    string // exposed port, "9042/tcp"
	proto   string // endpoint scheme: "http", or "" for host:port
	env     map[string]string
	files   []testcontainers.ContainerFile
	cmd     []string // replaces the image's entrypoint when set
	wait    wait.Strategy
	timeout time.Duration
}

type containerResult struct {
	endpoint string
	err      error
}

var (
	containersMu sync.Mutex
	containers   = map[string]*containerResult{} // by image
)

// sharedContainer starts spec.image once per test binary and returns its endpoint. The
// container outlives the test that started it: the testcontainers reaper removes it when the
// test binary exits. A failed start is remembered, so later tests fail fast with the same error.
func sharedContainer(t testing.TB, spec containerSpec) (string, error) {
	t.Helper()
	containersMu.Lock()
	defer containersMu.Unlock()
	if r, ok := containers[spec.image]; ok {
		return r.endpoint, r.err
	}
	t.Logf("testenv: starting container %s (shared by this test binary)", spec.image)
	r := &containerResult{}
	containers[spec.image] = r
	ctx, cancel := context.WithTimeout(context.Background(), spec.timeout)
	defer cancel()
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts(spec.port),
		testcontainers.WithEnv(spec.env),
		testcontainers.WithWaitStrategyAndDeadline(spec.timeout, spec.wait),
	}
	if len(spec.files) > 0 {
		opts = append(opts, testcontainers.WithFiles(spec.files...))
	}
	if len(spec.cmd) > 0 {
		opts = append(opts, testcontainers.WithEntrypoint(spec.cmd...))
	}
	ctr, err := testcontainers.Run(ctx, spec.image, opts...)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.Background())
		}
		r.err = fmt.Errorf("testenv: starting container %s: %w", spec.image, err)
		return "", r.err
	}
	r.endpoint, r.err = ctr.PortEndpoint(ctx, spec.port, spec.proto)
	if r.err != nil {
		r.err = fmt.Errorf("testenv: endpoint of container %s: %w", spec.image, r.err)
	}
	return r.endpoint, r.err
}
