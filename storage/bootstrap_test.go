package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/committee"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// markInvalid marks a blob invalid with a certificate every member
// signed, reported as node 0.
func (w *writer) markInvalid(id crypto.BlobID) {
	w.t.Helper()
	ctx := context.Background()
	com, err := control.NewClient(w.conn, "", nil).Committee(ctx, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	var sigs []crypto.MemberSignature
	for i := range w.net.Nodes() {
		sig, err := w.net.Key(i).SignMessage(com.Epoch, crypto.BlobInvalid{BlobID: id})
		if err != nil {
			w.t.Fatal(err)
		}
		sigs = append(sigs, crypto.MemberSignature{Key: w.net.Key(i).PublicKey(), Signature: sig})
	}
	cert, err := crypto.BuildCertificate(com.View(), crypto.BlobInvalid{BlobID: id}, sigs)
	if err != nil {
		w.t.Fatal(err)
	}
	raw, _ := cert.MarshalBinary()
	reporter := control.NewClient(w.conn, w.net.NodeID(0), w.net.Key(0))
	for attempt := 0; ; attempt++ {
		// Node 0 signs with clock nonces too: a collision is refused, retry.
		err = reporter.Report(ctx, com.Epoch, &weftv1.MarkBlobInvalidRequest{BlobId: id[:], Certificate: raw})
		if err == nil || attempt == 5 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		w.t.Fatal(err)
	}
}

func openStore(t *testing.T, w *writer, name string) *storage.Store {
	t.Helper()
	codecs, err := coding.NewCodecs(w.codec.Params().Shards)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(filepath.Join(t.TempDir(), name+".db"), codecs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func pendingIDs(t *testing.T, st *storage.Store) []storage.PendingBlob {
	t.Helper()
	p, err := st.Pending()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(p, func(a, b storage.PendingBlob) int { return slices.Compare(a.ID[:], b.ID[:]) })
	return p
}

// Bootstrap from state equals replay for what a node keeps: a store that
// followed the events from before the first blob (every blob's history it
// learns by replay, before compaction), one that fell behind
// the horizon holding data of blobs that ended meanwhile, and a new one
// end with the same recovery list (the live certified blobs, with their
// epochs); the one behind drops what ended or turned invalid and keeps
// what is live.
func TestBootstrapFromStateEqualsReplay(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 8})
	ctx := context.Background()
	plane := control.NewClient(w.conn, "", nil)

	replayed := openStore(t, w, "replayed")
	stop := storage.FollowEvents(replayed, plane, "replayer")
	defer stop()
	behind, fresh := openStore(t, w, "behind"), openStore(t, w, "fresh")

	live := w.storeUntil(3000, 1000, true)
	ending := w.storeUntil(2000, w.epoch()+1, true)
	invalid := w.storeUntil(1000, 1000, true)
	lapsing := w.storeUntil(500, 1000, false) // never certified
	w.markInvalid(invalid.ID)
	// The node that falls behind took its share of each, then went away.
	for _, enc := range []*coding.Encoded{live, ending, invalid, lapsing} {
		if err := behind.PutMetadataShards([]uint32{0, 1}, enc.ID, enc.Metadata); err != nil {
			t.Fatal(err)
		}
	}
	if err := behind.SetAppliedEvent(1); err != nil {
		t.Fatal(err)
	}

	for range committee.DefaultRetainEpochs + 2 {
		if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	late := w.storeUntil(1500, 1000, true) // certified after the horizon moved
	if _, err := plane.Events(ctx, 0, 1, 0); status.Code(err) != codes.OutOfRange {
		t.Fatalf("events from 0 after %d epochs: %v, want OutOfRange", committee.DefaultRetainEpochs+2, err)
	}

	start := time.Now()
	stopBehind := storage.FollowEvents(behind, plane, "behind")
	defer stopBehind()
	stopFresh := storage.FollowEvents(fresh, plane, "fresh")
	defer stopFresh()
	head, err := plane.Watch(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*storage.Store{"replayed": replayed, "behind": behind, "fresh": fresh} {
		eventually(t, 20*time.Second, name+" caught up and bootstrapped", func() bool {
			applied, _ := st.AppliedEvent()
			_, booting, _ := st.Bootstrap()
			return applied >= head.Index && !booting
		})
	}
	t.Logf("two nodes bootstrapped from state in %v", time.Since(start))

	want := pendingIDs(t, replayed)
	if len(want) != 2 || !slices.ContainsFunc(want, func(p storage.PendingBlob) bool { return p.ID == live.ID }) ||
		!slices.ContainsFunc(want, func(p storage.PendingBlob) bool { return p.ID == late.ID }) {
		t.Fatalf("replay left the recovery list %v, want %s and %s", want, live.ID, late.ID)
	}
	for name, st := range map[string]*storage.Store{"behind": behind, "fresh": fresh} {
		if got := pendingIDs(t, st); !slices.Equal(got, want) {
			t.Fatalf("%s bootstrapped to the recovery list %v, replay to %v", name, got, want)
		}
	}
	if _, err := behind.AnyMetadata(live.ID); err != nil {
		t.Fatalf("the node behind lost a live blob's metadata: %v", err)
	}
	for _, id := range []crypto.BlobID{ending.ID, invalid.ID, lapsing.ID} {
		if _, err := behind.AnyMetadata(id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the node behind still holds blob %s, which ended while it was away (%v)", id, err)
		}
	}
	for name, st := range map[string]*storage.Store{"replayed": replayed, "behind": behind} {
		if bad, _ := st.IsInvalid(invalid.ID); !bad {
			t.Fatalf("%s does not refuse the invalid blob", name)
		}
	}
	// What ended while the node was away stays refused there.
	if err := behind.PutMetadataShards([]uint32{0}, invalid.ID, invalid.Metadata); !errors.Is(err, storage.ErrEnded) {
		t.Fatalf("metadata of the invalid blob taken again after the bootstrap: %v", err)
	}
}

// storeUntil registers a random blob of size bytes until endEpoch and,
// when certified, stores it on every node and certifies it.
func (w *writer) storeUntil(size int, endEpoch uint64, certified bool) *coding.Encoded {
	w.t.Helper()
	enc, err := w.codec.Encode(randomBlob(w.t, size))
	if err != nil {
		w.t.Fatal(err)
	}
	w.registerUntil(enc, endEpoch)
	if certified {
		w.storeRegistered(enc)
	}
	return enc
}

// epoch is the control plane's current epoch.
func (w *writer) epoch() uint64 {
	w.t.Helper()
	st, err := control.NewClient(w.conn, "", nil).Watch(context.Background(), 0, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return st.Epoch
}
