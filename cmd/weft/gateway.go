package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/gateway"
)

// gatewayOptions are `weft gateway`'s flags. The gateway itself (its API,
// limits, cache and status mapping) is package gateway: this command only
// parses the flags and starts it.
type gatewayOptions struct {
	listen          string
	control         []string
	token, file     string // deprecated, unused: callers send their own
	maxBlobSize     int64
	chunkSize       int64
	cacheSize       int64
	epochs          uint64
	metrics         metricsConfig
	shutdownTimeout time.Duration
	maxInflight     int
	readTimeout     time.Duration
	writeTimeout    time.Duration
	headerTimeout   time.Duration
	idleTimeout     time.Duration
	corsOrigins     []string
	ui              bool
}

// check refuses flag values the gateway cannot run with.
func (o *gatewayOptions) check() error {
	switch {
	case o.maxBlobSize <= 0:
		return fmt.Errorf("--max-blob-size must be positive, got %d", o.maxBlobSize)
	case o.chunkSize <= 0 || o.chunkSize > gateway.MaxWholeBlob:
		return fmt.Errorf("--chunk-size must be from 1 to %d, got %d", gateway.MaxWholeBlob, o.chunkSize)
	case o.epochs == 0:
		return errors.New("--epochs must be at least 1")
	case o.cacheSize < 0:
		return fmt.Errorf("--cache-size must be 0 or more, got %d", o.cacheSize)
	case o.maxInflight < 1:
		return fmt.Errorf("--max-inflight must be at least 1, got %d", o.maxInflight)
	}
	for name, d := range map[string]time.Duration{
		"--read-timeout": o.readTimeout, "--write-timeout": o.writeTimeout,
		"--read-header-timeout": o.headerTimeout, "--idle-timeout": o.idleTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", name, d)
		}
	}
	return nil
}

func newGatewayCommand() *cobra.Command {
	var o gatewayOptions
	control := []string{"127.0.0.1:7001"}
	if env := os.Getenv("WEFT_CONTROL"); env != "" {
		control = strings.Split(env, ",")
	}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Serve blobs over HTTP for non-Go users (PUT /v1/blobs, GET /v1/blobs/{id}, GET …/status, POST …/extend, /v1/objects/{object}; GET /v1/api describes it)",
		Long: "Runs an HTTP gateway in front of a weft network. PUT /v1/blobs stores the request body\n" +
			"and answers its blob ID and availability certificate; GET /v1/blobs/{id} answers the\n" +
			"blob's bytes once they have passed the consistent-read check; GET /v1/blobs/{id}/status\n" +
			"answers its registry entry; POST /v1/blobs/{id}/extend?epochs=N (or ?end_epoch=E)\n" +
			"extends the caller's object of it. Every PUT makes the caller's blob object\n" +
			"(?permanent=true, X-Weft-Attr-<key> headers, its Content-Type as an attribute):\n" +
			"GET /v1/objects/{object} answers its bytes with its attributes as headers, …/info\n" +
			"the object, DELETE deletes it and PUT …/attributes edits it (owner only).\n" +
			"A PUT, extend, DELETE or attributes PUT must carry the caller's own client token\n" +
			"(Authorization: Bearer <token>, from `weft admin client add`) and is charged to it:\n" +
			"401 without one, 403 if the control plane refuses it. Reads need no token.\n" +
			"Past --max-inflight requests at once the gateway answers 429 with Retry-After;\n" +
			"a PUT's body must arrive within --read-timeout, and every answer within\n" +
			"--write-timeout of the gateway starting on it (a PUT: --read-timeout + --write-timeout\n" +
			"in all). A PUT or extend that arrived whole is carried out even if its caller hangs up.\n\n" +
			"GET /v1/api answers the API's OpenAPI description. Errors are JSON:\n" +
			"{\"error\": {\"code\": 404, \"status\": \"NOT_FOUND\", \"message\": \"…\", \"details\": []}}.\n" +
			"A blob's bytes are cacheable for a year (their ID is their ETag); If-None-Match and\n" +
			"If-Match work on every GET and HEAD. --cors-origin lets web pages of those origins\n" +
			"(\"*\": any) call the API from a browser: preflights are answered and answers carry\n" +
			"Access-Control-Allow-Origin; without it there are no CORS headers.\n\n" +
			"With --ui (the default) it also serves the live status page at /ui/ and the network's\n" +
			"snapshot it polls at GET /v1/network (JSON; no token needed; --ui=false turns both off).\n\n" +
			"Memory: unless $GOMEMLIMIT is set, the gateway keeps Go's soft memory limit at what\n" +
			"its requests in flight hold: 128 MiB + --cache-size, plus about 10 × --chunk-size per\n" +
			"PUT and 7 × the chunk (or the plain blob) per GET, so that a request's peak memory is\n" +
			"about its own share rather than twice it. $GOMEMLIMIT (a fixed limit, or off) replaces it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runGateway(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	f.StringSliceVar(&o.control, "control", control, "gRPC addresses of control-plane voters ($WEFT_CONTROL, comma-separated)")
	f.StringVar(&o.token, "token", "", "unused: a PUT or extend is charged to the caller's own token (Authorization: Bearer)")
	f.StringVar(&o.file, "token-file", "", "unused, as --token")
	_ = f.MarkDeprecated("token", "the gateway no longer stores with a token of its own: callers send theirs (Authorization: Bearer <token>)")
	_ = f.MarkDeprecated("token-file", "the gateway no longer stores with a token of its own: callers send theirs (Authorization: Bearer <token>)")
	f.Int64Var(&o.maxBlobSize, "max-blob-size", gateway.DefaultMaxBlobSize, "largest file or blob stored or served, in bytes (a file is streamed; a plain blob, at most 1 GiB, is held whole)")
	f.Int64Var(&o.chunkSize, "chunk-size", client.DefaultChunkSize, "a PUT larger than this is stored as chunks of this size plus a manifest; a request holds about 2 × 4.5 × this")
	f.Uint64Var(&o.epochs, "epochs", client.DefaultEpochs, "lifetime in epochs of a stored blob (a PUT may ask for another with ?epochs=N)")
	f.Int64Var(&o.cacheSize, "cache-size", gateway.DefaultCacheSize, "bytes of recently read blobs kept in memory for later GETs (0: none; a blob over a quarter of it is not kept)")
	o.metrics.addFlags(f, "gateway")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", gateway.DefaultShutdownTimeout, "on SIGINT/SIGTERM, how long requests in flight may take to finish")
	f.IntVar(&o.maxInflight, "max-inflight", gateway.DefaultMaxInflight, "requests served at once; more get 429 with Retry-After (memory: about this × 9 × --chunk-size, plus the cache; a plain blob over the chunk size held whole)")
	f.DurationVar(&o.readTimeout, "read-timeout", gateway.DefaultReadTimeout, "time a request, a PUT's whole body included, may take to arrive (size it for the largest blob at the slowest caller's rate)")
	f.DurationVar(&o.writeTimeout, "write-timeout", gateway.DefaultWriteTimeout, "time an answer may take from when the gateway starts on it: the read or store and the sending (a PUT gets --read-timeout + this in all)")
	f.DurationVar(&o.headerTimeout, "read-header-timeout", gateway.DefaultReadHeaderTimeout, "time a request's headers may take to arrive")
	f.DurationVar(&o.idleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "time a keep-alive connection may wait for its next request")
	f.StringSliceVar(&o.corsOrigins, "cors-origin", nil, "web origins (scheme://host[:port]) whose pages may call the API from a browser (CORS), repeatable or comma-separated; \"*\" allows any; none: no CORS headers")
	f.BoolVar(&o.ui, "ui", true, "serve the live status page at /ui/ and its JSON at GET /v1/network (public, read-only: the committee, shard map, handover, challenges, blob counts)")
	return cmd
}

// runGateway checks the flags, starts the gateway and its metrics server,
// and serves until ctx ends (SIGINT/SIGTERM), letting requests in flight
// finish within --shutdown-timeout.
func runGateway(ctx context.Context, o gatewayOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	var control []string
	for _, a := range o.control {
		if a = strings.TrimSpace(a); a != "" {
			control = append(control, a)
		}
	}
	if len(control) == 0 {
		return errors.New("--control (or $WEFT_CONTROL) must name at least one control-plane voter")
	}
	log := slog.Default().With("component", "gateway")
	creds, err := dialCredentials(ctx)
	if err != nil {
		return err
	}
	cfg := gateway.Config{
		Control: control, DialOptions: []grpc.DialOption{creds},
		MaxBlobSize: o.maxBlobSize, ChunkSize: min(o.chunkSize, o.maxBlobSize), Epochs: o.epochs, CacheSize: o.cacheSize, MaxInflight: o.maxInflight,
		ReadTimeout: o.readTimeout, WriteTimeout: o.writeTimeout,
		ReadHeaderTimeout: o.headerTimeout, IdleTimeout: o.idleTimeout, ShutdownTimeout: o.shutdownTimeout,
		CORSOrigins: o.corsOrigins, Logger: log, UI: o.ui,
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Without a soft limit Go lets the heap reach twice what is
		// live before it collects: a 1 GiB PUT peaked at 1.3 GiB, and the
		// next request started from what it left resident. The gateway
		// keeps the limit at what its requests in flight hold (gateway
		// memory.go); an operator's $GOMEMLIMIT takes precedence. The
		// limit in place before is put back when the gateway stops (a
		// test runs it inside its own process).
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
		cfg.SetMemoryLimit = func(n int64) { debug.SetMemoryLimit(n) }
	}
	var reg *prometheus.Registry
	if o.metrics.addr != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		// Only a non-nil registry: a nil *Registry in the interface
		// would not compare equal to nil.
		cfg.Metrics = reg
	}
	// HTTPS with the process's certificate (and client certificates
	// required with --tls-client-ca).
	if cfg.TLSConfig, err = tlsOf(ctx).ServerConfig(); err != nil {
		return err
	}
	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	defer g.Close()

	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	if reg != nil {
		metrics, err := startMetrics(ctx, o.metrics, reg, log)
		if err != nil {
			lis.Close()
			return err
		}
		defer metrics.Close() // after the requests in flight (Serve's shutdown)
	}
	return g.Serve(ctx, lis)
}
