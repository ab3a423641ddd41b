package client

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/shardmap"
)

// The epoch changes while pairs are on the wire: the nodes move on and
// refuse to sign for the old epoch, so the store fetches the new committee
// and collects again — nodes that kept their shards only confirm — and the
// certificate is for the new epoch.
func TestStoreAcrossEpochChange(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := newClient(t, net)
	ctx := testContext(t, 60*time.Second)
	blob := randomBlob(11, 2<<20)

	var once sync.Once
	var advanceErr error
	var sst StoreStats
	id, cert, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{
		Stats: &sst,
		Progress: func(done, _ int64) {
			if done > 0 {
				// Progress calls are serialized: the transfer waits here.
				once.Do(func() { _, advanceErr = net.AdvanceEpoch(ctx, false) })
			}
		},
	})
	if advanceErr != nil {
		t.Fatal(advanceErr)
	}
	if err != nil {
		t.Fatalf("store across an epoch change: %v", err)
	}
	if cert.Epoch != 2 || sst.Rounds != 2 {
		t.Fatalf("certificate of epoch %d after %d rounds, want epoch 2 after 2", cert.Epoch, sst.Rounds)
	}
	// Nothing was sent twice: every node kept its shards.
	params, err := coding.NewParams(8)
	if err != nil {
		t.Fatal(err)
	}
	s, err := params.SymbolSize(uint64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(8 * (params.NP + params.NS) * s); sst.SentBytes != want {
		t.Fatalf("sent %d bytes, one copy of every pair is %d", sst.SentBytes, want)
	}
	if err := c.VerifyCertificate(ctx, cert); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read(ctx, id, ReadOptions{})
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read after the epoch change: %d bytes, %v", len(got), err)
	}
}

// A registered blob that was never certified is not readable yet; storing
// the same content again returns the existing certificate without sending
// anything.
func TestNotCertifiedAndStoredTwice(t *testing.T) {
	net := startNet(t, 4, 4, nil)
	c := newClient(t, net)
	ctx := testContext(t, 60*time.Second)

	blob := randomBlob(12, 10_000)
	codec, err := c.codec(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := codec.Encode(blob)
	if err != nil {
		t.Fatal(err)
	}
	if existing, _, err := c.register(ctx, enc, 3, objectKind{deletable: true}); err != nil || existing != nil {
		t.Fatalf("register: %v, %v", existing, err)
	}
	if _, err := c.Read(ctx, enc.ID, ReadOptions{}); !errors.Is(err, ErrNotCertified) {
		t.Fatalf("read of a registered blob: %v", err)
	}

	id, cert, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 2})
	if err != nil || id != enc.ID {
		t.Fatalf("store: %s, %v", id, err)
	}
	var sst StoreStats
	id2, cert2, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 7, Stats: &sst})
	if err != nil || id2 != id {
		t.Fatalf("second store: %s, %v", id2, err)
	}
	if !sst.AlreadyCertified || sst.SentBytes != 0 || cert2.Epoch != cert.Epoch {
		t.Fatalf("second store stats %+v", sst)
	}
	st, err := c.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.EndEpoch != 1+7 {
		t.Fatalf("end epoch %d after storing again for 7 epochs", st.EndEpoch)
	}
}

// A write without a client token is refused before anything is sent, and
// a wrong one by the control plane.
func TestStoreNeedsToken(t *testing.T) {
	net := startNet(t, 4, 4, nil)
	ctx := testContext(t, 30*time.Second)
	for _, token := range []string{"", "not-a-token"} {
		c := newClient(t, net, func(cfg *Config) { cfg.Token = token })
		_, _, err := c.Store(ctx, bytes.NewReader([]byte("x")), StoreOptions{})
		if err == nil {
			t.Fatalf("store with token %q succeeded", token)
		}
		t.Logf("token %q: %v", token, err)
	}
	// Reads need none.
	c := newClient(t, net, func(cfg *Config) { cfg.Token = "" })
	if _, err := c.Committee(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

// A control plane listed first that is down is skipped.
func TestControlFallback(t *testing.T) {
	net := startNet(t, 4, 4, nil)
	c := newClient(t, net, func(cfg *Config) { cfg.Control = []string{"127.0.0.1:1", net.ControlAddr} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, _, err := c.Store(ctx, bytes.NewReader(randomBlob(13, 5000)), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, id, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A blob larger than the client's limit is refused before anything is
// registered.
func TestStoreTooLarge(t *testing.T) {
	net := startNet(t, 4, 4, nil)
	c := newClient(t, net, func(cfg *Config) { cfg.MaxBlobLength = 1000 })
	ctx := testContext(t, 30*time.Second)
	if _, _, err := c.Store(ctx, bytes.NewReader(make([]byte, 1001)), StoreOptions{}); !errors.Is(err, ErrBlobTooLarge) {
		t.Fatalf("store over the limit: %v", err)
	}
}

// A node leaves the committee: its shards get new owners, but until they
// have synced, the node stays their holder and keeps serving them. A blob
// certified before the move is read from the holder first — whose address
// comes from the committee it was last a member of — and the new owners
// being down does not matter. (The other nodes are down across the epoch
// change, so that the new owners cannot finish their sync before the
// read.)
func TestReadDuringHandover(t *testing.T) {
	net := startNet(t, 5, 10, nil)
	c := newClient(t, net)
	ctx := testContext(t, 60*time.Second)
	blob := randomBlob(19, 200_000)
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}

	leaving := string(net.NodeID(4))
	moved := net.Owned(4)
	admin := weftv1.NewAdminClient(dialControl(t, net))
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+net.OperatorToken)
	if _, err := admin.SetStake(actx, &weftv1.SetStakeRequest{Node: leaving, Stake: 0}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := net.StopNode(i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := c.layout(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	com, err := c.CommitteeInfo(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, member := com.Member(shardmap.NodeID(leaving)); member || lay.epoch != 2 {
		t.Fatalf("%s still a member in epoch %d", leaving, lay.epoch)
	}
	pending := 0
	newOwners := map[int]bool{}
	for _, shard := range moved {
		srcs := lay.sources[shard]
		owner := string(com.Owners[shard])
		if owner == leaving {
			t.Fatalf("shard %d still owned by %s", shard, leaving)
		}
		for i := range net.Nodes() {
			if string(net.NodeID(i)) == owner {
				newOwners[i] = true
			}
		}
		if len(srcs) == 2 {
			pending++
			if srcs[0].node != leaving || srcs[0].addr != net.NodeAddr(4) || srcs[1].node != owner {
				t.Fatalf("shard %d during its handover: sources %+v, want the holder %s first, then the owner %s", shard, srcs, leaving, owner)
			}
		}
	}
	if pending != len(moved) {
		t.Fatalf("%d of %d moved shards in handover, with their new owners down", pending, len(moved))
	}

	// With the new owners down, the moved shards are served by the holder.
	for i := range 4 {
		if !newOwners[i] {
			if err := net.StartNode(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := net.Node(4).Stats().BytesServedSlivers
	got, err := c.Read(ctx, id, ReadOptions{})
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read during the handover: %d bytes, %v", len(got), err)
	}
	// While the handover lasts, the holder is asked first.
	if served := net.Node(4).Stats().BytesServedSlivers - before; served == 0 {
		t.Fatalf("the holder served nothing")
	}
}

func dialControl(t *testing.T, net *devnet.Network) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(net.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func testCodec(t *testing.T, c *Client, n int) *coding.Codec {
	t.Helper()
	codec, err := c.codec(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return codec
}
