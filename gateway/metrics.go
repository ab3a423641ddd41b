package gateway

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the gateway's Prometheus metrics.
type gatewayMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	cache    *prometheus.CounterVec
}

func newGatewayMetrics(reg prometheus.Registerer, cache *blobCache) (*gatewayMetrics, error) {
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gateway_requests_total", Help: "HTTP requests answered, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_gateway_request_duration_seconds", Help: "Time to answer an HTTP request, by route.",
			// Stores and reads of large blobs take seconds to minutes.
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gateway_bytes_total", Help: "Blob bytes received (in) and sent (out).",
		}, []string{"direction"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_gateway_cache_reads_total", Help: "GETs of a blob's bytes, by whether the blob cache had them (hit) or the network was read (miss).",
		}, []string{"result"}),
	}
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_gateway_cache_bytes", Help: "Bytes of blobs in the blob cache (--cache-size bounds them).",
	}, func() float64 { b, _ := cache.size(); return float64(b) })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.bytes, m.cache, cached} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *gatewayMetrics) cacheResult(hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cache.WithLabelValues(result).Inc()
}

func (m *gatewayMetrics) observe(route, method string, code int, d time.Duration, in, out int64) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
	m.bytes.WithLabelValues("in").Add(float64(in))
	m.bytes.WithLabelValues("out").Add(float64(out))
}
