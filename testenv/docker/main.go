// Command docker starts the test servers in Docker containers, through
// testcontainers-go, for machines that have a Docker engine, and prints
// the environment the project's tests read, like testenv/env.sh does for
// the servers testenv/ installs on loopback:
//
//	eval "$(make -s docker-env)"   # or: cd testenv/docker && go run .
//	make test
//	cd testenv/docker && go run . -down
//
// It is a module of its own so that testcontainers and the Docker client
// never enter the module graph of the library or of its users.
//
// The containers are named (idemkit-cassandra, idemkit-moto) and reused by
// a second run; -down removes them. Images: IDEM_CASSANDRA_IMAGE (default
// cassandra:5.0) and IDEM_DYNAMODB_IMAGE (default motoserver/moto:5.2.5,
// an open-source emulator; Amazon's DynamoDB Local is not used, its licence
// is not open source).
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// server is one container the tests use.
type server struct {
	name    string // container name
	image   string
	port    string // exposed port, "9042/tcp"
	proto   string // endpoint scheme: "http", or "" for host:port
	env     map[string]string
	files   []testcontainers.ContainerFile
	cmd     []string
	wait    wait.Strategy
	timeout time.Duration
	export  func(endpoint string) string // the shell lines for the tests
}

func main() {
	down := flag.Bool("down", false, "remove the containers instead of starting them")
	motoScript := flag.String("moto-script", "../python/moto_serialized.py", "moto_server with serialized requests (testenv/python), run in the moto container")
	flag.Parse()
	// The containers outlive this program; -down removes them.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	cli, err := engine()
	if err != nil {
		fail(err)
	}
	servers, err := specs(*motoScript)
	if err != nil {
		fail(err)
	}
	for _, s := range servers {
		if *down {
			err = remove(cli, s.name)
		} else {
			err = start(s)
		}
		if err != nil {
			fail(err)
		}
	}
}

// engine returns a client of the Docker engine that testcontainers would
// use (DOCKER_HOST, the Docker context, ~/.testcontainers.properties, the
// usual sockets), once it has answered a ping, so that a machine without
// Docker fails here with one clear line and not in the middle of a start.
func engine() (*testcontainers.DockerClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		_, err = cli.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("no Docker engine answers (set DOCKER_HOST or start Docker): %w", err)
	}
	return cli, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testenv/docker:", err)
	fmt.Fprintln(os.Stderr, "testenv/docker: without Docker, run the servers on loopback instead: testenv/up.sh, then eval \"$(testenv/env.sh)\"")
	os.Exit(1)
}

func specs(motoScript string) ([]server, error) {
	cass := server{
		name:  "idemkit-cassandra",
		image: cmp.Or(os.Getenv("IDEM_CASSANDRA_IMAGE"), "cassandra:5.0"),
		port:  "9042/tcp",
		env: map[string]string{
			// The same fast, small single node as testenv/cassandra.sh.
			"JVM_OPTS":       "-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.initial_token=0",
			"MAX_HEAP_SIZE":  "1024M",
			"HEAP_NEWSIZE":   "128M",
			"CASSANDRA_DC":   "datacenter1",
			"CASSANDRA_RACK": "rack1",
		},
		wait:    wait.ForAll(wait.ForListeningPort("9042/tcp"), wait.ForLog("Startup complete")),
		timeout: 5 * time.Minute,
		export:  func(ep string) string { return "export IDEM_CASSANDRA_HOSTS=" + ep },
	}
	moto := server{
		name:    "idemkit-moto",
		image:   cmp.Or(os.Getenv("IDEM_DYNAMODB_IMAGE"), "motoserver/moto:5.2.5"),
		port:    "5000/tcp",
		proto:   "http",
		wait:    wait.ForListeningPort("5000/tcp"),
		timeout: 3 * time.Minute,
		export: func(ep string) string {
			return "export IDEM_DYNAMODB_ENDPOINTS=moto=" + ep +
				" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test"
		},
	}
	if os.Getenv("IDEM_DYNAMODB_IMAGE") == "" {
		// Serialize moto's requests, as testenv/moto.sh does.
		script, err := os.ReadFile(motoScript)
		if err != nil {
			return nil, fmt.Errorf("reading moto's launcher: %w (run from testenv/docker, or pass -moto-script)", err)
		}
		moto.files = []testcontainers.ContainerFile{{
			Reader: bytes.NewReader(script), ContainerFilePath: "/idemkit/moto_serialized.py", FileMode: 0o644,
		}}
		moto.cmd = []string{"python3", "/idemkit/moto_serialized.py", "-H", "0.0.0.0", "-p", "5000"}
	}
	return []server{cass, moto}, nil
}

// start starts s, or finds it running by name, and prints its environment.
func start(s server) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithReuseByName(s.name),
		testcontainers.WithExposedPorts(s.port),
		testcontainers.WithEnv(s.env),
		testcontainers.WithWaitStrategyAndDeadline(s.timeout, s.wait),
	}
	if len(s.files) > 0 {
		opts = append(opts, testcontainers.WithFiles(s.files...))
	}
	if len(s.cmd) > 0 {
		opts = append(opts, testcontainers.WithEntrypoint(s.cmd...))
	}
	ctr, err := testcontainers.Run(ctx, s.image, opts...)
	if err != nil {
		return fmt.Errorf("starting %s (%s): %w", s.name, s.image, err)
	}
	ep, err := ctr.PortEndpoint(ctx, s.port, s.proto)
	if err != nil {
		return fmt.Errorf("endpoint of %s: %w", s.name, err)
	}
	fmt.Println(s.export(ep))
	return nil
}

// remove stops and removes the container named name, with its volumes; a
// container that is not there is not an error.
func remove(cli *testcontainers.DockerClient, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := cli.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case errdefs.IsNotFound(err):
		fmt.Fprintln(os.Stderr, "testenv/docker:", name, "is not there")
	case err != nil:
		return fmt.Errorf("removing %s: %w", name, err)
	default:
		fmt.Fprintln(os.Stderr, "testenv/docker: removed", name)
	}
	return nil
}
