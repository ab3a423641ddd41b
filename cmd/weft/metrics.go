package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
)

// metricsServer serves a registry at /metrics on --metrics-addr. A process
// that serves TLS serves its metrics over TLS too, with the same
// certificate and, with --tls-client-ca, only to clients that present one
// signed by that CA: metrics name nodes, shards and traffic, and a network
// that encrypts its API should not publish them in the clear.
type metricsServer struct {
	srv *http.Server
	lis net.Listener
}

// metricsConfig is what --metrics-addr and --pprof ask for.
type metricsConfig struct {
	addr string
	// pprof also serves Go's profiler at /debug/pprof/ (heap, CPU,
	// goroutines): what an operator needs to say where a node's memory
	// goes. Off by default — a CPU profile costs the process while it runs —
	// and behind the same TLS and client-certificate rules as /metrics.
	pprof bool
	// mount, if set, adds routes of the process's own to the listener
	// (`weft control --ui`: the status page), behind the same rules.
	mount func(*http.ServeMux)
}

// addFlags registers --metrics-addr and --pprof; role names the process in
// the help text.
func (c *metricsConfig) addFlags(f *pflag.FlagSet, role string) {
	f.StringVar(&c.addr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, https:// when the "+role+" serves TLS (empty: off)")
	f.BoolVar(&c.pprof, "pprof", false, "also serve Go's profiler at /debug/pprof/ on --metrics-addr (heap, CPU, goroutines)")
}

// startMetrics binds the address before it returns (a taken port fails the
// command at start, not in a log line later) and serves in the background;
// Close stops it.
func startMetrics(ctx context.Context, c metricsConfig, g prometheus.Gatherer, log *slog.Logger) (*metricsServer, error) {
	addr := c.addr
	cfg, err := tlsOf(ctx).ServerConfig()
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg != nil {
		lis, scheme = tls.NewListener(lis, cfg), "https"
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	if c.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if c.mount != nil {
		c.mount(mux)
	}
	m := &metricsServer{lis: lis, srv: &http.Server{
		Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), // refused handshakes
	}}
	go func() {
		if err := m.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "url", scheme+"://"+lis.Addr().String()+"/metrics")
	return m, nil
}

// Addr is the address it listens on.
func (m *metricsServer) Addr() net.Addr { return m.lis.Addr() }

// Shutdown stops it after the scrapes in flight.
func (m *metricsServer) Shutdown(ctx context.Context) error { return m.srv.Shutdown(ctx) }

// Close stops it at once.
func (m *metricsServer) Close() error { return m.srv.Close() }
