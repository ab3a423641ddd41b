package client

import (
	"bytes"
	"context"
	"errors"
	"math"
	gonet "net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// The range tests run n = 21 over 7 nodes (3 shards each): nP = 9
// systematic primaries of nS = 15 symbols. A 300,000-byte blob has 2,223-
// byte symbols, so each systematic sliver holds 33,345 bytes of it.
const (
	rangeNodes  = 7
	rangeShards = 21
	rangeBlob   = 300_000
)

// rangeLayout is a stored blob's systematic sliver size, and the params.
func rangeLayout(t *testing.T, c *Client, size int) (coding.Params, int64) {
	t.Helper()
	p := testCodec(t, c, rangeShards).Params()
	s, err := p.SymbolSize(uint64(size))
	if err != nil {
		t.Fatal(err)
	}
	row, _ := p.SystematicLayout(s)
	return p, int64(row)
}

// coveringSlivers is how many rows of row bytes [off, off+n) touches.
func coveringSlivers(off, n, row int64) int64 {
	if n == 0 {
		return 0
	}
	return (off+n-1)/row - off/row + 1
}

// servedSliverBytes sums the sliver bytes the running nodes have served
// (their weft_storage_bytes_served_total{kind="sliver"}).
func servedSliverBytes(net *devnet.Network) int64 {
	var total int64
	for i := range net.Nodes() {
		if n := net.Node(i); n != nil {
			total += n.Stats().BytesServedSlivers
		}
	}
	return total
}

// awaitServed waits until the nodes have counted want more sliver bytes
// than base, and returns what they counted. A node counts a chunk after
// its Send returns, which may be after the client has the chunk.
// settledServed is servedSliverBytes once it stopped moving: what earlier
// reads' sends (a hedged or abandoned fetch among them) still add is
// counted before a test takes it as its base.
func settledServed(net *devnet.Network) int64 {
	deadline := time.Now().Add(5 * time.Second)
	last := servedSliverBytes(net)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		now := servedSliverBytes(net)
		if now == last {
			return now
		}
		last = now
	}
	return last
}

func awaitServed(net *devnet.Network, base, want int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := servedSliverBytes(net) - base
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ranges at the edges — first and last byte of the blob and of a sliver,
// across one and two sliver boundaries, one whole sliver, the whole blob,
// the empty range at the end — come back byte for byte, and the nodes
// serve exactly the systematic slivers that hold them, each once. Ranges
// outside the blob are a *RangeError carrying its size, found before any
// node is asked.
func TestReadRange(t *testing.T) {
	net := startNet(t, rangeNodes, rangeShards, nil)
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)
	blob := randomBlob(301, rangeBlob)
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, row := rangeLayout(t, c, rangeBlob)
	size := int64(rangeBlob)

	for _, tc := range []struct {
		name   string
		off, n int64
	}{
		{"first byte", 0, 1}, {"last byte", size - 1, 1},
		{"last byte of a sliver", row - 1, 1}, {"first byte of a sliver", row, 1},
		{"across a sliver boundary", row - 10, 20}, {"one whole sliver", row, row},
		{"across two boundaries", row - 1, row + 2}, {"the tail", size - 1000, 1000},
		{"the whole blob", 0, size}, {"empty, at the end", size, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := servedSliverBytes(net)
			var st ReadStats
			var done, total int64
			got, err := c.ReadRange(ctx, id, tc.off, tc.n, ReadOptions{
				Stats: &st, Progress: func(d, t int64) { done, total = d, t },
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, blob[tc.off:tc.off+tc.n]) {
				t.Fatalf("%d bytes at %d: got %d bytes, not the blob's", tc.n, tc.off, len(got))
			}
			k := coveringSlivers(tc.off, tc.n, row)
			served := awaitServed(net, base, k*row)
			if served != k*row || st.ReceivedBytes != k*row || int64(st.Slivers) != k {
				t.Fatalf("%d covering slivers of %d bytes: the nodes served %d bytes, the read received %d in %d slivers",
					k, row, served, st.ReceivedBytes, st.Slivers)
			}
			if done != k*row || total != k*row {
				t.Fatalf("progress ended at %d of %d, want %d of %d", done, total, k*row, k*row)
			}
			if st.RangeFallback != nil || st.Decodes != 0 || st.BadSlivers != 0 {
				t.Fatalf("stats %+v: a range read with every node up fell back or decoded", st)
			}
		})
	}

	t.Run("outside the blob", func(t *testing.T) {
		base := servedSliverBytes(net)
		for _, tc := range []struct{ off, n int64 }{
			{size, 1}, {size + 1, 0}, {0, size + 1}, {size - 1, 2}, {-1, 1}, {0, -1},
			{1, math.MaxInt64}, {math.MaxInt64, math.MaxInt64}, {math.MinInt64, 1},
		} {
			got, err := c.ReadRange(ctx, id, tc.off, tc.n, ReadOptions{})
			var re *RangeError
			if !errors.As(err, &re) || !errors.Is(err, ErrRangeOutsideBlob) || re.Size != uint64(size) || re.BlobID != id || got != nil {
				t.Fatalf("%d bytes at %d: %d bytes, %v; want a *RangeError with the size", tc.n, tc.off, len(got), err)
			}
		}
		if served := servedSliverBytes(net) - base; served != 0 {
			t.Fatalf("ranges outside the blob had the nodes serve %d sliver bytes", served)
		}
	})

	t.Run("the empty blob", func(t *testing.T) {
		empty, _, err := c.Store(ctx, bytes.NewReader(nil), StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var re *RangeError
		if _, err := c.ReadRange(ctx, empty, 0, 1, ReadOptions{}); !errors.As(err, &re) || re.Size != 0 {
			t.Fatalf("a byte of the empty blob: %v", err)
		}
		if got, err := c.ReadRange(ctx, empty, 0, 0, ReadOptions{}); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("no bytes of the empty blob: %v, %v", got, err)
		}
	})

	t.Run("unknown blob", func(t *testing.T) {
		if _, err := c.ReadRange(ctx, crypto.BlobID{0x42}, 0, 1, ReadOptions{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a range of an unknown blob: %v", err)
		}
	})

	// On the wire (real gRPC, counted at the client's sockets), a one-byte
	// range costs its one sliver, the metadata and the framing: well
	// within the 2× (covering slivers + metadata).
	t.Run("bytes on the wire", func(t *testing.T) {
		wire := newWireCounter(net)
		fresh := newClient(t, net, func(cfg *Config) { cfg.DialOptions = wire.dialOptions() })
		got, err := fresh.ReadRange(ctx, id, size/2, 1, ReadOptions{})
		if err != nil || !bytes.Equal(got, blob[size/2:size/2+1]) {
			t.Fatalf("one byte: %x, %v", got, err)
		}
		meta := int64(14 + 64*rangeShards)
		fromNodes, fromControl := wire.received()
		ratio := float64(fromNodes) / float64(row+meta)
		t.Logf("one byte: %d bytes from the nodes (%.3f× one sliver + metadata), %d from the control plane", fromNodes, ratio, fromControl)
		if fromNodes < row || ratio > 2 {
			t.Fatalf("one byte: %d bytes from the nodes for a %d-byte sliver and %d bytes of metadata", fromNodes, row, meta)
		}
	})
}

// storeWithSystematicOn stores a random blob of size bytes chosen so that
// one of its systematic primaries lies on a shard node owns, and returns
// the blob, its ID and that sliver's index.
func storeWithSystematicOn(t *testing.T, ctx context.Context, c *Client, net *devnet.Network, node int, size int) ([]byte, crypto.BlobID, uint32) {
	t.Helper()
	codec := testCodec(t, c, rangeShards)
	p := codec.Params()
	owned := net.Owned(node)
	for seed := uint64(1000); ; seed++ {
		blob := randomBlob(seed, size)
		enc, err := codec.Encode(blob)
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.NP {
			if slices.Contains(owned, uint32(p.ShardForPair(i, enc.ID))) {
				id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return blob, id, uint32(i)
			}
		}
	}
}

// ownerOf is the devnet node that owns the shard of a blob's pair.
func ownerOf(t testing.TB, net *devnet.Network, p coding.Params, id crypto.BlobID, pair uint32) int {
	t.Helper()
	shard := uint32(p.ShardForPair(int(pair), id))
	for i := range net.Nodes() {
		if slices.Contains(net.Owned(i), shard) {
			return i
		}
	}
	t.Fatalf("no node owns shard %d", shard)
	return -1
}

// With the owners of the slivers that hold a range stopped (real nodes,
// their servers closed), the range read reads the whole blob instead and
// returns the range of it; the stats say which sliver, from which node,
// made it fall back.
func TestReadRangeFallsBackWhenOwnersAreDown(t *testing.T) {
	net := startNet(t, rangeNodes, rangeShards, nil)
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)
	blob := randomBlob(302, rangeBlob)
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, row := rangeLayout(t, c, rangeBlob)
	off, n := 4*row-5, int64(10) // slivers 3 and 4
	owners := []int{ownerOf(t, net, p, id, 3)}
	if o := ownerOf(t, net, p, id, 4); o != owners[0] {
		owners = append(owners, o)
	}
	stopNodes(t, net, owners...) // at most 6 shards: f
	base := servedSliverBytes(net)

	var st ReadStats
	got, err := c.ReadRange(ctx, id, off, n, ReadOptions{Stats: &st})
	if err != nil {
		t.Fatalf("range with its slivers' owners down: %v", err)
	}
	if !bytes.Equal(got, blob[off:off+n]) {
		t.Fatal("the fallback returned other bytes")
	}
	// The cause is the owner's refusals, or — if the retries against it
	// outlast the stall delay (a slow machine, -race) — the stall; both
	// name the sliver and the node.
	var se *SliverError
	if !errors.As(st.RangeFallback, &se) || (se.Index != 3 && se.Index != 4) || !namesNode(se.Node, net, owners) {
		t.Fatalf("fallback cause %v: want sliver 3 or 4 from node %v", st.RangeFallback, owners)
	}
	t.Logf("fell back: %v; stats %+v", st.RangeFallback, st)
	if st.Decodes != 1 {
		t.Fatalf("stats %+v: the fallback should have decoded once", st)
	}
	if served := awaitServed(net, base, int64(p.NP)*row); served < int64(p.NP)*row {
		t.Fatalf("the fallback had %d sliver bytes served, a whole read takes %d", served, int64(p.NP)*row)
	}
}

func namesNode(s string, net *devnet.Network, nodes []int) bool {
	for _, i := range nodes {
		if strings.Contains(s, string(net.NodeID(i))) {
			return true
		}
	}
	return false
}

// A node that serves a covering sliver with a byte flipped (a real node
// with its answers spoiled) is caught by the sliver's hash: the range read
// never returns its bytes, falls back, and names it.
func TestReadRangeRefusesACorruptSliver(t *testing.T) {
	net := startNet(t, rangeNodes, rangeShards, map[int]storage.Faults{1: {CorruptSlivers: true}})
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)
	blob, id, sliver := storeWithSystematicOn(t, ctx, c, net, 1, rangeBlob)
	_, row := rangeLayout(t, c, rangeBlob)
	off := int64(sliver)*row + row/2

	var st ReadStats
	got, err := c.ReadRange(ctx, id, off, 100, ReadOptions{Stats: &st})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob[off:off+100]) {
		t.Fatal("the range read returned the corrupt node's bytes")
	}
	var se *SliverError
	if !errors.Is(st.RangeFallback, crypto.ErrSliverMismatch) || !errors.As(st.RangeFallback, &se) ||
		se.Index != sliver || !namesNode(se.Node, net, []int{1}) || st.BadSlivers == 0 {
		t.Fatalf("fallback cause %v, stats %+v: want sliver %d's mismatch, from node 1", st.RangeFallback, st, sliver)
	}
	t.Logf("fell back: %v", st.RangeFallback)
}

// A node that accepts connections and then says nothing does not hold a
// range read for its timeouts: when no byte of the covering slivers has
// arrived for the stall delay, the read widens to a whole one. (The cause
// says so: had the read waited for the 30 s node timeout instead, it
// would name a deadline.)
func TestReadRangeAroundAStalledNode(t *testing.T) {
	net := startNet(t, rangeNodes, rangeShards, nil)
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)
	blob, id, sliver := storeWithSystematicOn(t, ctx, c, net, 0, 100_000)
	_, row := rangeLayout(t, c, 100_000)
	off := int64(sliver) * row

	stopNodes(t, net, 0)
	hole := blackHole(t, net.NodeAddr(0))
	defer hole()
	fresh := newClient(t, net, func(cfg *Config) { cfg.NodeTimeout = 30 * time.Second })
	var st ReadStats
	got, err := fresh.ReadRange(ctx, id, off, 10, ReadOptions{Stats: &st})
	if err != nil || !bytes.Equal(got, blob[off:off+10]) {
		t.Fatalf("range with a stalled node: %x, %v", got, err)
	}
	var se *SliverError
	if !errors.As(st.RangeFallback, &se) || se.Index != sliver || !namesNode(se.Node, net, []int{0}) ||
		!strings.Contains(st.RangeFallback.Error(), "no byte of the covering slivers arrived") {
		t.Fatalf("fallback cause %v: want the stall of sliver %d on node 0", st.RangeFallback, sliver)
	}
	t.Logf("read in %v, fell back: %v", st.Total, st.RangeFallback)
}

// blackHole listens on addr and holds every connection without a word;
// the returned func closes it all.
func blackHole(t *testing.T, addr string) func() {
	t.Helper()
	lis, err := gonet.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []gonet.Conn
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	return func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range held {
			conn.Close()
		}
	}
}

// wireCounter counts the bytes a client receives on its sockets (gRPC
// frames and all), split into those from storage nodes and those from
// the control plane.
type wireCounter struct {
	control              string
	fromNodes, fromOther atomic.Int64
}

func newWireCounter(net *devnet.Network) *wireCounter { return &wireCounter{control: net.ControlAddr} }

func (w *wireCounter) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (gonet.Conn, error) {
			var d gonet.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			counter := &w.fromNodes
			if addr == w.control {
				counter = &w.fromOther
			}
			return &countedConn{Conn: conn, n: counter}, nil
		}),
	}
}

func (w *wireCounter) received() (fromNodes, fromControl int64) {
	return w.fromNodes.Load(), w.fromOther.Load()
}

type countedConn struct {
	gonet.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}
