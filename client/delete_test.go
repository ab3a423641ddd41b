package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/committee"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// Blob objects and their deletion (issue #21) against a real devnet: what
// the nodes keep is read from their stores, and what a client sees through
// the SDK.

// addClient adds a client credential at the control plane and returns an
// SDK client that uses it.
func addClient(t *testing.T, ctx context.Context, net *devnet.Network, name string, quota uint64) *Client {
	t.Helper()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+net.OperatorToken)
	added, err := weftv1.NewAdminClient(dialControl(t, net)).AddClient(actx, &weftv1.AddClientRequest{Client: name, Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, net, func(cfg *Config) { cfg.Token = added.Token })
}

// storeObject stores blob and returns its ID, certificate and the object
// the store made (or reused) for the client.
func storeObject(t *testing.T, ctx context.Context, c *Client, blob []byte, opts StoreOptions) (crypto.BlobID, *crypto.Certificate, uint64) {
	t.Helper()
	var st StoreStats
	opts.Stats = &st
	id, cert, err := c.Store(ctx, bytes.NewReader(blob), opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Object == 0 {
		t.Fatalf("store of %s made no object", id)
	}
	return id, cert, st.Object
}

// holding is what one storage node keeps of a blob, read from its store
// (not from its counters: Stats().BytesStored counts the sliver bytes the
// node has received from writers since it started, and never goes down):
//   - SliverBytes: the data bytes of the primary and secondary slivers
//     stored for the blob under every shard of the node's bbolt file, each
//     read back with Store.Sliver (from bbolt, or from the value log its
//     bbolt key points into);
//   - Pairs: the shards with both slivers' keys present (Store.HasPair);
//   - Metadata: whether the blob's metadata key is present.
type holding struct {
	SliverBytes int64
	Pairs       int
	Metadata    bool
}

func held(t *testing.T, node *storage.Node, shards int, id crypto.BlobID) holding {
	t.Helper()
	var h holding
	st := node.Store()
	for shard := range uint32(shards) {
		has, err := st.HasPair(shard, id)
		if err != nil {
			t.Fatal(err)
		}
		if has {
			h.Pairs++
		}
		for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
			sl, err := st.Sliver(shard, id, axis)
			switch {
			case errors.Is(err, storage.ErrNotFound):
			case err != nil:
				t.Fatalf("node %s, shard %d, %s sliver of %s: %v", node.ID(), shard, axis, id, err)
			default:
				h.SliverBytes += int64(len(sl.Data))
			}
		}
	}
	_, err := st.AnyMetadata(id)
	h.Metadata = err == nil
	return h
}

// blobsOn lists every blob with a stored pair on the node (Store.Blobs
// over all its shards): the node's blob list.
func blobsOn(t *testing.T, node *storage.Node, shards int) map[crypto.BlobID]bool {
	t.Helper()
	out := map[crypto.BlobID]bool{}
	for shard := range uint32(shards) {
		var after crypto.BlobID
		for {
			page, err := node.Store().Blobs(shard, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range page {
				out[id] = true
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1]
		}
	}
	return out
}

// storedBytesOn is a node's stored sliver bytes over every blob it lists.
func storedBytesOn(t *testing.T, node *storage.Node, shards int) int64 {
	t.Helper()
	var sum int64
	for id := range blobsOn(t, node, shards) {
		sum += held(t, node, shards, id).SliverBytes
	}
	return sum
}

// eventLog reads the control plane's event stream as the test goes,
// keeping what it read: events older than the retained epochs are
// compacted away, and a test that runs past them still finds them here.
type eventLog struct {
	t     *testing.T
	ctx   context.Context
	net   *devnet.Network
	watch weftv1.WatchClient
	seen  []*weftv1.Event
}

func newEventLog(t *testing.T, ctx context.Context, net *devnet.Network) *eventLog {
	return &eventLog{t: t, ctx: ctx, net: net, watch: weftv1.NewWatchClient(dialControl(t, net))}
}

// find returns the index of the first event match accepts (0: none yet).
func (l *eventLog) find(match func(*weftv1.Event) bool) uint64 {
	l.t.Helper()
	for i := 0; ; i++ {
		if i == len(l.seen) {
			var after uint64
			if i > 0 {
				after = l.seen[i-1].Index
			}
			resp, err := l.watch.Events(l.ctx, &weftv1.EventsRequest{AfterIndex: after, Limit: 1000})
			if err != nil {
				l.t.Fatal(err)
			}
			if len(resp.Events) == 0 {
				return 0
			}
			l.seen = append(l.seen, resp.Events...)
		}
		if match(l.seen[i]) {
			return l.seen[i].Index
		}
	}
}

// index is the index of the first event of a kind about a blob.
func (l *eventLog) index(kind control.EventKind, id crypto.BlobID) uint64 {
	l.t.Helper()
	return l.find(func(e *weftv1.Event) bool { return e.Kind == string(kind) && bytes.Equal(e.BlobId, id[:]) })
}

// epochStart is the index of the change that started an epoch.
func (l *eventLog) epochStart(epoch uint64) uint64 {
	l.t.Helper()
	index := l.find(func(e *weftv1.Event) bool { return e.Kind == string(control.EventEpochStarted) && e.Epoch == epoch })
	if index == 0 {
		l.t.Fatalf("no start of epoch %d", epoch)
	}
	return index
}

// advance advances the epoch (force: out of an unfinished handover) and
// waits until every running node has applied the change's events — the
// blobs it ended among them — and returns the new epoch.
func (l *eventLog) advance(force bool) uint64 {
	l.t.Helper()
	e, err := l.net.AdvanceEpoch(l.ctx, force)
	if err != nil {
		l.t.Fatal(err)
	}
	awaitApplied(l.t, l.ctx, l.net, l.epochStart(e))
	return e
}

// awaitEnded waits until a blob's end event of the kind (blob-deleted,
// blob-expired) is committed and every running node has applied it, and
// returns its index.
func (l *eventLog) awaitEnded(kind control.EventKind, id crypto.BlobID) uint64 {
	l.t.Helper()
	index := l.index(kind, id)
	if index == 0 {
		l.t.Fatalf("no %s event for %s", kind, id)
	}
	awaitApplied(l.t, l.ctx, l.net, index)
	return index
}

// awaitApplied waits until each of the given running nodes (all running
// ones when none is given) has applied the control plane's events up to
// index: what the event changes on a node is on its disk then.
func awaitApplied(t *testing.T, ctx context.Context, net *devnet.Network, index uint64, nodes ...int) {
	t.Helper()
	if len(nodes) == 0 {
		for i := range net.Nodes() {
			nodes = append(nodes, i)
		}
	}
	for _, i := range nodes {
		node := net.Node(i)
		if node == nil {
			continue
		}
		for {
			applied, err := node.Store().AppliedEvent()
			if err != nil {
				t.Fatal(err)
			}
			if applied >= index {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("node %d applied events up to %d, not %d: %v", i, applied, index, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// awaitDisk waits until a node's value log occupies at most want bytes on
// disk, and returns what it occupies then (or last, if ctx ends first).
// The holes of dropped slivers are punched just after the transaction that
// applied their end commits.
func awaitDisk(ctx context.Context, dir string, want int64) int64 {
	for {
		got, _ := valueLogDisk(dir)
		if got <= want || ctx.Err() != nil {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readsDeleted(t *testing.T, ctx context.Context, c *Client, id crypto.BlobID) {
	t.Helper()
	_, err := c.Read(ctx, id, ReadOptions{})
	if !errors.Is(err, ErrDeleted) || !strings.Contains(err.Error(), "its last object was deleted") {
		t.Fatalf("read of deleted blob %s: %v, want ErrDeleted saying why", id, err)
	}
	st, err := c.Status(ctx, id)
	if err != nil || st.Status != StatusDeleted || !errors.Is(st.Err(), ErrDeleted) {
		t.Fatalf("status of deleted blob %s: %+v, %v", id, st, err)
	}
}

func readsBack(t *testing.T, ctx context.Context, c *Client, id crypto.BlobID, want []byte) {
	t.Helper()
	got, err := c.Read(ctx, id, ReadOptions{})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read of %s: %d bytes, %v (want %d bytes)", id, len(got), err, len(want))
	}
}

// Two clients store the same bytes: each owns an object of the one blob.
// The first deletes its object and the blob stays — the second reads it,
// and its certificate still verifies — with the first refunded its unused
// epochs. When the second deletes too, the blob ends at the next epoch:
// until then it still reads; after it every node has dropped its slivers
// (keys, sliver bytes, metadata, and the value log's disk blocks) and a
// read answers ErrDeleted.
func TestDeleteSharedBlob(t *testing.T) {
	const nodes, shards = 4, 8
	net := startNet(t, nodes, shards, nil)
	ctx := testContext(t, 60*time.Second)
	events := newEventLog(t, ctx, net)
	first := newClient(t, net)
	second := addClient(t, ctx, net, "second", 1<<40)

	// 300 kB over 8 shards: slivers of 75,000 and 50,000 bytes, above the
	// nodes' 32 KiB inline limit, so their bytes are in the value log.
	blob := randomBlob(2101, 300_000)
	id, cert, firstObj := storeObject(t, ctx, first, blob, StoreOptions{Epochs: 5})
	var sst StoreStats
	id2, cert2, err := second.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 5, Stats: &sst})
	if err != nil || id2 != id || !sst.AlreadyCertified || sst.SentBytes != 0 || sst.Object == 0 || sst.Object == firstObj {
		t.Fatalf("second store of the same bytes: %s, %v, %+v", id2, err, sst)
	}
	secondObj := sst.Object
	if st, err := first.Status(ctx, id); err != nil || st.Objects != 2 || st.Status != StatusCertified {
		t.Fatalf("status with two objects: %+v, %v", st, err)
	}
	size := testCodec(t, first, shards).Params()
	stored, err := size.EncodedSize(uint64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}

	type usage struct {
		blob       holding
		total      int64 // sliver bytes of every blob it lists
		disk       int64 // its value log's allocated blocks
		diskKnown  bool
		statsBytes int64 // Stats().BytesStored, for the log only
	}
	measure := func() []usage {
		out := make([]usage, nodes)
		for i := range nodes {
			n := net.Node(i)
			out[i].blob = held(t, n, shards, id)
			out[i].total = storedBytesOn(t, n, shards)
			out[i].disk, out[i].diskKnown = valueLogDisk(net.NodeDir(i))
			out[i].statsBytes = n.Stats().BytesStored
		}
		return out
	}
	before := measure()
	var sum int64
	for i, u := range before {
		// Each node owns 2 of the 8 shards: a pair of 75,000 + 50,000 bytes
		// on each.
		if u.blob.Pairs != 2 || u.blob.SliverBytes != 250_000 || !u.blob.Metadata || u.total != u.blob.SliverBytes {
			t.Fatalf("node %d before any deletion: %+v, %d bytes in all", i, u.blob, u.total)
		}
		sum += u.blob.SliverBytes
	}
	if uint64(sum) != stored {
		t.Fatalf("the nodes hold %d sliver bytes, the blob's encoded size is %d", sum, stored)
	}

	// The first client deletes its object: refunded epochs 2–5, the blob
	// stays for the second.
	del, err := first.Delete(ctx, firstObj)
	if err != nil || del.BlobEndsEpoch != 0 || del.Refund != stored*(6-1-1) {
		t.Fatalf("deleting the first object: %+v, %v; want a refund of %d and no end", del, err, stored*4)
	}
	if _, err := first.Object(ctx, firstObj); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("the deleted object: %v", err)
	}
	events.advance(false)
	readsBack(t, ctx, second, id, blob)
	if err := second.VerifyCertificate(ctx, cert2); err != nil || !bytes.Equal(mustMarshal(t, cert2), mustMarshal(t, cert)) {
		t.Fatalf("the certificate after the first deletion: %v", err)
	}
	if st, err := second.Status(ctx, id); err != nil || st.Status != StatusCertified || st.Objects != 1 || st.Deleting {
		t.Fatalf("status after the first deletion: %+v, %v", st, err)
	}
	for i, u := range measure() {
		if u.blob != before[i].blob {
			t.Fatalf("node %d changed its holding of a blob another object keeps: %+v → %+v", i, before[i].blob, u.blob)
		}
	}

	// The second deletes the last object in epoch 2: the blob ends at 3.
	del, err = second.Delete(ctx, secondObj)
	if err != nil || del.BlobEndsEpoch != 3 || del.Refund != stored*(6-2-1) {
		t.Fatalf("deleting the last object: %+v, %v", del, err)
	}
	if st, err := second.Status(ctx, id); err != nil || st.Status != StatusCertified || st.Objects != 0 || !st.Deleting || st.EndEpoch != 3 {
		t.Fatalf("status once its last object is deleted: %+v, %v", st, err)
	}
	readsBack(t, ctx, first, id, blob) // the bytes stay to the epoch's end
	events.advance(false)
	index := events.awaitEnded(control.EventBlobDeleted, id)
	if expired := events.index(control.EventBlobExpired, id); expired != 0 {
		t.Fatalf("the deleted blob also expired (event %d)", expired)
	}
	after := measure()
	for i, u := range after {
		if u.blob != (holding{}) || u.total != 0 || blobsOn(t, net.Node(i), shards)[id] {
			t.Fatalf("node %d still holds the deleted blob after applying event %d: %+v, %d bytes in all", i, index, u.blob, u.total)
		}
		if u.diskKnown {
			// Every record of the blob is a hole now, and nothing else
			// is stored.
			after[i].disk = awaitDisk(ctx, net.NodeDir(i), 0)
		}
	}
	for i, u := range after {
		t.Logf("node %d: blob sliver bytes %d → %d (pairs %d → %d, metadata %v → %v), all sliver bytes %d → %d, value log on disk %d → %d bytes, Stats().BytesStored (received, a counter) %d → %d",
			i, before[i].blob.SliverBytes, u.blob.SliverBytes, before[i].blob.Pairs, u.blob.Pairs, before[i].blob.Metadata, u.blob.Metadata,
			before[i].total, u.total, before[i].disk, u.disk, before[i].statsBytes, u.statsBytes)
		if u.diskKnown && (before[i].disk < 250_000 || u.disk != 0) {
			t.Fatalf("node %d: value log on %d bytes of disk before, %d after: want the blob's records, then none", i, before[i].disk, u.disk)
		}
	}
	readsDeleted(t, ctx, first, id)
	readsDeleted(t, ctx, second, id)
}

// A permanent object cannot be deleted before its end epoch: ErrPermanent,
// the object, the blob and the quota unchanged. A deletable one can: the
// current epoch stays paid for and exactly the later ones are refunded
// (stored bytes × (end epoch − current epoch − 1)), once — deleting it
// again finds no object. A permanent object past its end epoch is gone
// with it.
func TestDeletePermanentAndRefund(t *testing.T) {
	const shards = 8
	net := startNet(t, 4, shards, nil)
	ctx := testContext(t, 60*time.Second)
	events := newEventLog(t, ctx, net)
	c := addClient(t, ctx, net, "app", 1<<30)
	params := testCodec(t, c, shards).Params()

	perm := randomBlob(2201, 40_000)
	permID, _, permObj := storeObject(t, ctx, c, perm, StoreOptions{Epochs: 2, Permanent: true})
	gone := randomBlob(2202, 50_000)
	goneID, _, goneObj := storeObject(t, ctx, c, gone, StoreOptions{Epochs: 5})
	if o, err := c.Object(ctx, permObj); err != nil || o.Deletable || o.EndEpoch != 3 || o.Owner != "app" {
		t.Fatalf("the permanent object: %+v, %v", o, err)
	}
	// Epoch 2: the permanent object's last; the deletable one has epochs
	// 3, 4 and 5 left after this one.
	events.advance(false)

	q, err := c.Quota(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, permObj); !errors.Is(err, ErrPermanent) {
		t.Fatalf("deleting a permanent object: %v", err)
	}
	if after, err := c.Quota(ctx); err != nil || after.Used != q.Used {
		t.Fatalf("a refused deletion changed the quota: %d used → %+v, %v", q.Used, after, err)
	}
	if o, err := c.Object(ctx, permObj); err != nil || o.EndEpoch != 3 {
		t.Fatalf("the permanent object after the refused deletion: %+v, %v", o, err)
	}
	if st, err := c.Status(ctx, permID); err != nil || st.Objects != 1 || st.Deleting || st.PermanentEndEpoch != 3 {
		t.Fatalf("the permanent blob after the refused deletion: %+v, %v", st, err)
	}

	goneSize, err := params.EncodedSize(uint64(len(gone)))
	if err != nil {
		t.Fatal(err)
	}
	del, err := c.Delete(ctx, goneObj)
	if want := goneSize * (6 - 2 - 1); err != nil || del.Refund != want || del.BlobEndsEpoch != 3 {
		t.Fatalf("deleting the deletable object in epoch 2 (end epoch 6): %+v, %v; want a refund of %d and the blob ending at 3", del, err, want)
	}
	after, err := c.Quota(ctx)
	if err != nil || after.Used != q.Used-del.Refund {
		t.Fatalf("quota after a refund of %d: %d used → %+v, %v", del.Refund, q.Used, after, err)
	}
	if _, err := c.Delete(ctx, goneObj); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("deleting the object again: %v", err)
	}
	if again, err := c.Quota(ctx); err != nil || again.Used != after.Used {
		t.Fatalf("a second deletion refunded again: %+v, %v", again, err)
	}

	// Epoch 3: the permanent object reached its end epoch and ended with
	// its blob; the deleted blob is gone.
	events.advance(false)
	if _, err := c.Delete(ctx, permObj); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("deleting a permanent object past its end epoch: %v", err)
	}
	if _, err := c.Read(ctx, permID, ReadOptions{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("read of the permanent blob past its end: %v", err)
	}
	readsDeleted(t, ctx, c, goneID)
	if final, err := c.Quota(ctx); err != nil || final.Used != after.Used {
		t.Fatalf("the epoch change moved the quota: %+v, %v", final, err)
	}
}

// Only an object's owner deletes, transfers or edits it: another client
// is refused (ErrNotOwner, PermissionDenied at the control plane) and
// nothing changes; after a transfer the roles swap. Attributes stay
// within their bounds: a store or an edit past them is refused by the
// control plane (InvalidArgument) — the merged set too, though each edit
// alone fits — and the SDK refuses an edit that cannot fit before sending.
func TestObjectOwnerOnly(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	ctx := testContext(t, 60*time.Second)
	alice := addClient(t, ctx, net, "alice", 1<<30)
	mallory := addClient(t, ctx, net, "mallory", 1<<30)
	operator := newClient(t, net, func(cfg *Config) { cfg.Token = net.OperatorToken })

	blob := randomBlob(2401, 20_000)
	attrs := map[string]string{"content-type": "text/plain", "name": "a.txt"}
	id, _, obj := storeObject(t, ctx, alice, blob, StoreOptions{Attributes: attrs})
	want, err := alice.Object(ctx, obj)
	if err != nil || !maps.Equal(want.Attributes, attrs) || want.Owner != "alice" {
		t.Fatalf("the object: %+v, %v", want, err)
	}
	quotas := func() [2]uint64 {
		var out [2]uint64
		for i, c := range []*Client{alice, mallory} {
			q, err := c.Quota(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = q.Used
		}
		return out
	}
	unchanged := func(what string, q [2]uint64) {
		t.Helper()
		got, err := alice.Object(ctx, obj)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s changed the object: %+v → %+v, %v", what, want, got, err)
		}
		if now := quotas(); now != q {
			t.Fatalf("%s changed the quotas used: %v → %v", what, q, now)
		}
		if st, err := alice.Status(ctx, id); err != nil || st.Objects != 1 || st.Deleting {
			t.Fatalf("%s changed the blob: %+v, %v", what, st, err)
		}
	}
	q := quotas()
	for who, c := range map[string]*Client{"another client": mallory, "the operator": operator} {
		if _, err := c.Delete(ctx, obj); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("delete by %s: %v", who, err)
		}
		if err := c.Transfer(ctx, obj, "mallory"); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("transfer by %s: %v", who, err)
		}
		if err := c.SetAttributes(ctx, obj, map[string]string{"name": "b.txt"}, nil); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("attributes set by %s: %v", who, err)
		}
		if err := c.SetAttributes(ctx, obj, nil, []string{"name"}); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("attribute removed by %s: %v", who, err)
		}
		unchanged("refused calls by "+who, q)
	}

	// Bounds. One value over 1,024 bytes: the SDK does not send it.
	if err := alice.SetAttributes(ctx, obj, map[string]string{"note": strings.Repeat("x", control.MaxAttributeValueLen+1)}, nil); err == nil {
		t.Fatal("an attribute value over the bound was taken")
	}
	// Each edit fits, their merge does not: the control plane refuses it.
	big := func(prefix string, n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("%s%d", prefix, i)] = strings.Repeat("v", 1000)
		}
		return m
	}
	if err := alice.SetAttributes(ctx, obj, big("a", 3), nil); err != nil {
		t.Fatal(err)
	}
	want.Attributes = maps.Clone(attrs)
	maps.Copy(want.Attributes, big("a", 3))
	unchanged("an edit within the bounds (checked: it took)", q)
	if err := alice.SetAttributes(ctx, obj, big("b", 2), nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an edit whose merge exceeds %d bytes: %v", control.MaxAttributesBytes, err)
	}
	unchanged("an edit refused for its size", q)
	tooMany := map[string]string{}
	for i := range control.MaxAttributes + 1 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	if _, _, err := alice.Store(ctx, bytes.NewReader(randomBlob(2402, 1000)), StoreOptions{Attributes: tooMany}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a store with %d attributes: %v", len(tooMany), err)
	}
	unchanged("a store refused for its attributes", q)

	// A transfer to no client is refused; to mallory, the roles swap.
	// (NotFound, and not ErrObjectNotFound: the object is there, the
	// client is what does not exist.)
	if err := alice.Transfer(ctx, obj, "nobody"); status.Code(err) != codes.NotFound || errors.Is(err, ErrObjectNotFound) || !strings.Contains(err.Error(), `no client "nobody"`) {
		t.Fatalf("transfer to an unknown client: %v", err)
	}
	unchanged("a transfer to nobody", q)
	if err := alice.Transfer(ctx, obj, "mallory"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Delete(ctx, obj); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("delete by the former owner: %v", err)
	}
	if err := alice.SetAttributes(ctx, obj, nil, []string{"name"}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("edit by the former owner: %v", err)
	}
	if err := mallory.SetAttributes(ctx, obj, nil, []string{"name"}); err != nil {
		t.Fatal(err)
	}
	if o, err := mallory.Object(ctx, obj); err != nil || o.Owner != "mallory" || o.Attributes["name"] != "" || o.Attributes["content-type"] != "text/plain" {
		t.Fatalf("the transferred object: %+v, %v", o, err)
	}
	del, err := mallory.Delete(ctx, obj)
	if err != nil || del.BlobEndsEpoch != 2 {
		t.Fatalf("delete by the new owner: %+v, %v", del, err)
	}
}

// A node is down while a blob's last object is deleted and the epoch moves
// on. Back, it drops the blob's slivers once it has caught up on the
// events — replaying them after a short absence, or bootstrapping from the
// control plane's state after one longer than the events are kept — while
// a blob another client still holds stays on it untouched.
func TestDeleteWhileNodeDown(t *testing.T) {
	const nodes, shards = 4, 8
	net := startNet(t, nodes, shards, nil)
	ctx := testContext(t, 90*time.Second)
	events := newEventLog(t, ctx, net)
	first := newClient(t, net)
	second := addClient(t, ctx, net, "second", 1<<40)

	// kept: both clients own an object (the first deletes its own);
	// replayed, bootstrapped: the first client's alone, deleted while a
	// node is down.
	keptBlob := randomBlob(2301, 120_000)
	kept, _, firstKept := storeObject(t, ctx, first, keptBlob, StoreOptions{Epochs: 20})
	storeObject(t, ctx, second, keptBlob, StoreOptions{Epochs: 20})
	replayedBlob, bootBlob := randomBlob(2302, 120_000), randomBlob(2303, 120_000)
	replayed, _, replayedObj := storeObject(t, ctx, first, replayedBlob, StoreOptions{Epochs: 20})
	booted, _, bootObj := storeObject(t, ctx, first, bootBlob, StoreOptions{Epochs: 20})
	// A store returns once a quorum confirmed and the stragglers had
	// their wait; a node cut off then (a loaded machine) recovers its
	// pairs from its peers afterwards.
	before := map[crypto.BlobID][]holding{}
	for _, id := range []crypto.BlobID{kept, replayed, booted} {
		for i := range nodes {
			var h holding
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if h = held(t, net.Node(i), shards, id); h.Pairs == 2 && h.Metadata {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %d holds %+v of %s 30 s after the store", i, h, id)
				}
			}
			before[id] = append(before[id], h)
		}
	}
	checkNode := func(i int, deleted crypto.BlobID) {
		t.Helper()
		node := net.Node(i)
		if h := held(t, node, shards, deleted); h != (holding{}) {
			t.Fatalf("node %d still holds %+v of deleted blob %s", i, h, deleted)
		}
		if h := held(t, node, shards, kept); h != before[kept][i] {
			t.Fatalf("node %d changed its holding of a blob another client keeps: %+v → %+v", i, before[kept][i], h)
		}
	}

	// Node 1 misses the deletion and the epoch change that applies it,
	// and replays them when it is back.
	if err := net.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Delete(ctx, replayedObj); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Delete(ctx, firstKept); err != nil {
		t.Fatal(err)
	}
	events.advance(false) // epoch 2
	index := events.awaitEnded(control.EventBlobDeleted, replayed)
	for _, i := range []int{0, 2, 3} {
		checkNode(i, replayed)
	}
	if err := net.StartNode(ctx, 1); err != nil {
		t.Fatal(err)
	}
	awaitApplied(t, ctx, net, index, 1)
	checkNode(1, replayed)
	readsDeleted(t, ctx, first, replayed)
	readsBack(t, ctx, second, kept, keptBlob)

	// Node 2 goes down in epoch 2 and the deletion is in epoch 4. The
	// node stays away until the events after its last are compacted —
	// the control plane keeps R epochs of them: at epoch back = 2 + R + 1
	// the first kept is epoch 4's start, and epoch 3's is gone — while
	// the deleted blob's record is still kept (R epochs after its end, 5,
	// so up to epoch 5 + R − 1). Back, the node cannot replay: it
	// bootstraps from state, and must learn there that a blob it holds
	// was deleted.
	const down, deletedIn = 2, 4
	back := uint64(down + committee.DefaultRetainEpochs + 1)
	if back >= deletedIn+1+uint64(committee.DefaultRetainEpochs) {
		t.Fatalf("no epoch both past the node's events and within the deleted blob's record (R = %d)", committee.DefaultRetainEpochs)
	}
	if err := net.StopNode(2); err != nil {
		t.Fatal(err)
	}
	for events.advance(false) < deletedIn {
	}
	if _, err := first.Delete(ctx, bootObj); err != nil {
		t.Fatal(err)
	}
	for events.advance(false) < back {
	}
	events.awaitEnded(control.EventBlobDeleted, booted)
	// Node 2 never saw epoch 3 start: the events after the last one it
	// may have applied are gone.
	watch := weftv1.NewWatchClient(dialControl(t, net))
	if _, err := watch.Events(ctx, &weftv1.EventsRequest{AfterIndex: events.epochStart(down+1) - 1, Limit: 1}); status.Code(err) != codes.OutOfRange {
		t.Fatalf("events from epoch %d's start on, at epoch %d: %v; the test needs them compacted", down+1, back, err)
	}
	if st, err := first.Status(ctx, booted); err != nil || st.Status != StatusDeleted {
		t.Fatalf("status of the deleted blob at epoch %d: %+v, %v; the test needs its record kept", back, st, err)
	}
	for _, i := range []int{0, 1, 3} {
		checkNode(i, booted)
	}
	head, err := control.NewClient(dialControl(t, net), "", nil).Watch(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.StartNode(ctx, 2); err != nil {
		t.Fatal(err)
	}
	store := net.Node(2).Store()
	for {
		applied, err := store.AppliedEvent()
		if err != nil {
			t.Fatal(err)
		}
		if _, booting, err := store.Bootstrap(); err != nil {
			t.Fatal(err)
		} else if applied >= head.Index && !booting {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node 2 did not catch up: applied %d of %d", applied, head.Index)
		case <-time.After(5 * time.Millisecond):
		}
	}
	checkNode(2, booted)
	checkNode(2, replayed)
	readsDeleted(t, ctx, first, booted)
	readsBack(t, ctx, second, kept, keptBlob)
}

// Many blobs deleted in one epoch all end at the next one's start, in the
// one command that changes the epoch: more events under one index than a
// node asks for in one page (256). Every node drops every one of them —
// here two stored blobs deleted after 300 registrations whose stores
// never got further (their blob-deleted events come first) — and keeps
// the blob still owned.
func TestDeleteManyInOneEpoch(t *testing.T) {
	const nodes, shards, count = 4, 8, 300
	net := startNet(t, nodes, shards, nil)
	ctx := testContext(t, 60*time.Second)
	events := newEventLog(t, ctx, net)
	c := newClient(t, net)
	codec := testCodec(t, c, shards)

	keptBlob := randomBlob(2500, 5000)
	kept, _, _ := storeObject(t, ctx, c, keptBlob, StoreOptions{})
	ids, objects := make([]crypto.BlobID, count), make([]uint64, count)
	parallel(t, count, func(i int) error {
		enc, err := codec.Encode(randomBlob(uint64(2501+i), 100))
		if err != nil {
			return err
		}
		ids[i] = enc.ID
		_, objects[i], err = c.register(ctx, enc, 5, objectKind{deletable: true})
		return err
	})
	var last []crypto.BlobID
	var lastObjects []uint64
	for i := range 2 {
		id, _, obj := storeObject(t, ctx, c, randomBlob(uint64(2490+i), 50_000), StoreOptions{})
		last, lastObjects = append(last, id), append(lastObjects, obj)
	}
	parallel(t, count, func(i int) error {
		_, err := c.Delete(ctx, objects[i])
		return err
	})
	// The stored blobs' deletions come last, and so do their ends.
	for _, obj := range lastObjects {
		if _, err := c.Delete(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	ids = append(ids, last...)
	e := events.advance(false)
	change := events.epochStart(e)
	n := 0
	events.find(func(ev *weftv1.Event) bool {
		if ev.Index == change {
			n++
		}
		return ev.Index > change
	})
	t.Logf("the change to epoch %d made %d events", e, n)
	// Every node has applied the change (advance waited for it).
	for i := range nodes {
		on := blobsOn(t, net.Node(i), shards)
		for _, id := range ids {
			if h := held(t, net.Node(i), shards, id); h != (holding{}) || on[id] {
				t.Fatalf("node %d still holds %+v of %s, deleted in epoch %d", i, h, id, e-1)
			}
		}
		if !on[kept] || len(on) != 1 {
			t.Fatalf("node %d lists %d blobs, want the kept one alone", i, len(on))
		}
	}
	for _, id := range ids {
		events.awaitEnded(control.EventBlobDeleted, id)
	}
	for _, id := range last {
		readsDeleted(t, ctx, c, id)
	}
	readsBack(t, ctx, c, kept, keptBlob)
}

// ownersHolding counts the shards whose current owner holds the blob's
// pair for them (running nodes only).
func ownersHolding(t *testing.T, net *devnet.Network, id crypto.BlobID) int {
	t.Helper()
	n := 0
	for i := range net.Nodes() {
		node := net.Node(i)
		if node == nil {
			continue
		}
		for _, shard := range net.Owned(i) {
			if has, err := node.Store().HasPair(shard, id); err != nil {
				t.Fatal(err)
			} else if has {
				n++
			}
		}
	}
	return n
}

// goneEverywhere checks that no running node keeps anything of a blob:
// no sliver under any shard, no metadata, not in its blob list.
func goneEverywhere(t *testing.T, net *devnet.Network, shards int, id crypto.BlobID) {
	t.Helper()
	for i := range net.Nodes() {
		node := net.Node(i)
		if node == nil {
			continue
		}
		if h := held(t, node, shards, id); h != (holding{}) || blobsOn(t, node, shards)[id] {
			t.Fatalf("node %d keeps %+v of ended blob %s", i, h, id)
		}
	}
}

// Deletion races a store of the same bytes by another client. Whatever
// order the control plane applies them in — the delete first (the store's
// registration calls the blob's end off, or comes after it and registers
// the bytes anew), the store's registration first (the delete then leaves
// the blob to its object), with or without an epoch change between them —
// a store that returns a certificate leaves a blob that is certified,
// readable and kept by the nodes after the next epoch change; a store
// never ends certified while its bytes are dropped. Four orders are
// forced (the store held at its upload through its Progress hook), then
// deletes, stores and epoch changes are started together, many times.
func TestDeleteRacesStore(t *testing.T) {
	const nodes, shards = 4, 8
	net := startNet(t, nodes, shards, nil)
	ctx := testContext(t, 120*time.Second)
	events := newEventLog(t, ctx, net)
	a := addClient(t, ctx, net, "a", 1<<40)
	b := addClient(t, ctx, net, "b", 1<<40)
	codec := testCodec(t, a, shards)
	quorum := codec.Params().WriteQuorum()
	seed := uint64(2600)
	next := func() []byte { seed++; return randomBlob(seed, 60_000) }

	// survived checks, after the next epoch change, that b's store stands.
	survived := func(what string, id crypto.BlobID, blob []byte, cert *crypto.Certificate) {
		t.Helper()
		events.advance(false)
		if err := b.VerifyCertificate(ctx, cert); err != nil || cert.BlobID != id {
			t.Fatalf("%s: the store's certificate: %v", what, err)
		}
		st, err := b.Status(ctx, id)
		if err != nil || st.Status != StatusCertified || st.Deleting || st.Objects < 1 {
			t.Fatalf("%s: status after the epoch change: %+v, %v", what, st, err)
		}
		if mine, err := b.ObjectsOf(ctx, id); err != nil || len(mine) != 1 {
			t.Fatalf("%s: b's objects of the blob: %v, %v", what, mine, err)
		}
		readsBack(t, ctx, b, id, blob)
		if n := ownersHolding(t, net, id); n < quorum {
			t.Fatalf("%s: %d shards' owners hold the blob, a certificate needs %d", what, n, quorum)
		}
	}
	heldAt := func(hook func()) StoreOptions {
		var once sync.Once
		return StoreOptions{Progress: func(done, _ int64) {
			if done > 0 {
				once.Do(hook) // Progress calls are serialized: the upload waits here
			}
		}}
	}
	store := func(blob []byte, opts StoreOptions) (crypto.BlobID, *crypto.Certificate, *StoreStats) {
		t.Helper()
		var st StoreStats
		opts.Stats = &st
		id, cert, err := b.Store(ctx, bytes.NewReader(blob), opts)
		if err != nil {
			t.Fatal(err)
		}
		return id, cert, &st
	}
	del := func(obj uint64) {
		if _, err := a.Delete(ctx, obj); err != nil {
			t.Error(err) // may run in a Progress hook
		}
	}

	// 1. The delete first, the store in the same epoch: its registration
	// calls the blob's end off and it returns the certificate a stored.
	blob := next()
	id, _, obj := storeObject(t, ctx, a, blob, StoreOptions{})
	if d, err := a.Delete(ctx, obj); err != nil || d.BlobEndsEpoch == 0 {
		t.Fatalf("a's delete of the blob's only object: %+v, %v", d, err)
	}
	_, cert, st := store(blob, StoreOptions{})
	if !st.AlreadyCertified {
		t.Fatalf("store after the delete: %+v", st)
	}
	survived("delete, then store", id, blob, cert)

	// 2. The store's registration first: a registered (its own store
	// stopped before any upload), b registers and is held at its upload
	// while a deletes.
	blob = next()
	enc, err := codec.Encode(blob)
	if err != nil {
		t.Fatal(err)
	}
	_, obj, err = a.register(ctx, enc, 10, objectKind{deletable: true})
	if err != nil {
		t.Fatal(err)
	}
	_, cert, st = store(blob, heldAt(func() { del(obj) }))
	if st.AlreadyCertified || st.SentBytes == 0 {
		t.Fatalf("store of a registered blob: %+v", st)
	}
	survived("store registered, delete during its upload", enc.ID, blob, cert)

	// 3. As 2, with the epoch changing during the upload too: the store
	// collects again from the new committee.
	blob = next()
	if enc, err = codec.Encode(blob); err != nil {
		t.Fatal(err)
	}
	if _, obj, err = a.register(ctx, enc, 10, objectKind{deletable: true}); err != nil {
		t.Fatal(err)
	}
	_, cert, st = store(blob, heldAt(func() {
		del(obj)
		if _, err := net.AdvanceEpoch(ctx, false); err != nil {
			t.Error(err)
		}
	}))
	if st.Rounds != 2 {
		t.Fatalf("store across the delete and an epoch change: %d rounds", st.Rounds)
	}
	survived("delete and epoch change during the upload", enc.ID, blob, cert)

	// 4. The delete and its epoch change first: the nodes drop the blob;
	// the store then registers the bytes anew and uploads them again.
	blob = next()
	id, _, obj = storeObject(t, ctx, a, blob, StoreOptions{})
	del(obj)
	events.advance(false)
	events.awaitEnded(control.EventBlobDeleted, id)
	goneEverywhere(t, net, shards, id)
	_, cert, st = store(blob, StoreOptions{})
	if st.AlreadyCertified || st.SentBytes == 0 {
		t.Fatalf("store of a deleted blob: %+v", st)
	}
	survived("delete, epoch change, then store", id, blob, cert)

	// 5. All at once, many times: a's delete, b's store and (every other
	// time) an epoch change, released together.
	outcomes := map[string]int{}
	for round := range 16 {
		blob := next()
		id, _, obj := storeObject(t, ctx, a, blob, StoreOptions{})
		start := make(chan struct{})
		var wg sync.WaitGroup
		var cert *crypto.Certificate
		var storeErr, delErr, advErr error
		var deletion *Deletion
		wg.Go(func() {
			<-start
			deletion, delErr = a.Delete(ctx, obj)
		})
		wg.Go(func() {
			<-start
			_, cert, storeErr = b.Store(ctx, bytes.NewReader(blob), StoreOptions{})
		})
		if round%2 == 1 {
			wg.Go(func() {
				<-start
				_, advErr = net.AdvanceEpoch(ctx, false)
			})
		}
		close(start)
		wg.Wait()
		if delErr != nil || advErr != nil {
			t.Fatalf("round %d: delete %v, epoch change %v", round, delErr, advErr)
		}
		what := fmt.Sprintf("round %d", round)
		switch {
		case storeErr != nil:
			// Allowed, if clean: not certified by this store; whatever
			// the blob is, the nodes agree with it.
			outcomes["store failed"]++
			t.Logf("%s: the store failed: %v", what, storeErr)
			events.advance(false)
			if st, err := b.Status(ctx, id); err == nil && st.Status == StatusDeleted {
				goneEverywhere(t, net, shards, id)
			} else if err == nil && st.Status == StatusCertified {
				readsBack(t, ctx, b, id, blob)
			}
		default:
			survived(what, id, blob, cert)
			switch {
			case deletion.BlobEndsEpoch == 0:
				outcomes["store's registration first"]++
			case events.index(control.EventBlobDeleted, id) == 0:
				outcomes["delete first, the store's registration called the end off"]++
			default:
				outcomes["delete and epoch change first, the bytes registered and stored anew"]++
			}
		}
	}
	t.Logf("outcomes of the concurrent rounds: %v", outcomes)
}

// awaitStable waits until the epoch's handover is complete.
func awaitStable(t *testing.T, ctx context.Context, net *devnet.Network) {
	t.Helper()
	for {
		_, phase, err := net.Phase(ctx)
		if err == nil && phase == "stable" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the handover did not finish: phase %q, %v", phase, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// awaitAllOwners waits until every shard's owner holds the blob's pair (a
// store returns once a quorum has it; the rest come with the stragglers
// or recovery).
func awaitAllOwners(t *testing.T, ctx context.Context, net *devnet.Network, shards int, id crypto.BlobID) {
	t.Helper()
	for ownersHolding(t, net, id) < shards {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d shards' owners hold %s", ownersHolding(t, net, id), id)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A blob is deleted while its shards are handed over to a joining node.
// Deleted during the handover, it is still live in that epoch, and the
// incoming node may copy it; at the next epoch it is gone from every node,
// incoming and outgoing. Deleted during a handover the operator then
// forces past (the incoming node down), it ends while the outgoing nodes
// still hold the moved shards for it: they drop it there and keep the
// live blobs, and the incoming node, back, syncs the live blobs and not
// the ended one. Throughout, the blobs whose objects live read back and
// every shard's owner holds them.
func TestDeleteDuringHandover(t *testing.T) {
	const shards = 8
	net := startNet(t, 4, shards, nil)
	ctx := testContext(t, 120*time.Second)
	events := newEventLog(t, ctx, net)
	a := addClient(t, ctx, net, "a", 1<<40)
	b := addClient(t, ctx, net, "b", 1<<40)

	// 150 kB: slivers of 37,500 and 25,000 bytes, the primary ones in the
	// value log.
	blobs := map[string][]byte{}
	ids := map[string]crypto.BlobID{}
	objs := map[string]uint64{}
	for i, name := range []string{"x", "w", "shared", "kept"} {
		blobs[name] = randomBlob(uint64(2700+i), 150_000)
		owner := a
		if name == "kept" {
			owner = b
		}
		ids[name], _, objs[name] = storeObject(t, ctx, owner, blobs[name], StoreOptions{Epochs: 10})
	}
	storeObject(t, ctx, b, blobs["shared"], StoreOptions{Epochs: 10})
	for _, id := range ids {
		awaitAllOwners(t, ctx, net, shards, id)
	}
	live := func(what string) {
		t.Helper()
		for _, name := range []string{"shared", "kept"} {
			readsBack(t, ctx, b, ids[name], blobs[name])
			if n := ownersHolding(t, net, ids[name]); n != shards {
				t.Fatalf("%s: %d of %d shards' owners hold the live blob %q", what, n, shards, name)
			}
		}
	}
	// join adds a node with stake, keeps it down across the epoch
	// change (the handover stays open) and returns it with the moves.
	join := func() (int, map[int]shardmapMove) {
		t.Helper()
		before := ownersNow(t, ctx, net)
		joined, err := net.AddNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := net.SetStake(ctx, joined, 100); err != nil {
			t.Fatal(err)
		}
		if err := net.StopNode(joined); err != nil {
			t.Fatal(err)
		}
		events.advance(false)
		if _, phase, err := net.Phase(ctx); err != nil || phase != "handover" {
			t.Fatalf("phase %q, %v with the incoming node down", phase, err)
		}
		moves := map[int]shardmapMove{}
		for shard, owner := range ownersNow(t, ctx, net) {
			if owner != before[shard] {
				if owner != string(net.NodeID(joined)) {
					t.Fatalf("shard %d moved to %s, not to the joining node", shard, owner)
				}
				moves[shard] = shardmapMove{from: nodeIndex(t, net, before[shard]), to: joined}
			}
		}
		if len(moves) == 0 {
			t.Fatal("no shard moved to the joining node")
		}
		return joined, moves
	}

	// Handover 1: x (a's alone) and a's object of shared are deleted
	// while the epoch is in handover; the incoming node then syncs.
	joined, moves := join()
	for _, name := range []string{"x", "shared"} {
		if _, err := a.Delete(ctx, objs[name]); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := a.Status(ctx, ids["x"]); err != nil || !st.Deleting {
		t.Fatalf("x after its last object's deletion: %+v, %v", st, err)
	}
	if err := net.StartNode(ctx, joined); err != nil {
		t.Fatal(err)
	}
	awaitStable(t, ctx, net)
	// x is still live in this epoch: the incoming node copied it too.
	for shard, m := range moves {
		if has, err := net.Node(m.to).Store().HasPair(uint32(shard), ids["x"]); err != nil || !has {
			t.Fatalf("node %d synced shard %d without x, live until the epoch ends: %v", m.to, shard, err)
		}
	}
	readsBack(t, ctx, b, ids["x"], blobs["x"])
	live("handover 1 done")
	events.advance(false)
	events.awaitEnded(control.EventBlobDeleted, ids["x"])
	goneEverywhere(t, net, shards, ids["x"])
	readsDeleted(t, ctx, a, ids["x"])
	live("the epoch after handover 1")
	t.Logf("handover 1 moved %v", moves)

	// Handover 2: w is deleted during the handover, and the epoch is
	// forced on before the incoming node is back: w ends while the
	// outgoing nodes still hold the moved shards for it.
	joined, moves = join()
	if _, err := a.Delete(ctx, objs["w"]); err != nil {
		t.Fatal(err)
	}
	events.advance(true)
	events.awaitEnded(control.EventBlobDeleted, ids["w"])
	if _, phase, _ := net.Phase(ctx); phase != "handover" {
		t.Fatalf("phase %q after the forced change, the incoming node down", phase)
	}
	for shard, m := range moves {
		holder := net.Node(m.from).Store()
		for name, want := range map[string]bool{"w": false, "shared": true, "kept": true} {
			if has, err := holder.HasPair(uint32(shard), ids[name]); err != nil || has != want {
				t.Fatalf("node %d, holding moved shard %d for node %d: pair of %q %v (%v), want %v", m.from, shard, m.to, name, has, err, want)
			}
		}
	}
	goneEverywhere(t, net, shards, ids["w"])
	if err := net.StartNode(ctx, joined); err != nil {
		t.Fatal(err)
	}
	awaitStable(t, ctx, net)
	goneEverywhere(t, net, shards, ids["w"])
	readsDeleted(t, ctx, a, ids["w"])
	live("handover 2 done")
	t.Logf("handover 2 moved %v", moves)
}

type shardmapMove struct{ from, to int }

// ownersNow is every shard's owner in the current epoch.
func ownersNow(t *testing.T, ctx context.Context, net *devnet.Network) []string {
	t.Helper()
	st, err := weftv1.NewWatchClient(dialControl(t, net)).WatchState(ctx, &weftv1.WatchStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.Owners
}

func nodeIndex(t *testing.T, net *devnet.Network, id string) int {
	t.Helper()
	for i := range net.Nodes() {
		if string(net.NodeID(i)) == id {
			return i
		}
	}
	t.Fatalf("no node %s", id)
	return -1
}

// parallel runs f(0), …, f(n−1) on 8 goroutines and fails the test with
// the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	work, errs := make(chan int), make(chan error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				errs <- f(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func mustMarshal(t *testing.T, cert *crypto.Certificate) []byte {
	t.Helper()
	raw, err := cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
