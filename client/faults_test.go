package client

import (
	"bytes"
	"errors"
	gonet "net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// stopNodes stops the given devnet nodes and returns how many shards they
// own.
func stopNodes(t testing.TB, net *devnet.Network, nodes ...int) int {
	t.Helper()
	shards := 0
	for _, i := range nodes {
		shards += len(net.Owned(i))
		if err := net.StopNode(i); err != nil {
			t.Fatal(err)
		}
	}
	return shards
}

// n = 21 over 7 nodes (3 shards each): f = 6, nP = 9, write quorum 15.
// With f shards' owners down a store succeeds; with f more, the data is
// still readable (2f down); with one node more it is not, and the error
// says how many slivers were had and needed.
func TestStoreAndReadWithOwnersDown(t *testing.T) {
	net := startNet(t, 7, 21, nil)
	c := newClient(t, net)
	ctx := testContext(t, 60*time.Second)
	params, err := coding.NewParams(21)
	if err != nil {
		t.Fatal(err)
	}

	if down := stopNodes(t, net, 5, 6); down != params.F {
		t.Fatalf("stopped nodes own %d shards, want f = %d", down, params.F)
	}
	blob := randomBlob(7, 300_000)
	var sst StoreStats
	id, cert, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Stats: &sst})
	if err != nil {
		t.Fatalf("store with f shards' owners down: %v", err)
	}
	if sst.Signers != 5 || sst.Confirmed != 15 {
		t.Fatalf("certificate from %d signers owning %d shards, want 5 and 15", sst.Signers, sst.Confirmed)
	}
	if err := c.VerifyCertificate(ctx, cert); err != nil {
		t.Fatal(err)
	}

	// 2f shards' owners down: the 9 primaries left are exactly enough.
	stopNodes(t, net, 3, 4)
	got, err := c.Read(ctx, id, ReadOptions{})
	if err != nil {
		t.Fatalf("read with 2f shards' owners down: %v", err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatal("read returned other bytes")
	}

	// One node more: 6 shards left, 9 needed.
	stopNodes(t, net, 2)
	_, err = c.Read(ctx, id, ReadOptions{})
	var ne *NotEnoughSliversError
	if !errors.As(err, &ne) || !errors.Is(err, ErrNotEnoughSlivers) {
		t.Fatalf("read with 2f+3 shards down: %v", err)
	}
	if ne.Have != 6 || ne.Need != 9 || len(ne.Failures) != 15 ||
		!strings.Contains(err.Error(), "have 6 verified primary slivers, need 9") {
		t.Fatalf("error %v (have %d, need %d, %d failures)", err, ne.Have, ne.Need, len(ne.Failures))
	}
	t.Log(err)
}

// With more than f shards' owners down no quorum is possible: the error
// counts confirmed shards against the quorum and names every failed node.
func TestStoreQuorumImpossible(t *testing.T) {
	net := startNet(t, 7, 21, nil)
	c := newClient(t, net, func(cfg *Config) { cfg.Retries = 1 })
	ctx := testContext(t, 60*time.Second)
	stopNodes(t, net, 0, 1, 2)
	_, _, err := c.Store(ctx, bytes.NewReader(randomBlob(8, 1000)), StoreOptions{})
	var qe *QuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("store with f+3 shards down: %v", err)
	}
	if qe.Confirmed != 12 || qe.Needed != 15 || qe.Shards != 21 || len(qe.Failures) != 3 {
		t.Fatalf("quorum error %+v", qe)
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.Contains(msg, "12 of 21 shards confirmed in epoch 1, the write quorum is 15") {
		t.Fatalf("message %q", msg)
	}
	for i := range 3 {
		if !strings.Contains(msg, string(net.NodeID(i))+" ("+net.NodeAddr(i)) {
			t.Fatalf("message does not name node %d: %q", i, msg)
		}
	}
}

// Nodes that lie — a confirmation signed over another message, slivers
// with a flipped byte — are caught: the store leaves the bad signer out of
// the certificate, the read drops the bad slivers (found when the
// optimistic decode fails its consistency check) and decodes from good
// ones.
func TestLyingNodes(t *testing.T) {
	faults := map[int]storage.Faults{
		0: {BadSignature: true},
		1: {CorruptSlivers: true}, 2: {CorruptSlivers: true}, 3: {CorruptSlivers: true},
	}
	net := startNet(t, 7, 21, faults)
	c := newClient(t, net)
	ctx := testContext(t, 60*time.Second)
	blob := randomBlob(9, 500_000)
	var sst StoreStats
	id, cert, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Stats: &sst})
	if err != nil {
		t.Fatalf("store with a lying signer: %v", err)
	}
	com, err := c.CommitteeInfo(ctx, cert.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	view := com.View()
	if idx, _ := com.Index(net.NodeID(0)); containsInt(cert.SignerIndices(), idx) || sst.Signers != 6 {
		t.Fatalf("signers %v include the lying node %d (or not 6 signers: %d)", cert.SignerIndices(), idx, sst.Signers)
	}
	if err := Verify(cert, view); err != nil {
		t.Fatal(err)
	}

	var rst ReadStats
	got, err := c.Read(ctx, id, ReadOptions{Stats: &rst})
	if err != nil {
		t.Fatalf("read with 9 shards serving corrupt slivers: %v", err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatal("read returned other bytes")
	}
	// Three nodes own 9 of the 21 shards; the first nine primaries this
	// blob ID places include some of them.
	if rst.BadSlivers == 0 || rst.Decodes != 2 {
		t.Fatalf("read stats %+v: expected bad slivers caught and a second decode", rst)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// A node whose address accepts connections and then says nothing (a hung
// process, a black-holed link) does not hold a read for its timeouts: the
// read fetches other slivers alongside and finishes without it.
func TestReadAroundStalledNode(t *testing.T) {
	net := startNet(t, 7, 21, nil)
	c := newClient(t, net, func(cfg *Config) { cfg.NodeTimeout = 30 * time.Second })
	ctx := testContext(t, 60*time.Second)
	params, err := coding.NewParams(21)
	if err != nil {
		t.Fatal(err)
	}
	// A blob with a systematic primary (fetched first) on node 0.
	owned := net.Owned(0)
	var blob []byte
	for seed := uint64(20); blob == nil; seed++ {
		b := randomBlob(seed, 100_000)
		enc, err := testCodec(t, c, 21).Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, shard := range owned {
			if params.PairForShard(int(shard), enc.ID) < params.NP {
				blob = b
			}
		}
	}
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}

	stopNodes(t, net, 0)
	hole, err := gonet.Listen("tcp", net.NodeAddr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	var held []gonet.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := hole.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // never read, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range held {
			conn.Close()
		}
	}()

	fresh := newClient(t, net, func(cfg *Config) { cfg.NodeTimeout = 30 * time.Second })
	start := time.Now()
	var rst ReadStats
	got, err := fresh.Read(ctx, id, ReadOptions{Stats: &rst})
	took := time.Since(start)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read with a stalled node: %d bytes, %v", len(got), err)
	}
	t.Logf("read in %v: %+v", took, rst)
	if took > 4*time.Second {
		t.Fatalf("the stalled node held the read for %v", took)
	}
}
