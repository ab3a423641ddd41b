package committee

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// objectsFSM is an FSM in epoch 1 with clients alice, bob and carol.
func objectsFSM(t *testing.T) *testFSM {
	tf := lifecycleFSM(t)
	for i, c := range []string{"alice", "bob", "carol"} {
		tf.mustApply(KindAddClient, AddClient{Client: c, TokenHash: crypto.Digest{byte(i + 1)}, Quota: 1 << 40})
	}
	return tf
}

func (tf *testFSM) used(client string) uint64 {
	tf.t.Helper()
	rec, found, err := tf.fsm.Client(client)
	if err != nil || !found {
		tf.t.Fatalf("client %s: %v", client, err)
	}
	return rec.Used
}

func (tf *testFSM) blob(id crypto.BlobID) BlobRecord {
	tf.t.Helper()
	rec, found, err := tf.fsm.Blob(id)
	if err != nil || !found {
		tf.t.Fatalf("blob %s: found %v, %v", id, found, err)
	}
	return rec
}

// eventsAt returns the events the command at index made.
func (tf *testFSM) eventsAt(index uint64) []Event {
	tf.t.Helper()
	events, err := tf.fsm.Events(index-1, 1_000_000)
	if err != nil {
		tf.t.Fatal(err)
	}
	var out []Event
	for _, e := range events {
		if e.Index == index {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(events []Event, kind control.EventKind, object uint64, client string) bool {
	for _, e := range events {
		if e.Kind == kind && e.Object == object && e.Client == client {
			return true
		}
	}
	return false
}

var sameBytes = RegisterBlob{Encoding: uint8(coding.RS8), Shards: 10, Length: 100_000, Root: crypto.Digest{7}, EndEpoch: 6}

func registration(client string, deletable bool, end uint64) RegisterBlob {
	r := sameBytes
	r.Client, r.Deletable, r.EndEpoch = client, deletable, end
	return r
}

func storedSize(t *testing.T) uint64 {
	params, _ := coding.NewParams(10)
	stored, err := params.EncodedSize(sameBytes.Length)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

// Two clients store the same bytes: two objects, each charged; deleting
// one keeps the blob; deleting the other ends it at the next epoch, as
// deleted, and refunds exactly the unused epochs.
func TestFSMObjectsShareABlob(t *testing.T) {
	tf := objectsFSM(t)
	stored := storedSize(t)
	a := tf.mustApply(KindRegisterBlob, registration("alice", true, 6))
	b := tf.mustApply(KindRegisterBlob, registration("bob", true, 4))
	if a.BlobID != b.BlobID || a.Object == 0 || b.Object == 0 || a.Object == b.Object {
		t.Fatalf("registrations: %+v, %+v", a, b)
	}
	if !hasEvent(tf.eventsAt(b.Object), control.EventObjectCreated, b.Object, "bob") {
		t.Fatal("no object-created event naming bob")
	}
	if ua, ub := tf.used("alice"), tf.used("bob"); ua != 5*stored || ub != 3*stored {
		t.Fatalf("charged alice %d, bob %d; want %d and %d", ua, ub, 5*stored, 3*stored)
	}
	if rec := tf.blob(a.BlobID); rec.Objects != 2 || rec.EndEpoch != 6 {
		t.Fatalf("blob: %d objects, end epoch %d", rec.Objects, rec.EndEpoch)
	}
	tf.advance(false) // epoch 2
	del := tf.mustApply(KindDeleteObject, DeleteObject{Client: "alice", Object: a.Object})
	// Charged epochs 1–5; epoch 2 is used; 3, 4, 5 come back.
	if del.Refund != 3*stored || tf.used("alice") != 2*stored {
		t.Fatalf("refund %d, alice uses %d; want %d and %d", del.Refund, tf.used("alice"), 3*stored, 2*stored)
	}
	if del.Epoch != 0 {
		t.Fatalf("bob's object still references the blob, yet it ends at %d", del.Epoch)
	}
	if !hasEvent(tf.eventsAt(tf.index), control.EventObjectDeleted, a.Object, "alice") {
		t.Fatal("no object-deleted event naming alice")
	}
	rec := tf.blob(a.BlobID)
	if rec.Objects != 1 || rec.EndEpoch != 4 || rec.Deleted || !rec.Live() {
		t.Fatalf("after alice's delete: %+v", rec)
	}
	wantCode(t, "deleting it again", tf.apply(KindDeleteObject, DeleteObject{Client: "alice", Object: a.Object}), CodeNotFound)
	del = tf.mustApply(KindDeleteObject, DeleteObject{Client: "bob", Object: b.Object})
	if del.Epoch != 3 || del.Refund != 1*stored {
		t.Fatalf("bob's delete: blob ends at %d, refund %d; want 3 and %d", del.Epoch, del.Refund, stored)
	}
	if rec := tf.blob(a.BlobID); !rec.Deleted || !rec.Live() || rec.EndEpoch != 3 || blobStatus(rec).Status != "registered" || !blobStatus(rec).Deleting {
		t.Fatalf("a blob whose objects are gone stays until the epoch ends: %+v", rec)
	}
	tf.advance(false) // epoch 3: the blob ends
	rec = tf.blob(a.BlobID)
	if rec.Live() || blobStatus(rec).Status != "deleted" {
		t.Fatalf("after the epoch: %+v, status %s", rec, blobStatus(rec).Status)
	}
	found := false
	for _, e := range tf.eventsAt(tf.index) {
		found = found || e.Kind == control.EventBlobDeleted && e.BlobID == a.BlobID
	}
	if !found {
		t.Fatal("no blob-deleted event at the epoch change")
	}
}

// A permanent object cannot be deleted, and the refusal changes nothing.
func TestFSMPermanentObject(t *testing.T) {
	tf := objectsFSM(t)
	p := tf.mustApply(KindRegisterBlob, registration("alice", false, 5))
	before := tf.used("alice")
	res := tf.apply(KindDeleteObject, DeleteObject{Client: "alice", Object: p.Object})
	wantCode(t, "deleting a permanent object", res, CodeFailedPrecondition)
	if !strings.Contains(res.Error.Message, "permanent") || tf.used("alice") != before {
		t.Fatalf("%v; quota %d → %d", res.Error, before, tf.used("alice"))
	}
	if rec := tf.blob(p.BlobID); rec.PermanentEndEpoch != 5 || rec.Objects != 1 {
		t.Fatalf("blob %+v", rec)
	}
	// A deletable object of the same bytes, deleted, leaves the blob to
	// the permanent one's end epoch.
	d := tf.mustApply(KindRegisterBlob, registration("bob", true, 9))
	if rec := tf.blob(p.BlobID); rec.EndEpoch != 9 {
		t.Fatalf("end epoch %d, want bob's 9", rec.EndEpoch)
	}
	tf.mustApply(KindDeleteObject, DeleteObject{Client: "bob", Object: d.Object})
	if rec := tf.blob(p.BlobID); rec.EndEpoch != 5 || rec.Deleted {
		t.Fatalf("after bob's delete: end epoch %d, deleted %v; want the permanent 5", rec.EndEpoch, rec.Deleted)
	}
}

// Only the owner deletes, transfers or edits; a transfer moves that right.
func TestFSMObjectOwnership(t *testing.T) {
	tf := objectsFSM(t)
	o := tf.mustApply(KindRegisterBlob, registration("alice", true, 5)).Object
	wantCode(t, "bob deletes alice's", tf.apply(KindDeleteObject, DeleteObject{Client: "bob", Object: o}), CodePermissionDenied)
	wantCode(t, "bob transfers alice's", tf.apply(KindTransferObject, TransferObject{Client: "bob", Object: o, To: "bob"}), CodePermissionDenied)
	wantCode(t, "bob edits alice's", tf.apply(KindSetAttributes, SetAttributes{Client: "bob", Object: o, Set: map[string]string{"a": "b"}}), CodePermissionDenied)
	wantCode(t, "transfer to nobody", tf.apply(KindTransferObject, TransferObject{Client: "alice", Object: o, To: "nobody"}), CodeNotFound)
	wantCode(t, "unknown object", tf.apply(KindDeleteObject, DeleteObject{Client: "alice", Object: 999_999}), CodeNotFound)
	tf.mustApply(KindTransferObject, TransferObject{Client: "alice", Object: o, To: "bob"})
	if !hasEvent(tf.eventsAt(tf.index), control.EventObjectTransferred, o, "alice") {
		t.Fatal("no transfer event naming alice")
	}
	if mine, _, _ := tf.fsm.ObjectsOf("alice", crypto.BlobID{}, 0, 10); len(mine) != 0 {
		t.Fatalf("alice still lists %d objects", len(mine))
	}
	if theirs, _, _ := tf.fsm.ObjectsOf("bob", crypto.BlobID{}, 0, 10); len(theirs) != 1 || theirs[0].ID != o {
		t.Fatalf("bob lists %+v", theirs)
	}
	wantCode(t, "alice deletes what she gave away", tf.apply(KindDeleteObject, DeleteObject{Client: "alice", Object: o}), CodePermissionDenied)
	tf.mustApply(KindDeleteObject, DeleteObject{Client: "bob", Object: o})
}

// Attributes are set at registration and edited by the owner, within
// their bounds, checked against the merged set.
func TestFSMAttributes(t *testing.T) {
	tf := objectsFSM(t)
	r := registration("alice", true, 5)
	r.Attributes = map[string]string{"content-type": "image/png", "name": "cat.png"}
	o := tf.mustApply(KindRegisterBlob, r).Object
	tf.mustApply(KindSetAttributes, SetAttributes{Client: "alice", Object: o, Set: map[string]string{"content-type": "image/jpeg"}, Remove: []string{"name"}})
	obj, found, _ := tf.fsm.ObjectByID(o)
	if !found || len(obj.Attributes) != 1 || obj.Attributes["content-type"] != "image/jpeg" {
		t.Fatalf("attributes %v", obj.Attributes)
	}
	big := map[string]string{}
	for i := range control.MaxAttributes {
		big[strings.Repeat("k", 10)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	wantCode(t, "one attribute too many", tf.apply(KindSetAttributes, SetAttributes{Client: "alice", Object: o, Set: big}), CodeInvalidArgument)
	wantCode(t, "value too long", tf.apply(KindSetAttributes, SetAttributes{Client: "alice", Object: o, Set: map[string]string{"x": strings.Repeat("v", control.MaxAttributeValueLen+1)}}), CodeInvalidArgument)
	wantCode(t, "header injection", tf.apply(KindSetAttributes, SetAttributes{Client: "alice", Object: o, Set: map[string]string{"x": "a\r\nSet-Cookie: y"}}), CodeInvalidArgument)
	bad := registration("alice", true, 5)
	bad.Attributes = map[string]string{"Content-Type": "x"}
	wantCode(t, "upper-case key", tf.apply(KindRegisterBlob, bad), CodeInvalidArgument)
	if obj, _, _ := tf.fsm.ObjectByID(o); obj.Attributes["content-type"] != "image/jpeg" || len(obj.Attributes) != 1 {
		t.Fatalf("a refused edit changed the attributes: %v", obj.Attributes)
	}
}

// A registration of the same bytes after the last object's deletion, in
// the same epoch, keeps the blob: the deletion is called off.
func TestFSMRegistrationCancelsDeletion(t *testing.T) {
	tf := objectsFSM(t)
	a := tf.mustApply(KindRegisterBlob, registration("alice", true, 5))
	tf.mustApply(KindCertifyBlob, CertifyBlob{BlobID: a.BlobID, Certificate: tf.certificateFor(crypto.BlobStored{BlobID: a.BlobID}, 4)})
	tf.mustApply(KindDeleteObject, DeleteObject{Client: "alice", Object: a.Object})
	if rec := tf.blob(a.BlobID); !rec.Deleted || rec.EndEpoch != 2 {
		t.Fatalf("pending deletion: %+v", rec)
	}
	b := tf.mustApply(KindRegisterBlob, registration("bob", true, 4))
	if rec := tf.blob(b.BlobID); rec.Deleted || rec.EndEpoch != 4 || rec.Objects != 1 {
		t.Fatalf("after bob's registration: %+v", rec)
	}
	tf.advance(false)
	tf.advance(false) // epoch 3
	if rec := tf.blob(b.BlobID); !rec.Live() {
		t.Fatal("bob's blob ended with alice's deletion")
	}
}

// Objects end with their end epochs (an event each); the blob ends with
// the last of them; ExtendBlob moves the caller's own object.
func TestFSMObjectExpiryAndExtend(t *testing.T) {
	tf := objectsFSM(t)
	stored := storedSize(t)
	a := tf.mustApply(KindRegisterBlob, registration("alice", true, 2))
	b := tf.mustApply(KindRegisterBlob, registration("bob", false, 3))
	wantCode(t, "carol owns no object to extend", tf.apply(KindExtendBlob, ExtendBlob{Client: "carol", BlobID: a.BlobID, EndEpoch: 9}), CodeNotFound)
	wantCode(t, "bob extends alice's object", tf.apply(KindExtendBlob, ExtendBlob{Client: "bob", BlobID: a.BlobID, Object: a.Object, EndEpoch: 9}), CodePermissionDenied)
	before := tf.used("bob")
	ext := tf.mustApply(KindExtendBlob, ExtendBlob{Client: "bob", BlobID: b.BlobID, EndEpoch: 4})
	if ext.Object != b.Object || tf.used("bob") != before+stored {
		t.Fatalf("extend: %+v, bob charged %d", ext, tf.used("bob")-before)
	}
	if rec := tf.blob(a.BlobID); rec.EndEpoch != 4 || rec.PermanentEndEpoch != 4 {
		t.Fatalf("after the extension: %+v", rec)
	}
	tf.advance(false) // epoch 2: alice's object ends
	if !hasEvent(tf.eventsAt(tf.index), control.EventObjectExpired, a.Object, "alice") {
		t.Fatal("no object-expired event for alice's object")
	}
	if rec := tf.blob(a.BlobID); !rec.Live() || rec.Objects != 1 {
		t.Fatalf("epoch 2: %+v", rec)
	}
	tf.advance(false)
	tf.advance(false) // epoch 4: bob's ends, and the blob
	if rec := tf.blob(a.BlobID); rec.Live() || blobStatus(rec).Status != "expired" || rec.Objects != 0 {
		t.Fatalf("epoch 4: %+v", rec)
	}
	if _, found, _ := tf.fsm.ObjectByID(b.Object); found {
		t.Fatal("bob's ended object is still there")
	}
}

// A retried delete (same command ID) answers the first outcome: the
// refund is given once.
func TestFSMDeleteIsIdempotent(t *testing.T) {
	tf := objectsFSM(t)
	o := tf.mustApply(KindRegisterBlob, registration("alice", true, 5))
	tf.index++
	first := tf.applyAt(tf.index, "client/alice/del-1", KindDeleteObject, DeleteObject{Client: "alice", Object: o.Object})
	used := tf.used("alice")
	tf.index++
	again := tf.applyAt(tf.index, "client/alice/del-1", KindDeleteObject, DeleteObject{Client: "alice", Object: o.Object})
	if first.Err() != nil || again.Err() != nil || again.Refund != first.Refund || again.Index != first.Index || tf.used("alice") != used {
		t.Fatalf("first %+v, again %+v; quota %d → %d", first, again, used, tf.used("alice"))
	}
}

// An epoch change that ends more blobs and objects than a u16 counts
// records every event (object-expired and blob-expired: 2 per blob), in
// order, each once.
func TestFSMEpochChangeEndsManyObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("33,000 registrations")
	}
	tf := objectsFSM(t)
	const blobs = 33_000
	var logs []*raft.Log
	for i := range blobs {
		tf.index++
		r := registration("alice", true, 2)
		r.Root = crypto.Digest{byte(i), byte(i >> 8), byte(i >> 16), 1}
		cmd, err := NewCommand(fmt.Sprintf("reg-%d", i), KindRegisterBlob, r)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(cmd)
		logs = append(logs, &raft.Log{Index: tf.index, Type: raft.LogCommand, Data: data})
		if len(logs) == 1000 || i == blobs-1 {
			for _, res := range tf.fsm.ApplyBatch(logs) {
				if err := res.(*Result).Err(); err != nil {
					t.Fatal(err)
				}
			}
			logs = logs[:0]
		}
	}
	tf.advance(false) // epoch 2: every object ends, and its blob with it
	events := tf.eventsAt(tf.index)
	counts := map[control.EventKind]int{}
	objects := map[uint64]bool{}
	for _, e := range events {
		counts[e.Kind]++
		if e.Kind == control.EventObjectExpired {
			objects[e.Object] = true
		}
	}
	if counts[control.EventBlobExpired] != blobs || counts[control.EventObjectExpired] != blobs || len(objects) != blobs {
		t.Fatalf("%d events at the change: %v, %d distinct objects; want %d of each", len(events), counts, len(objects), blobs)
	}
}
