package committee

import (
	"fmt"
	"testing"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// certificateFor builds a certificate of the given type for the current
// committee, signed by its first `signers` members.
func (tf *testFSM) certificateFor(body crypto.MessageBody, signers int) []byte {
	tf.t.Helper()
	s := tf.state()
	rec, _, _ := tf.fsm.Committee(s.Epoch())
	view, err := rec.View()
	if err != nil {
		tf.t.Fatal(err)
	}
	var sigs []crypto.MemberSignature
	for _, m := range rec.Members[:signers] {
		sig, _ := tf.keys[m.Node].SignMessage(s.Epoch(), body)
		pk, _ := crypto.PublicKeyFromBytes(m.PublicKey)
		sigs = append(sigs, crypto.MemberSignature{Key: pk, Signature: sig})
	}
	cert, err := crypto.BuildCertificate(view, body, sigs)
	if err != nil {
		tf.t.Fatal(err)
	}
	b, _ := cert.MarshalBinary()
	return b
}

func lifecycleFSM(t *testing.T) *testFSM {
	tf := newTestFSM(t, Config{Shards: 10})
	for _, id := range []shardmap.NodeID{"a", "b", "c", "d", "e"} {
		tf.register(id, 10)
	}
	tf.advance(false) // epoch 1
	return tf
}

func TestFSMQuota(t *testing.T) {
	tf := lifecycleFSM(t)
	params, _ := coding.NewParams(10)
	stored, _ := params.EncodedSize(100_000)
	// Exactly enough for 100 kB over 2 epochs.
	tf.mustApply(KindAddClient, AddClient{Client: "app", TokenHash: crypto.Digest{1}, Quota: 2 * stored})
	wantCode(t, "same token for another client", tf.apply(KindAddClient, AddClient{Client: "other", TokenHash: crypto.Digest{1}}), CodeAlreadyExists)
	wantCode(t, "unknown client", tf.apply(KindRegisterBlob, RegisterBlob{Client: "nobody", Encoding: 1, Shards: 10, Length: 100_000, EndEpoch: 3}), CodePermissionDenied)
	wantCode(t, "over quota", tf.apply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 100_000, EndEpoch: 4}), CodeResourceExhausted)
	if rec, _, _ := tf.fsm.Client("app"); rec.Used != 0 {
		t.Fatalf("a refused registration charged %d", rec.Used)
	}
	tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 100_000, EndEpoch: 3})
	if rec, _, _ := tf.fsm.Client("app"); rec.Used != 2*stored {
		t.Fatalf("charged %d, want %d", rec.Used, 2*stored)
	}
	wantCode(t, "quota spent", tf.apply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 1, EndEpoch: 2}), CodeResourceExhausted)
	tf.mustApply(KindSetQuota, SetQuota{Client: "app", Quota: 1 << 40})
	tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 1, EndEpoch: 2})
	if id, found, _ := tf.fsm.ClientByToken(crypto.Digest{1}); !found || id != "app" {
		t.Fatal("token lookup")
	}
}

func TestFSMInvalidExtendExpireLapse(t *testing.T) {
	tf := lifecycleFSM(t)
	tf.mustApply(KindAddClient, AddClient{Client: "app", TokenHash: crypto.Digest{1}, Quota: 1 << 40})
	reg := func(root byte, end uint64) crypto.BlobID {
		return tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 500, Root: crypto.Digest{root}, EndEpoch: end}).BlobID
	}
	bad, kept, short, lapsing := reg(1, 10), reg(2, 3), reg(3, 2), reg(4, 10)
	for _, id := range []crypto.BlobID{bad, kept, short} {
		tf.mustApply(KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: tf.certificateFor(crypto.BlobStored{BlobID: id}, 4)})
	}
	// Invalid: a weight-f+1 certificate (f = 3, so 2 members of weight 2 = 4 shards).
	wantCode(t, "availability certificate as invalidity", tf.apply(KindMarkInvalid, MarkBlobInvalid{BlobID: bad, Certificate: tf.certificateFor(crypto.BlobStored{BlobID: bad}, 4)}), CodeInvalidArgument)
	tf.mustApply(KindMarkInvalid, MarkBlobInvalid{BlobID: bad, Certificate: tf.certificateFor(crypto.BlobInvalid{BlobID: bad}, 2)})
	wantCode(t, "extending an invalid blob", tf.apply(KindExtendBlob, ExtendBlob{Client: "app", BlobID: bad, EndEpoch: 20}), CodeFailedPrecondition)
	// Invalid is for good: registering the same content again is refused
	// (a fresh record could be certified again).
	wantCode(t, "registering an invalid blob again", tf.apply(KindRegisterBlob,
		RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 500, Root: crypto.Digest{1}, EndEpoch: 10}), CodeFailedPrecondition)
	// Extend `kept` past the epoch where it would have expired.
	wantCode(t, "extension that shortens", tf.apply(KindExtendBlob, ExtendBlob{Client: "app", BlobID: kept, EndEpoch: 2}), CodeInvalidArgument)
	tf.mustApply(KindExtendBlob, ExtendBlob{Client: "app", BlobID: kept, EndEpoch: 6})

	tf.advance(false) // epoch 2: `short` expires
	tf.advance(false) // epoch 3: `lapsing` (registered in 1, never certified) lapses; `kept` would have expired
	blob := func(id crypto.BlobID) BlobRecord {
		rec, _, _ := tf.fsm.Blob(id)
		return rec
	}
	if !blob(short).Expired || blob(kept).Expired || !blob(lapsing).Expired || !blob(bad).Invalid {
		t.Fatalf("short %+v\nkept %+v\nlapsing %+v\nbad %+v", blob(short), blob(kept), blob(lapsing), blob(bad))
	}
	kinds := map[control.EventKind]crypto.BlobID{}
	events, _ := tf.fsm.Events(0, 1000)
	for _, e := range events {
		kinds[e.Kind] = e.BlobID
	}
	if kinds[control.EventBlobExpired] != short || kinds[control.EventRegistrationLapsed] != lapsing || kinds[control.EventBlobInvalid] != bad {
		t.Fatalf("expiry, lapse and invalidity are not all committed events: %v", kinds)
	}
	wantCode(t, "certifying an expired blob", tf.apply(KindCertifyBlob, CertifyBlob{BlobID: short, Certificate: tf.certificateFor(crypto.BlobStored{BlobID: short}, 4)}), CodeFailedPrecondition)
}

// Requests nodes sign carry a nonce: the FSM takes them in increasing
// order only, so a replayed request is refused everywhere.
func TestFSMNodeRequestReplay(t *testing.T) {
	tf := lifecycleFSM(t)
	signed := func(node shardmap.NodeID, nonce uint64, kind Kind, body any) *Result {
		tf.index++
		cmd, _ := NewCommand(fmt.Sprintf("signed-%d", tf.index), kind, body)
		cmd.Node, cmd.Nonce = node, nonce
		return tf.applyCommand(cmd)
	}
	if res := signed("a", 5, KindUpdateAddress, UpdateAddress{Node: "a", Address: "new:1"}); res.Err() != nil {
		t.Fatal(res.Err())
	}
	wantCode(t, "the same nonce again", signed("a", 5, KindUpdateAddress, UpdateAddress{Node: "a", Address: "new:2"}), CodePermissionDenied)
	wantCode(t, "an older nonce", signed("a", 4, KindUpdateAddress, UpdateAddress{Node: "a", Address: "new:3"}), CodePermissionDenied)
	wantCode(t, "a node speaking for another", signed("a", 6, KindShardSynced, ShardSynced{Epoch: 1, Shard: 0, Node: "b"}), CodePermissionDenied)
	wantCode(t, "an unregistered signer", signed("zz", 1, KindUpdateAddress, UpdateAddress{Node: "zz", Address: "x"}), CodePermissionDenied)
	if rec, _, _ := tf.fsm.Node("a"); rec.Address != "new:1" || rec.LastNonce != 6 {
		t.Fatalf("node a: %+v", rec)
	}
}

// Readers page the event stream and resume after the last index they got,
// so a page never holds part of an index's events: an epoch change that
// ends 40 blobs makes 40 × 2 + 2 events under one index, and pages of 16
// hold it whole or not at all. Reading page after page gives every event
// once, in order.
func TestFSMEventPagesKeepIndicesWhole(t *testing.T) {
	tf := lifecycleFSM(t)
	tf.mustApply(KindAddClient, AddClient{Client: "app", TokenHash: crypto.Digest{1}, Quota: 1 << 40})
	for i := range 40 {
		tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 500, Root: crypto.Digest{byte(i)}, EndEpoch: 2})
	}
	tf.advance(false) // epoch 2: the 40 objects and their blobs end
	all, err := tf.fsm.Events(0, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	perIndex := map[uint64]int{}
	for _, e := range all {
		perIndex[e.Index]++
	}
	change := all[len(all)-1].Index
	if perIndex[change] != 82 { // started, stable, and an object and a blob ending 40 times
		t.Fatalf("the epoch change made %d events, want 82", perIndex[change])
	}
	for _, limit := range []int{1, 7, 16, 200} {
		var got []Event
		for after := uint64(0); ; {
			page, err := tf.fsm.Events(after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			first, last := page[0].Index, page[len(page)-1].Index
			if len(page) > limit && first != last {
				t.Fatalf("limit %d: a page of %d events over indices %d–%d", limit, len(page), first, last)
			}
			for _, e := range page {
				if n := countIndex(page, e.Index); n != perIndex[e.Index] {
					t.Fatalf("limit %d: a page holds %d of index %d's %d events", limit, n, e.Index, perIndex[e.Index])
				}
			}
			got = append(got, page...)
			after = last
		}
		if len(got) != len(all) {
			t.Fatalf("limit %d: paged %d events, the stream has %d", limit, len(got), len(all))
		}
		for i := range all {
			if got[i].Index != all[i].Index || got[i].Kind != all[i].Kind || got[i].BlobID != all[i].BlobID || got[i].Object != all[i].Object {
				t.Fatalf("limit %d: event %d is %+v, want %+v", limit, i, got[i], all[i])
			}
		}
	}
}

func countIndex(events []Event, index uint64) int {
	n := 0
	for _, e := range events {
		if e.Index == index {
			n++
		}
	}
	return n
}
