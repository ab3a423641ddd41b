package storage

import (
	"slices"
	"testing"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
)

// A page of events becomes one batch: the last event of a blob decides
// whether it is ended or registered again; the epoch that ages tombstones
// is the latest the page's events happened in, never an extension's end
// epoch; the last challenge-round event is reported.
func TestEventBatch(t *testing.T) {
	a, b, c, d := crypto.BlobID{1}, crypto.BlobID{2}, crypto.BlobID{3}, crypto.BlobID{4}
	ev := func(index uint64, kind control.EventKind, epoch uint64, id crypto.BlobID) control.Event {
		return control.Event{Index: index, Kind: kind, Epoch: epoch, BlobID: id}
	}
	batch, challenged := eventBatch([]control.Event{
		ev(10, control.EventBlobRegistered, 3, a), // then ended: ended
		ev(11, control.EventBlobExpired, 4, b),    // then registered again: both
		ev(12, control.EventEpochStarted, 4, crypto.BlobID{}),
		ev(13, control.EventBlobExpired, 4, a),
		ev(14, control.EventRegistrationLapsed, 4, c),
		ev(15, control.EventBlobRegistered, 4, b),
		ev(16, control.EventChallengeStarted, 4, crypto.BlobID{}),
		ev(17, control.EventBlobCertified, 4, d),
		ev(18, control.EventBlobExtended, 40, d),
		ev(19, control.EventBlobInvalid, 4, c),
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
