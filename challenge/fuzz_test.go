package challenge

import (
	"bytes"
	"testing"
)

// FuzzResponse: a response from the network decodes without panicking, and
// whatever decodes re-encodes to the same bytes (one encoding per value).
func FuzzResponse(f *testing.F) {
	w := newNetwork(f, 3)
	seed := seedFor(1)
	want := Positions(seed, w.order, w.shards, testShards, 0)
	raw, err := w.respond(f, 3, 1, want).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:len(raw)/2])
	f.Add([]byte{responseVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		if r.UnmarshalBinary(data) != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded response does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("decoded response re-encodes differently")
		}
	})
}
