package storage

import (
	"slices"
	"testing"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// A page of events becomes one batch: the last event of a blob decides
// whether it is ended or registered again; the epoch that ages tombstones
// is the latest the page's events happened in, never an extension's end
// epoch; the last challenge-round event is reported.
func TestEventBatch(t *testing.T) {
	a, b, c, d := crypto.BlobID{1}, crypto.BlobID{2}, crypto.BlobID{3}, crypto.BlobID{4}
	ev := func(index uint64, kind string, epoch uint64, id crypto.BlobID) *weftv1.Event {
		e := &weftv1.Event{Index: index, Kind: kind, Epoch: epoch}
		if id != (crypto.BlobID{}) {
			e.BlobId = id[:]
		}
		return e
	}
	batch, challenged := eventBatch([]*weftv1.Event{
		ev(10, "blob-registered", 3, a), // then ended: ended
		ev(11, "blob-expired", 4, b),    // then registered again: both
		ev(12, "epoch-started", 4, crypto.BlobID{}),
		ev(13, "blob-expired", 4, a),
		ev(14, "registration-lapsed", 4, c),
		ev(15, "blob-registered", 4, b),
		ev(16, "challenge-started", 4, crypto.BlobID{}),
		ev(17, "blob-certified", 4, d),
		ev(18, "blob-extended", 40, d),
		ev(19, "blob-invalid", 4, c),
	})
	if batch.Index != 19 || batch.Epoch != 4 || challenged != 16 {
		t.Fatalf("index %d, epoch %d, challenge event %d; want 19, 4, 16", batch.Index, batch.Epoch, challenged)
	}
	if !slices.Equal(batch.Ended, []crypto.BlobID{b, a, c}) || !slices.Equal(batch.Registered, []crypto.BlobID{b}) {
		t.Fatalf("ended %v, registered %v", batch.Ended, batch.Registered)
	}
	if !slices.Equal(batch.Invalid, []crypto.BlobID{c}) || len(batch.Recover) != 1 || batch.Recover[0] != (PendingBlob{ID: d, Epoch: 4}) {
		t.Fatalf("invalid %v, recover %v", batch.Invalid, batch.Recover)
	}
}
