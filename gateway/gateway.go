// Package gateway is weft's HTTP gateway: the Go SDK (package client)
// behind an HTTP API, for users without it. PUT /v1/blobs stores a blob,
// charged to the caller's own client token; GET /v1/blobs/{id} serves its
// bytes once they have passed the consistent-read check (a single Range:
// the slivers that hold it, each checked against its hash); GET
// /v1/blobs/{id}/status serves its registry entry; POST
// /v1/blobs/{id}/extend extends its lifetime. Every store makes the
// caller's blob object: GET /v1/objects/{object} serves its bytes with
// its attributes as headers, …/info the object, DELETE (its owner's)
// deletes it, PUT …/attributes edits them. GET /v1/api serves the API's
// OpenAPI description (openapi.json). Errors are JSON, {"error": {"code",
// "status", "message", "details"}}; content-addressed bytes are cacheable
// for good; Config.CORSOrigins lets web pages call the API. `weft
// gateway` runs one; DESIGN.md says how it works.
//
// A Gateway is an http.Handler; Serve runs it on a listener with the
// configured timeouts and shuts it down gracefully:
//
//	g, err := gateway.New(gateway.Config{Control: voters, MaxBlobSize: gateway.DefaultMaxBlobSize, Epochs: 5})
//	if err != nil { … }
//	defer g.Close()
//	err = g.Serve(ctx, lis) // until ctx ends, then the requests in flight finish
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/netview"
)

// The gateway's defaults (`weft gateway`'s flags). A file is streamed in
// chunks, so its size is not the gateway's memory per request: that is
// about 2 × 4.5 × the chunk size (client.DefaultChunkSize); a plain blob,
// at most MaxWholeBlob, is held whole while it is checked.
const (
	DefaultMaxBlobSize int64 = 64 << 30
	// MaxWholeBlob bounds the plain blobs (not files) this gateway's own
	// SDK client reads, each held whole while it is checked: a file's
	// chunks are read one by one, but a plain blob is one unit.
	MaxWholeBlob int64 = 1 << 30
	// DefaultCacheSize keeps a few hundred MB of popular blobs: each GET
	// of one that is not kept costs a fetch, a decode and a re-encode.
	DefaultCacheSize int64 = 256 << 20
	// DefaultMaxInflight bounds the requests served at once. Each PUT or
	// GET of a file holds about 2 × 4.5 chunks, a GET of a plain blob not
	// cached about 5× the blob: lower it on a small machine.
	DefaultMaxInflight = 64
	// The default timeouts. A PUT's body may take ReadTimeout: 10 minutes
	// uploads a 1 GiB blob at 2 MB/s. An answer may take WriteTimeout
	// from when the gateway starts on it, the network read or store
	// included (a PUT: both, from its first byte).
	DefaultReadTimeout       = 10 * time.Minute
	DefaultWriteTimeout      = 10 * time.Minute
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	// DefaultShutdownTimeout is how long Serve lets requests in flight
	// finish once its context ends.
	DefaultShutdownTimeout = 30 * time.Second
)

const (
	// busyRetryAfter is the Retry-After, in seconds, of a 429: a slot
	// frees as soon as any request in flight ends.
	busyRetryAfter = "1"
	// retryAfter is the Retry-After, in seconds, sent with a 503: long
	// enough for a restarting node or a control-plane election, short
	// enough that a client does not give up on a blob that comes back.
	retryAfter = "5"
	// statusClientClosed (nginx's convention) answers a request whose
	// caller went away, or half-closed its connection (net/http cannot
	// tell the two apart), before the answer was ready: it keeps the log
	// and the metrics apart from the gateway's own errors, and is written
	// like any other status — a handler that wrote none would have
	// net/http send an empty 200.
	statusClientClosed = 499
	// maxRequestEpochs bounds ?epochs= so that the end epoch the SDK
	// computes (current + epochs) cannot overflow.
	maxRequestEpochs = 1 << 32
)

// Config configures a Gateway: `weft gateway`'s flags, field for field.
type Config struct {
	// Control lists the gRPC addresses of the control-plane voters the
	// gateway's SDK client dials (--control), with DialOptions (the
	// transport credentials). Unused when Client is set.
	Control     []string
	DialOptions []grpc.DialOption
	// Client, if set, is the SDK client the gateway uses instead of one
	// of its own; the caller closes it. It should have no token of its
	// own (every write is charged to its caller's, client.WithToken) and
	// read plain blobs of no more than min(MaxBlobSize, MaxWholeBlob)
	// (client.Config.MaxBlobLength), as a GET spools a plain blob.
	Client *client.Client

	// MaxBlobSize is the largest file or blob stored or served (413
	// beyond it on a PUT, before the body is read when Content-Length
	// says so). A file is streamed, so memory does not grow with it; a
	// plain blob is held whole, and one over MaxWholeBlob is not served.
	// Required.
	MaxBlobSize int64
	// ChunkSize is the chunk size of the files PUTs store (0: the SDK
	// client's, client.DefaultChunkSize unless MaxBlobSize is smaller).
	// With the SDK's StoreParallel and ReadAhead (2 each) it bounds a
	// request's memory: about 2 × 4.5 × ChunkSize.
	ChunkSize int64
	// Epochs is a stored blob's lifetime unless the PUT says ?epochs=N.
	// Required.
	Epochs uint64
	// CacheSize bounds the bytes of recently read blobs kept for later
	// GETs (0: none).
	CacheSize int64
	// MaxInflight bounds the requests served at once; more are answered
	// 429 at once, their bodies unread (0: DefaultMaxInflight).
	MaxInflight int

	// ReadTimeout bounds the reading of a request, a PUT's whole body
	// included. WriteTimeout bounds each answer from when the gateway
	// starts on it; a PUT gets ReadTimeout + WriteTimeout in all. 0: none.
	ReadTimeout, WriteTimeout time.Duration
	// ReadHeaderTimeout and IdleTimeout are Serve's http.Server's (0:
	// as there).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// ShutdownTimeout is how long Serve lets requests in flight finish
	// once its context ends (0 or less: none is waited for).
	ShutdownTimeout time.Duration
	// TLSConfig, if set, makes Serve serve HTTPS with it.
	TLSConfig *tls.Config

	// CORSOrigins are the web origins ("https://app.example", scheme,
	// host and port as a browser sends them in Origin) whose pages may
	// call the API from a browser (--cors-origin); "*" allows any. None:
	// no CORS headers at all, and a preflight is refused (403). cors.go
	// says what is answered.
	CORSOrigins []string

	// SetMemoryLimit, if set, is given the Go soft memory limit the
	// gateway's requests in flight call for, each time it changes:
	// memoryBase (128 MiB) + CacheSize + each request's share (a PUT
	// about 10 × ChunkSize, a GET about 7 × its file's chunk or its plain
	// blob's length; memory.go says why). `weft gateway` passes
	// runtime/debug.SetMemoryLimit unless $GOMEMLIMIT is set: without a
	// limit Go lets the heap reach twice what is live. The limit is the
	// process's, so at most one Gateway of a process should set it.
	SetMemoryLimit func(bytes int64)

	// Logger receives a line for every request (nil: none).
	Logger *slog.Logger
	// Metrics, if set, receives the gateway's Prometheus metrics.
	Metrics prometheus.Registerer

	// UI serves the live status page (package netview): GET /ui/ and GET
	// /v1/network (gateway/ui.go). Its collector dials Control with
	// DialOptions itself, so UI needs Control even when Client is set.
	UI bool
}

// Gateway is the HTTP face of the Go SDK (DESIGN §8) for non-Go users. It
// is an http.Handler; Serve runs it on a listener.
type Gateway struct {
	cl      *client.Client
	ownCl   bool // cl was dialed by New: Close closes it
	cfg     Config
	mux     *http.ServeMux
	cache   *blobCache
	mem     *memoryLimit
	puts    atomic.Int64       // PUTs in flight (holdPut)
	metrics *gatewayMetrics    // nil when not configured
	slots   chan struct{}      // one per request in flight
	cors    *corsPolicy        // nil: no cross-origin requests
	view    *netview.Collector // the status page's (nil without Config.UI)
}

// New makes a gateway of cfg, dialing an SDK client to cfg.Control unless
// cfg.Client is set. Close releases it.
func New(cfg Config) (*Gateway, error) {
	if cfg.MaxBlobSize <= 0 {
		return nil, fmt.Errorf("gateway: the maximum blob size must be positive, got %d", cfg.MaxBlobSize)
	}
	if cfg.Epochs == 0 || cfg.Epochs > maxRequestEpochs {
		return nil, fmt.Errorf("gateway: epochs must be between 1 and %d, got %d", uint64(maxRequestEpochs), cfg.Epochs)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	cors, err := newCORSPolicy(cfg.CORSOrigins)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cl: cfg.Client, cfg: cfg, mux: http.NewServeMux(), cache: newBlobCache(cfg.CacheSize),
		slots: make(chan struct{}, cfg.MaxInflight), cors: cors,
	}
	if cfg.Metrics != nil {
		m, err := newGatewayMetrics(cfg.Metrics, g.cache)
		if err != nil {
			return nil, err
		}
		g.metrics = m
	}
	if g.cl == nil {
		// No Token: every write names its caller's (client.WithToken),
		// and one that did not would be refused rather than charged to
		// anyone.
		cl, err := client.New(client.Config{
			Control: cfg.Control, MaxBlobLength: uint64(min(cfg.MaxBlobSize, MaxWholeBlob)), Logger: cfg.Logger,
			DialOptions: cfg.DialOptions, ChunkSize: int(cfg.ChunkSize),
		})
		if err != nil {
			return nil, err
		}
		g.cl, g.ownCl = cl, true
	}
	g.mem = newMemoryLimit(cfg.SetMemoryLimit, cfg.CacheSize)
	if g.view, err = newStatusPage(cfg); err != nil {
		g.Close()
		return nil, err
	}
	g.routes()
	return g, nil
}

// Close closes the SDK client New dialed (not one given in Config.Client).
func (g *Gateway) Close() error {
	var errs []error
	if g.ownCl {
		errs = append(errs, g.cl.Close())
	}
	errs = append(errs, g.closeStatusPage())
	return errors.Join(errs...)
}

// Serve serves the gateway on lis (over TLS with Config.TLSConfig) until
// ctx ends or the server fails, then stops accepting connections and lets
// the requests in flight finish within Config.ShutdownTimeout. It closes
// lis, and returns nil after a clean shutdown.
func (g *Gateway) Serve(ctx context.Context, lis net.Listener) error {
	log := g.cfg.Logger
	srv := &http.Server{
		Handler: g,
		// Headers are small and come at once; a PUT's body gets
		// ReadTimeout, so a trickled one is cut off rather than hold a
		// connection (and a MaxInflight slot) for good. The write
		// deadline is the handler's (setDeadlines): a PUT's answer
		// comes after its body and the store.
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.ReadTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Requests in flight get their own context, cancelled only when
		// the caller goes away, so Shutdown lets them finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if g.cfg.TLSConfig != nil {
		// HTTPS (with client certificates required if the config says so).
		srv.TLSConfig = g.cfg.TLSConfig
		lis = tls.NewListener(lis, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("gateway listening", "addr", lis.Addr().String(), "control", g.cfg.Control, "max_blob_size", g.cfg.MaxBlobSize, "epochs", g.cfg.Epochs,
		"max_inflight", g.cfg.MaxInflight, "read_timeout", g.cfg.ReadTimeout, "write_timeout", g.cfg.WriteTimeout)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// The server stopped by itself.
	}
	log.Info("gateway stopping: finishing requests in flight", "timeout", g.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, serveErr)
	}
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shutting down: %w", err))
		srv.Close()
	}
	return errors.Join(errs...)
}

// ServeHTTP serves the API, logging every request and counting it.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	// Every answer, errors and 429s included, so that a page allowed to
	// call the API can read why it failed.
	g.cors.setHeaders(rec.Header(), r)
	g.serve(rec, r)
	rec.answerHeldError(r)
	if !rec.wroteHeader {
		// Every path answers explicitly; were one to forget, net/http
		// would send an empty 200, which a PUT's caller takes for success.
		writeError(rec, r, http.StatusInternalServerError, errors.New("the gateway wrote no answer (a bug)"))
	}
	g.log(rec, r, time.Since(start))
	if rec.abort {
		// net/http closes the connection without finishing the body.
		panic(http.ErrAbortHandler)
	}
}

// serve answers one request if a slot is free, and 429 if none is.
// OPTIONS takes no slot: it is answered from the route table alone, so a
// busy gateway still answers a browser's preflight (and then the request
// itself 429, which the page can read).
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		g.setDeadlines(w, r)
		g.mux.ServeHTTP(w, r)
		return
	}
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		// The body is not read: closing the connection afterwards spares
		// the server draining it.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", busyRetryAfter)
		writeError(w, r, http.StatusTooManyRequests, fmt.Errorf("the gateway serves %d requests at once (--max-inflight) and is busy; try again after Retry-After", g.cfg.MaxInflight))
		return
	}
	g.setDeadlines(w, r)
	g.mux.ServeHTTP(w, r)
}

// setDeadlines bounds how long the answer may take. The server's own
// ReadTimeout stays on the connection after a request is read, where the
// read that watches for the caller hanging up would hit it and cancel a
// request still being served: a request without a body has nothing more
// to read, so its read deadline is lifted (a PUT's once its body is in).
func (g *Gateway) setDeadlines(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	if g.cfg.WriteTimeout > 0 {
		d := g.cfg.WriteTimeout
		if r.Method == http.MethodPut {
			d += g.cfg.ReadTimeout // the body first, then the store
		}
		_ = rc.SetWriteDeadline(time.Now().Add(d)) // not supported: no deadline
	}
	if r.ContentLength == 0 {
		_ = rc.SetReadDeadline(time.Time{})
	}
}

// log writes the request log line and counts the request in the metrics.
func (g *Gateway) log(rec *recordingWriter, r *http.Request, elapsed time.Duration) {
	// ServeMux has set r.Pattern by now: a route label of bounded
	// cardinality, unlike the path with its blob ID.
	route := r.Pattern
	if route == "" {
		route = "none"
	}
	level := slog.LevelInfo
	if rec.status >= 500 && rec.status != statusClientClosed {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", rec.status),
		slog.Int64("bytes_in", rec.bodyIn(r)), slog.Int64("bytes_out", rec.written),
		slog.Duration("duration", elapsed), slog.String("remote", r.RemoteAddr),
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("err", rec.err.Error()))
	}
	g.cfg.Logger.LogAttrs(r.Context(), level, "http request", attrs...)
	if g.metrics != nil {
		g.metrics.observe(route, r.Method, rec.status, elapsed, rec.bodyIn(r), rec.written)
	}
}
