package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// startMetrics binds addr before it returns (a taken port fails the
// command at start, not in a log line later) and serves in the background;
// Close stops it.
func startMetrics(ctx context.Context, addr string, g prometheus.Gatherer, log *slog.Logger) (*metricsServer, error) {
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
