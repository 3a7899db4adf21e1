package faultproxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/idemkit/idemkit/idem/idemtest/faultproxy"
)

// A proxy in front of an HTTP server cuts the connection of the second
// request when its response arrives: the server did the work, the client
// got an error. Decide picks the fault; without it the faults are drawn at
// random from the configured probabilities and the seed.
func Example() {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "done")
	}))
	defer srv.Close()

	p, err := faultproxy.Start(faultproxy.Config{
		Target:   srv.Listener.Addr().String(),
		Protocol: faultproxy.HTTP,
		Decide: func(r faultproxy.Request) faultproxy.Fault {
			if r.Seq == 2 {
				return faultproxy.CutAtResponse
			}
			return faultproxy.Pass
		},
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i := 1; i <= 3; i++ {
		resp, err := client.Post("http://"+p.Addr()+"/charge", "text/plain", strings.NewReader("x"))
		if err != nil {
			fmt.Printf("request %d: the connection was cut (the server has served %d)\n", i, served.Load())
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("request %d: %s\n", i, body)
	}
	fmt.Printf("cut at the response: %d\n", p.Stats().CutAtResponse)
	// Output:
	// request 1: done
	// request 2: the connection was cut (the server has served 2)
	// request 3: done
	// cut at the response: 1
}
