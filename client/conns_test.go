package client

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftstore/weft/crypto"
)

// healthServer serves gRPC's health service on loopback: a real server to
// hold connections to.
func healthServer(t *testing.T) (string, *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	h := health.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), h
}

// TestIdleConnectionsClosed: connections to nodes a client stopped calling
// are closed after the idle timeout — with their goroutines — while one
// carrying a stream that outlives the timeout stays open.
func TestIdleConnectionsClosed(t *testing.T) {
	const idle = 300 * time.Millisecond
	c, err := New(Config{Control: []string{"127.0.0.1:1"}, IdleConnTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := runtime.NumGoroutine()
	var addrs []string
	for range 20 {
		addr, _ := healthServer(t)
		addrs = append(addrs, addr)
	}
	servers := runtime.NumGoroutine() - before
	call := func(addr string) {
		cc, err := c.conn(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
	}
	for _, addr := range addrs {
		call(addr)
	}
	// One stream that stays open across the timeout.
	streamAddr, streamHealth := healthServer(t)
	cc, err := c.conn(ctx, streamAddr)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: "weft"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	connected := runtime.NumGoroutine() - before - servers

	time.Sleep(3 * idle)
	call(addrs[0]) // any call sweeps
	c.mu.Lock()
	cached := len(c.conns)
	_, streamKept := c.conns[streamAddr]
	c.mu.Unlock()
	if cached != 2 || !streamKept {
		t.Fatalf("%d connections cached after the idle timeout (stream's kept: %v), want 2: the one just called and the one streaming", cached, streamKept)
	}
	streamHealth.SetServingStatus("weft", healthpb.HealthCheckResponse_SERVING)
	if resp, err := watch.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("the stream across the idle timeout: %v, %v", resp, err)
	}
	// The closed connections' goroutines end (each connection has a few:
	// reader, writer, keepalive, balancer).
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := runtime.NumGoroutine() - before - servers
		if left <= connected/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client goroutines: %d with 21 connections, %d after closing 19 idle ones", connected, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCommitteeViewsBounded: a long-running client keeps the views of the
// latest epochs only.
func TestCommitteeViewsBounded(t *testing.T) {
	c, err := New(Config{Control: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := uint64(1); e <= 1000; e++ {
		c.cacheViewLocked(e, &crypto.CommitteeView{})
	}
	if len(c.views) != maxCachedViews {
		t.Fatalf("%d views cached, want %d", len(c.views), maxCachedViews)
	}
	for e := uint64(1000 - maxCachedViews + 1); e <= 1000; e++ {
		if _, ok := c.views[e]; !ok {
			t.Fatalf("epoch %d's view dropped; the oldest should go first", e)
		}
	}
}
