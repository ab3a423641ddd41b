package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftstore/weft/api/wire"
)

// Metrics are served over TLS when the process serves TLS — with client
// certificates required under --tls-client-ca — and over plain HTTP
// otherwise; a taken port fails at start.
func TestMetricsServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_test_total", Help: "a test counter"})
	reg.MustRegister(c)
	c.Add(7)
	log := slog.New(slog.DiscardHandler)
	scrape := func(client *http.Client, url string) (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	plain, err := startMetrics(context.Background(), metricsConfig{addr: "127.0.0.1:0"}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if body, err := scrape(http.DefaultClient, "http://"+plain.Addr().String()+"/metrics"); err != nil || !strings.Contains(body, "weft_test_total 7") {
		t.Fatalf("plain scrape: %v\n%s", err, body)
	}
	if _, err := startMetrics(context.Background(), metricsConfig{addr: plain.Addr().String()}, reg, log); err == nil {
		t.Fatal("metrics started on a port already taken")
	}

	ca, err := wire.NewDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.Issue("metrics", "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	files.ClientCA = files.CA
	ctx := context.WithValue(context.Background(), tlsKey{}, &files)
	secure, err := startMetrics(ctx, metricsConfig{addr: "127.0.0.1:0"}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Close()
	url := "https://" + secure.Addr().String() + "/metrics"
	withCert, err := files.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	body, err := scrape(&http.Client{Transport: &http.Transport{TLSClientConfig: withCert}}, url)
	if err != nil || !strings.Contains(body, "weft_test_total 7") {
		t.Fatalf("scrape with the CA and a client certificate: %v\n%s", err, body)
	}
	noCert := withCert.Clone()
	noCert.GetClientCertificate, noCert.Certificates = nil, nil
	if _, err := scrape(&http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}, url); err == nil {
		t.Fatal("scraped without a client certificate under --tls-client-ca")
	}
	if body, err := scrape(http.DefaultClient, "http://"+secure.Addr().String()+"/metrics"); err == nil && strings.Contains(body, "weft_test_total") {
		t.Fatal("the TLS metrics endpoint answered plain HTTP with the metrics")
	}
	// Without a client CA, any client that trusts the server's CA scrapes.
	files.ClientCA = ""
	open, err := startMetrics(ctx, metricsConfig{addr: "127.0.0.1:0"}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := scrape(&http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}, "https://"+open.Addr().String()+"/metrics"); err != nil {
		t.Fatalf("scrape over TLS without a client CA: %v", err)
	}
}

// TestPprofOnlyWhenAsked: the profiler is served beside /metrics with
// --pprof and is absent (404) without it.
func TestPprofOnlyWhenAsked(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, on := range []bool{false, true} {
		m, err := startMetrics(context.Background(), metricsConfig{addr: "127.0.0.1:0", pprof: on}, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + m.Addr().String() + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m.Close()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if resp.StatusCode != want || on && !strings.Contains(string(body), "heap profile") {
			t.Fatalf("pprof=%v: status %d, want %d\n%.200s", on, resp.StatusCode, want, body)
		}
	}
}
