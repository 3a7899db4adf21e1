package idemhttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/idemkit/idemkit/idem/idemhttp"
	"github.com/idemkit/idemkit/idem/memstore"
)

func ExampleMiddleware() {
	store := memstore.New() // or dynamo.New(...), cassandra.New(...)
	orders := 0
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order":%d}`, orders)
	})
	srv := httptest.NewServer(idemhttp.Middleware(store)(create))
	defer srv.Close()

	post := func(body string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`)
		resp, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Type") == "application/problem+json" {
			b = []byte("(problem+json)")
		}
		fmt.Printf("%d replayed=%q %s\n", resp.StatusCode, resp.Header.Get(idemhttp.ReplayedHeader), b)
	}
	post(`{"sku":"book"}`) // runs the handler
	post(`{"sku":"book"}`) // a retry: the same response, replayed
	post(`{"sku":"lamp"}`) // the same key for another request
	fmt.Println("orders created:", orders)
	// Output:
	// 201 replayed="" {"order":1}
	// 201 replayed="true" {"order":1}
	// 422 replayed="" (problem+json)
	// orders created: 1
}

func ExampleWithScope() {
	// Scope keys by the authenticated user rather than by the raw
	// Authorization header, so a retry after a token refresh still finds
	// its key.
	type userKey struct{}
	mw := idemhttp.Middleware(memstore.New(),
		idemhttp.WithRequired(true),
		idemhttp.WithScope(func(r *http.Request) (string, error) {
			user, ok := r.Context().Value(userKey{}).(string)
			if !ok {
				return "", fmt.Errorf("unauthenticated")
			}
			return user, nil
		}))
	_ = mw // wrap your handlers: mux.Handle("POST /orders", mw(createOrder))
}
