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
