package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/idemkit/idemkit/idem"
	"github.com/idemkit/idemkit/idem/idemhttp"
)

// Order is what the service keeps per order.
type Order struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Items    []Item `json:"items"`
	Total    int64  `json:"total"` // cents
	Status   string `json:"status"`
}

// Item is one line of an order.
type Item struct {
	SKU   string `json:"sku"`
	Qty   int    `json:"qty"`
	Price int64  `json:"price"`
}

// OrderRequest is the body of POST /orders.
type OrderRequest struct {
	Items []Item `json:"items"`
}

// Service is an HTTP orders service whose orders live in an idem.Store
// (Cassandra in production; any Store works). POST /orders and PATCH
// /orders/{id} require an Idempotency-Key and go through idemhttp, scoped by
// the authenticated customer.
type Service struct {
	Store  idem.Store
	Prefix string // of every key; tells runs on one keyspace apart
	// Tokens maps bearer tokens to customers.
	Tokens map[string]string
	// Logger receives the middleware's reports (default slog.Default()).
	Logger *slog.Logger

	mu      sync.Mutex
	created int             // orders written for the first time
	faults  map[string]bool // "crash <key>", "inventory-down <key>": one-shot faults
}

type customerKey struct{}

// Handler returns the service's routes.
func (s *Service) Handler() http.Handler {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	idempotent := idemhttp.Middleware(s.Store,
		idemhttp.WithRequired(true),
		idemhttp.WithKeyPrefix(s.Prefix+"http/"),
		idemhttp.WithFingerprint(idemhttp.FingerprintJSONBody),
		idemhttp.WithWait(5*time.Second),
		idemhttp.WithLogger(logger),
		idemhttp.WithScope(func(r *http.Request) (string, error) {
			c, ok := r.Context().Value(customerKey{}).(string)
			if !ok {
				return "", errors.New("unauthenticated")
			}
			return c, nil
		}))
	mux := http.NewServeMux()
	mux.Handle("POST /orders", idempotent(http.HandlerFunc(s.create)))
	mux.Handle("PATCH /orders/{id}", idempotent(http.HandlerFunc(s.update)))
	mux.HandleFunc("GET /orders/{id}", s.get)
	return s.authenticate(mux)
}

// authenticate puts the customer of the bearer token in the context.
func (s *Service) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, known := s.Tokens[token]
		if !ok || !known {
			http.Error(w, "unknown token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), customerKey{}, c)))
	})
}

// orderID derives an order's ID from its customer and idempotency key, so
// that a handler that ran again after a crash finds the order it wrote
// before instead of writing a second one.
func orderID(customer, key string) string {
	sum := sha256.Sum256([]byte(customer + "\x00" + key))
	return "ord_" + hex.EncodeToString(sum[:8])
}

func (s *Service) fault(name, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := name + " " + key
	if s.faults[k] {
		delete(s.faults, k)
		return true
	}
	return false
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	customer := r.Context().Value(customerKey{}).(string)
	key, _ := idemhttp.ParseKey(r.Header.Get("Idempotency-Key"), idemhttp.DefaultMaxKeyLength) // valid: the middleware checked it
	var req OrderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Items) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON body with items"})
		return
	}
	if s.fault("inventory-down", key) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "inventory service unavailable"})
		return
	}
	o := Order{ID: orderID(customer, key), Customer: customer, Items: req.Items, Status: "placed"}
	for _, it := range req.Items {
		o.Total += int64(it.Qty) * it.Price
	}
	v, _ := json.Marshal(o)
	_, err := s.Store.PutIfAbsent(r.Context(), s.Prefix+"orders/"+o.ID, v, 0)
	var ce *idem.ConflictError
	switch {
	case errors.As(err, &ce) && ce.Exists:
		// Written by an earlier run of this request that crashed before
		// answering: answer with that order.
		if err := json.Unmarshal(ce.Current.Value, &o); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "corrupt order"})
			return
		}
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "order store unavailable"})
		return
	default:
		s.mu.Lock()
		s.created++
		s.mu.Unlock()
	}
	if s.fault("crash", key) {
		panic(http.ErrAbortHandler) // the server dies before answering
	}
	w.Header().Set("Location", "/orders/"+o.ID)
	writeJSON(w, http.StatusCreated, o)
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) {
	customer := r.Context().Value(customerKey{}).(string)
	var patch struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(r.Body).Decode(&patch); err != nil || patch.Status != "cancelled" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `the only change is {"status":"cancelled"}`})
		return
	}
	var o Order
	_, err := idem.Update(r.Context(), s.Store, s.Prefix+"orders/"+r.PathValue("id"), func(v []byte, exists bool) ([]byte, error) {
		if !exists {
			return nil, idem.ErrNotFound
		}
		if err := json.Unmarshal(v, &o); err != nil {
			return nil, err
		}
		if o.Customer != customer {
			return nil, idem.ErrNotFound
		}
		if o.Status == "cancelled" {
			return nil, idem.ErrSkipUpdate
		}
		o.Status = "cancelled"
		return json.Marshal(o)
	})
	switch {
	case errors.Is(err, idem.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such order"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "order store unavailable"})
	default:
		writeJSON(w, http.StatusOK, o)
	}
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	customer := r.Context().Value(customerKey{}).(string)
	it, err := s.Store.Get(r.Context(), s.Prefix+"orders/"+r.PathValue("id"))
	var o Order
	if err == nil {
		err = json.Unmarshal(it.Value, &o)
	}
	switch {
	case errors.Is(err, idem.ErrNotFound) || (err == nil && o.Customer != customer):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such order"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "order store unavailable"})
	default:
		writeJSON(w, http.StatusOK, o)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
