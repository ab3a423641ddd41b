package client

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// lateProxy forwards to target from an address that refuses connections
// until open is called: a control plane that is away (an election, voters
// restarting) and comes back.
type lateProxy struct {
	addr, target string
	mu           sync.Mutex
	lis          net.Listener
}

func newLateProxy(t *testing.T, target string) *lateProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lateProxy{addr: lis.Addr().String(), target: target}
	lis.Close() // refused until open
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.lis != nil {
			p.lis.Close()
		}
	})
	return p
}

func (p *lateProxy) open(t *testing.T) {
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Errorf("reopening %s: %v", p.addr, err)
		return
	}
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

// A store given a deadline keeps trying an unreachable control plane
// until the deadline, not for Config.Retries backoffs (issue #23: a store
// with two minutes failed after five seconds of a leader election); a
// call with no deadline still gives up after the retries.
func TestControlRetriesSpendTheDeadline(t *testing.T) {
	net := startNet(t, 4, 12, nil)
	proxy := newLateProxy(t, net.ControlAddr)
	c := newClient(t, net, func(cfg *Config) { cfg.Control = []string{proxy.addr} }) // 3 retries, 20–200 ms

	start := time.Now()
	_, err := c.Committee(context.Background(), 0)
	if err == nil {
		t.Fatal("the committee read without a deadline reached a closed address")
	}
	t.Logf("without a deadline: failed after %v: %v", time.Since(start), err)
	if spent := time.Since(start); spent > 15*time.Second {
		t.Fatalf("without a deadline the read gave up after %v, not after its retries", spent)
	}

	const away = 8 * time.Second
	time.AfterFunc(away, func() { proxy.open(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blob := randomBlob(2301, 10_000)
	start = time.Now()
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 2})
	if err != nil {
		t.Fatalf("store across %v of control plane absence, with a 30 s deadline: %v", away, err)
	}
	t.Logf("store took %v", time.Since(start))
	if spent := time.Since(start); spent < away {
		t.Fatalf("the store finished after %v, before the control plane came back", spent)
	}
	got, err := c.Read(ctx, id, ReadOptions{})
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read back: %v", err)
	}
}
