package storage

import (
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
)

// The recovery worker forgets the timings of blobs that left the recovery
// list without being recovered (ended, or stored meanwhile), except of one
// still being recovered.
func TestRecovererForgetsBlobsThatLeft(t *testing.T) {
	r := newRecoverer(nil)
	stays, left, busy := crypto.BlobID{1}, crypto.BlobID{2}, crypto.BlobID{3}
	now := time.Now()
	for _, id := range []crypto.BlobID{stays, left, busy} {
		r.firstSeen[id], r.retryAt[id], r.attempts[id] = now, now, 2
	}
	r.inflight[busy] = true
	r.forgetAllBut([]PendingBlob{{ID: stays}})
	if _, ok := r.firstSeen[left]; ok || r.attempts[left] != 0 || !r.retryAt[left].IsZero() {
		t.Fatal("the blob that left the list is still timed")
	}
	for _, id := range []crypto.BlobID{stays, busy} {
		if _, ok := r.firstSeen[id]; !ok || r.attempts[id] != 2 {
			t.Fatalf("blob %s was forgotten", id)
		}
	}
}
