package committee

import (
	"reflect"
	"testing"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

func TestRecordsRoundTrip(t *testing.T) {
	for _, res := range []*Result{
		{Index: 7, Epoch: 3, BlobID: crypto.BlobID{1, 2}},
		{Index: 9, Error: &CommandError{Code: CodeNotFound, Message: "node x is not registered"}},
		{Index: 11, Epoch: 4, BlobID: crypto.BlobID{5}, Object: 8, Refund: 1 << 40},
	} {
		got, err := decodeResult(encodeResult(res))
		if err != nil || !reflect.DeepEqual(got, res) {
			t.Fatalf("result %+v → %+v, %v", res, got, err)
		}
	}
	for _, e := range []Event{
		{Index: 1, Kind: control.EventBlobRegistered, Epoch: 2, BlobID: crypto.BlobID{3}},
		{Index: 5, Kind: control.EventEpochStarted, Epoch: 4, Moves: []shardmap.Move{{Shard: 3, From: "a", To: "b"}, {Shard: 9, From: "c", To: "d"}}},
		{Index: 6, Kind: control.EventShardSynced, Epoch: 4, Shard: 9, Node: "d"},
		{Index: 8, Kind: control.EventObjectTransferred, Epoch: 4, BlobID: crypto.BlobID{3}, Object: 7, Client: "alice", To: "bob"},
	} {
		got, err := decodeEvent(encodeEvent(e))
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("event %+v → %+v, %v", e, got, err)
		}
		b := encodeEvent(e)
		for cut := range len(b) {
			if _, err := decodeEvent(b[:cut]); err == nil {
				t.Fatalf("event truncated at %d decodes", cut)
			}
		}
		if _, err := decodeEvent(append(b, 0)); err == nil {
			t.Fatal("event with a trailing byte decodes")
		}
	}
}

// Records written before blob objects (version 1) still decode, with no
// object fields.
func TestRecordsOfVersion1Decode(t *testing.T) {
	e := Event{Index: 1, Kind: control.EventBlobRegistered, Epoch: 2, BlobID: crypto.BlobID{3}}
	b := encodeEvent(e)
	v1 := append([]byte{recordVersionBeforeObjects}, b[1:len(b)-8-2-2]...) // no object, client, to
	if got, err := decodeEvent(v1); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("version 1 event → %+v, %v", got, err)
	}
	res := &Result{Index: 7, Epoch: 3, BlobID: crypto.BlobID{1}}
	r := encodeResult(res)
	if got, err := decodeResult(append([]byte{recordVersionBeforeObjects}, r[1:len(r)-16]...)); err != nil || !reflect.DeepEqual(got, res) {
		t.Fatalf("version 1 result → %+v, %v", got, err)
	}
}

// Stored records come from our own files, but a restored snapshot is an
// operator's upload: its decoders must not panic on any bytes.
func FuzzStoredRecords(f *testing.F) {
	f.Add(encodeResult(&Result{Index: 1, Error: &CommandError{Code: CodeNotFound, Message: "m"}}))
	f.Add(encodeEvent(Event{Index: 5, Kind: control.EventEpochStarted, Moves: []shardmap.Move{{Shard: 3, From: "a", To: "b"}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeResult(b)
		_, _ = decodeEvent(b)
	})
}
