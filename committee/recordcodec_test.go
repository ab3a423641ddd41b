package committee

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

func sampleRecords() ([]BlobRecord, []ObjectRecord) {
	full := BlobRecord{
		ID: crypto.BlobID{1, 2, 3}, Encoding: 1, Shards: 1000, Length: 1 << 40, Root: crypto.Digest{9, 8, 7},
		EndEpoch: 12, RegisteredEpoch: 3, CertifiedEpoch: 4, Certificate: []byte("certificate bytes"), Client: "app",
		Invalid: true, InvalidProof: []byte("proof"), Expired: true, RegisteredIndex: 100, ExpiryIndex: 101,
		CertSeq: 7, EndedIndex: 200, Objects: 3, PermanentEndEpoch: 11, Deleted: true,
	}
	blobs := []BlobRecord{{}, full, {ID: crypto.BlobID{5}, Client: "c", Objects: 1, EndEpoch: 2, RegisteredIndex: 9, ExpiryIndex: 9}}
	objects := []ObjectRecord{
		{},
		{ID: 42, Owner: "app", BlobID: crypto.BlobID{1}, EndEpoch: 9, Deletable: true, Attributes: map[string]string{"b": "2", "a": "1", "content-type": "text/plain"}, CreatedEpoch: 3, Stored: 5000},
		{ID: 43, Owner: "x", EndEpoch: 1, Attributes: map[string]string{"": ""}},
	}
	return blobs, objects
}

// Blob and object records round-trip in the binary form, and records a
// previous release wrote (JSON) decode to the same values; no truncation
// or corruption of a binary record panics, and none is taken for a record.
func TestBlobObjectRecordCodec(t *testing.T) {
	blobs, objects := sampleRecords()
	for i, rec := range blobs {
		raw := encodeBlobRecord(rec)
		var got BlobRecord
		if err := decodeBlobRecord(raw, &got); err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("blob %d: %+v, %v; want %+v", i, got, err, rec)
		}
		legacy, _ := json.Marshal(rec)
		var fromJSON BlobRecord
		if err := decodeBlobRecord(legacy, &fromJSON); err != nil || !reflect.DeepEqual(fromJSON, rec) {
			t.Fatalf("blob %d from JSON: %+v, %v; want %+v", i, fromJSON, err, rec)
		}
		for n := range len(raw) {
			var r BlobRecord
			if decodeBlobRecord(raw[:n], &r) == nil {
				t.Fatalf("blob %d: a record cut to %d of %d bytes decoded", i, n, len(raw))
			}
		}
		if decodeBlobRecord(append(raw, 0), new(BlobRecord)) == nil {
			t.Fatalf("blob %d: a trailing byte decoded", i)
		}
	}
	for i, obj := range objects {
		raw := encodeObjectRecord(obj)
		var got ObjectRecord
		if err := decodeObjectRecord(raw, &got); err != nil || !reflect.DeepEqual(got, obj) {
			t.Fatalf("object %d: %+v, %v; want %+v", i, got, err, obj)
		}
		if again := encodeObjectRecord(got); !bytes.Equal(again, raw) {
			t.Fatalf("object %d: encoded differently the second time (attribute order)", i)
		}
		legacy, _ := json.Marshal(obj)
		var fromJSON ObjectRecord
		if err := decodeObjectRecord(legacy, &fromJSON); err != nil || !reflect.DeepEqual(fromJSON, obj) {
			t.Fatalf("object %d from JSON: %+v, %v; want %+v", i, fromJSON, err, obj)
		}
		for n := range len(raw) {
			if decodeObjectRecord(raw[:n], new(ObjectRecord)) == nil {
				t.Fatalf("object %d: a record cut to %d of %d bytes decoded", i, n, len(raw))
			}
		}
	}
	// Lengths far beyond the record are refused, not allocated.
	huge := encodeBlobRecord(blobs[1])
	at := 1 + 32 + 1 + 4 + 8 + 32 + 8*3 // the certificate's length
	copy(huge[at:], []byte{0xff, 0xff, 0xff, 0xff})
	if decodeBlobRecord(huge, new(BlobRecord)) == nil {
		t.Fatal("a certificate length of 4 GiB decoded")
	}
	if decodeBlobRecord([]byte{9}, new(BlobRecord)) == nil || decodeObjectRecord([]byte{9}, new(ObjectRecord)) == nil {
		t.Fatal("an unknown record version decoded")
	}
}

// FuzzDecodeBlobObjectRecords: nothing stored decodes into a panic.
func FuzzDecodeBlobObjectRecords(f *testing.F) {
	blobs, objects := sampleRecords()
	for _, rec := range blobs {
		f.Add(encodeBlobRecord(rec))
	}
	for _, obj := range objects {
		f.Add(encodeObjectRecord(obj))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var rec BlobRecord
		if decodeBlobRecord(raw, &rec) == nil && raw[0] != '{' && !bytes.Equal(encodeBlobRecord(rec), raw) {
			t.Fatalf("blob record %x decoded to %+v, which encodes otherwise", raw, rec)
		}
		var obj ObjectRecord
		_ = decodeObjectRecord(raw, &obj)
	})
}

// rewriteAsPreviousRelease rewrites f's state file as the release before
// #24 wrote it, as a state file or snapshot of that release holds it:
// every blob and object record in JSON, and a blob-objects entry for every
// blob's first object too.
func rewriteAsPreviousRelease(t *testing.T, f *FSM) {
	t.Helper()
	err := f.db.Update(func(tx *bolt.Tx) error {
		var firsts [][]byte
		if err := tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			var rec BlobRecord
			if err := decodeBlobRecord(v, &rec); err != nil {
				return err
			}
			var obj ObjectRecord
			if found, err := getObject(tx.Bucket(bucketObjects), u64Key(rec.RegisteredIndex), &obj); err != nil {
				return err
			} else if found && obj.BlobID == rec.ID {
				firsts = append(firsts, blobObjectKey(rec.ID, obj.ID))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range firsts {
			if err := tx.Bucket(bucketBlobObjects).Put(k, nil); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketBlobs, bucketObjects} {
			b := tx.Bucket(name)
			var keys, values [][]byte
			err := b.ForEach(func(k, v []byte) error {
				var rec any
				if bytes.Equal(name, bucketBlobs) {
					var blob BlobRecord
					if err := decodeBlobRecord(v, &blob); err != nil {
						return err
					}
					rec = blob
				} else {
					var obj ObjectRecord
					if err := decodeObjectRecord(v, &obj); err != nil {
						return err
					}
					rec = obj
				}
				raw, err := json.Marshal(rec)
				keys, values = append(keys, append([]byte(nil), k...)), append(values, raw)
				return err
			})
			if err != nil {
				return err
			}
			for i := range keys {
				if err := b.Put(keys[i], values[i]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stateDump is every bucket of a state file, key by key, with blob and
// object records decoded (so that both forms of a record compare equal)
// and without the blob-objects entries of blobs' first objects (which the
// release before #24 wrote); then every blob's objects as
// objectsOfBlobAfter lists them.
func stateDump(t *testing.T, f *FSM) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				val := fmt.Sprintf("%x", v)
				switch string(name) {
				case string(bucketBlobObjects):
					var rec BlobRecord
					if found, err := getBlob(tx.Bucket(bucketBlobs), k[:crypto.DigestSize], &rec); err != nil {
						return err
					} else if found && rec.RegisteredIndex == binary.BigEndian.Uint64(k[crypto.DigestSize:]) {
						return nil
					}
				case string(bucketBlobs):
					var rec BlobRecord
					if err := decodeBlobRecord(v, &rec); err != nil {
						return err
					}
					val = fmt.Sprintf("%+v", rec)
				case string(bucketObjects):
					var obj ObjectRecord
					if err := decodeObjectRecord(v, &obj); err != nil {
						return err
					}
					val = fmt.Sprintf("%+v", obj)
				}
				out[fmt.Sprintf("%s/%x", name, k)] = val
				if string(name) == string(bucketBlobs) {
					objects, err := objectsOfBlob(tx, crypto.BlobID(k))
					if err != nil {
						return err
					}
					var ids []uint64
					for _, o := range objects {
						ids = append(ids, o.ID)
					}
					if !slices.IsSorted(ids) {
						return fmt.Errorf("blob %x: objects %v out of order", k, ids)
					}
					out[fmt.Sprintf("objects of %x", k)] = fmt.Sprint(ids)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A state file as the release before #24 wrote it — blob and object
// records in JSON, blob-objects entries for first objects — goes on from
// it: the same commands applied to it and to a file
// written in the binary form all along leave the same state, record for
// record (and the registry counts right), through registrations of the
// same content, certification, extension, transfer, attributes, deletion,
// invalidity, expiry and compaction.
func TestFSMGoesOnFromJSONRecords(t *testing.T) {
	current, legacy := compactionFSM(t), compactionFSM(t)
	both := func(step func(tf *testFSM)) {
		t.Helper()
		step(current)
		step(legacy)
	}
	var kept, shared, dropped, bad crypto.BlobID
	var objects []uint64
	both(func(tf *testFSM) {
		kept = tf.registerBlob(1, 20)
		tf.certify(kept)
		shared = tf.registerBlob(2, 6)
		dropped = tf.registerBlob(3, 4)
		bad = tf.registerBlob(4, 9)
		res := tf.mustApply(KindRegisterBlob, RegisterBlob{Client: "app", Encoding: 1, Shards: 10, Length: 500, Root: crypto.Digest{'5'}, EndEpoch: 8, Deletable: true, Attributes: map[string]string{"k": "v"}})
		objects = append(objects[:0], res.Object)
		tf.mustApply(KindAddClient, AddClient{Client: "other", TokenHash: crypto.Digest{2}, Quota: 1 << 50})
	})
	rewriteAsPreviousRelease(t, legacy.fsm)
	if n, m := current.count(bucketBlobObjects), legacy.count(bucketBlobObjects); n != 0 || m != 5 {
		t.Fatalf("blob-objects entries: %d written, %d after the rewrite; want none for the 5 first objects, then 5", n, m)
	}
	if reflect.DeepEqual(stateDump(t, current.fsm), stateDump(t, legacy.fsm)) == false {
		t.Fatal("the JSON rewrite changed a record's content")
	}
	both(func(tf *testFSM) {
		tf.registerBlob(2, 12) // the same content: the JSON blob record, read and rewritten
		tf.certify(shared)
		tf.mustApply(KindExtendBlob, ExtendBlob{Client: "app", BlobID: kept, EndEpoch: 25})
		tf.mustApply(KindSetAttributes, SetAttributes{Client: "app", Object: objects[0], Set: map[string]string{"x": "y"}, Remove: []string{"k"}})
		tf.mustApply(KindTransferObject, TransferObject{Client: "app", Object: objects[0], To: "other"})
		tf.mustApply(KindDeleteObject, DeleteObject{Client: "other", Object: objects[0]})
		tf.mustApply(KindMarkInvalid, MarkBlobInvalid{BlobID: bad, Certificate: tf.certificateFor(crypto.BlobInvalid{BlobID: bad}, 2)})
		for range 8 { // dropped lapses and expires, shared expires, then compaction
			tf.advance(false)
			tf.registerBlob(uint64(100+tf.index), tf.state().Epoch()+2)
		}
		tf.checkCounts("after the epochs")
	})
	a, b := stateDump(t, current.fsm), stateDump(t, legacy.fsm)
	if !reflect.DeepEqual(a, b) {
		for k, v := range a {
			if b[k] != v {
				t.Errorf("%s: %s, from JSON records %s", k, v, b[k])
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				t.Errorf("%s only in the state that was JSON", k)
			}
		}
		t.Fatal("the two states differ")
	}
	if _, found, _ := current.fsm.Blob(dropped); found {
		t.Fatal("the blob that lapsed was not compacted away")
	}
}
