package wire

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// blackhole forwards TCP connections to a target until frozen; then it
// keeps every socket open and forwards nothing — what a peer that lost
// power or was cut off by a partition looks like: no reset ever comes.
type blackhole struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
	})
	go b.serve()
	return b
}

func (b *blackhole) serve() {
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", b.target)
		if err != nil {
			in.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, in, out)
		b.mu.Unlock()
		go b.pipe(in, out)
		go b.pipe(out, in)
	}
}

func (b *blackhole) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		b.mu.Lock()
		frozen := b.frozen
		b.mu.Unlock()
		if frozen {
			continue // swallowed
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (b *blackhole) freeze() {
	b.mu.Lock()
	b.frozen = true
	b.mu.Unlock()
}

// A call open on a connection whose peer goes silent fails once a
// keepalive ping goes unanswered, rather than waiting on TCP for minutes.
func TestKeepaliveFindsASilentPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()
	hole := newBlackhole(t, ln.Addr().String())

	// 10 s is the shortest keepalive time gRPC allows a client.
	opts := append(DialOptions(WithKeepalive(10*time.Second, time.Second)), grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(hole.ln.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // the first status: the stream is up
		t.Fatal(err)
	}
	hole.freeze()
	start := time.Now()
	_, err = watch.Recv() // a watch never ends by itself: only the connection's loss ends it
	took := time.Since(start)
	t.Logf("the open call failed %v after the peer went silent: %v", took.Round(time.Millisecond), err)
	if status.Code(err) != codes.Unavailable || err == io.EOF {
		t.Fatalf("the call ended with %v, want Unavailable from the keepalive", err)
	}
	if took > 30*time.Second {
		t.Fatalf("took %v", took)
	}
}
