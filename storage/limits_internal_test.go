package storage

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The read ledger, on its own: calls past the cap are refused, bytes past
// the cap are refused unless the call holds all its peer's bytes, peers
// are counted apart, and closing gives everything back.
func TestPeerLedger(t *testing.T) {
	m := newMetrics()
	l := newPeerLedger("read", "--max-reads-per-peer", "--max-read-bytes-per-peer", 2, 100, m)
	refused := func(err error, cap string) {
		t.Helper()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "10.0.0.1") || !strings.Contains(err.Error(), cap) {
			t.Fatalf("got %v, want ResourceExhausted naming 10.0.0.1 and %s", err, cap)
		}
	}
	a, _ := l.open("10.0.0.1")
	b, _ := l.open("10.0.0.1")
	_, err := l.open("10.0.0.1")
	refused(err, "--max-reads-per-peer")
	if err := a.reserve(150); err != nil {
		t.Fatalf("the peer's only bytes, past the cap: %v", err)
	}
	refused(b.reserve(1), "--max-read-bytes-per-peer")
	other, err := l.open("10.0.0.2")
	if err != nil || other.reserve(100) != nil {
		t.Fatalf("another peer: %v", err)
	}
	a.release(100)
	if err := b.reserve(60); err == nil {
		t.Fatal("50 bytes held with a cap of 100: 60 more passed")
	}
	if err := b.reserve(50); err != nil {
		t.Fatalf("100 bytes with a cap of 100: %v", err)
	}
	a.close()
	b.close()
	other.close()
	if len(l.peers) != 0 {
		t.Fatalf("peers left after every call closed: %v", l.peers)
	}
	if got := gaugeValue(t, m, "read"); got != 0 {
		t.Fatalf("%v bytes in flight after every call closed", got)
	}
}

func gaugeValue(t *testing.T, m *Metrics, kind string) float64 {
	t.Helper()
	g, err := m.buffered.GetMetricWithLabelValues(kind)
	if err != nil {
		t.Fatal(err)
	}
	var out dto.Metric
	if err := g.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetGauge().GetValue()
}
