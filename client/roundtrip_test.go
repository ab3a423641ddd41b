package client

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/weftstore/weft/crypto"
)

// Blobs of several sizes go through a real network and come back byte for
// byte, with certificates that verify against the committee.
func TestStoreReadRoundTrip(t *testing.T) {
	net := startNet(t, 7, 21, nil)
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)

	sizes := []int{0, 1, 1 << 20}
	if !testing.Short() {
		sizes = append(sizes, 64<<20)
	}
	for i, size := range sizes {
		blob := randomBlob(uint64(100+i), size)
		var sst StoreStats
		var progressDone, progressTotal int64
		id, cert, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{
			Stats:    &sst,
			Progress: func(done, total int64) { progressDone, progressTotal = done, total },
		})
		if err != nil {
			t.Fatalf("store %d bytes: %v", size, err)
		}
		if progressDone == 0 || progressDone != progressTotal {
			t.Errorf("store %d bytes: progress ended at %d of %d", size, progressDone, progressTotal)
		}
		view, err := c.Committee(ctx, cert.Epoch)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(cert, view); err != nil {
			t.Fatalf("certificate of %d-byte blob: %v", size, err)
		}
		if cert.BlobID != id || sst.Confirmed < view.WriteQuorum() {
			t.Fatalf("certificate for %s, stats %+v", cert.BlobID, sst)
		}
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != StatusCertified || st.Length != uint64(size) || st.CertifiedEpoch != cert.Epoch || st.EndEpoch != cert.Epoch+DefaultEpochs {
			t.Fatalf("status %+v", st)
		}

		var rst ReadStats
		var readDone, readTotal int64
		got, err := c.Read(ctx, id, ReadOptions{
			Stats:    &rst,
			Progress: func(done, total int64) { readDone, readTotal = done, total },
		})
		if err != nil {
			t.Fatalf("read %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, blob) {
			t.Fatalf("read %d bytes back, stored %d, or they differ", len(got), size)
		}
		if readDone == 0 || readDone != readTotal || rst.Decodes != 1 || rst.BadSlivers != 0 {
			t.Errorf("read %d bytes: progress %d of %d, stats %+v", size, readDone, readTotal, rst)
		}
		t.Logf("%d bytes: store %v (encode %v, register %v, transfer %v, confirm %v, certify %v); read %v (lookup %v, metadata %v, fetch %v, decode+check %v)",
			size, sst.Total, sst.Encode, sst.Register, sst.Transfer, sst.Confirm, sst.Certify,
			rst.Total, rst.Lookup, rst.Metadata, rst.Fetch, rst.Decode)
	}
}

// An unknown blob ID is ErrNotFound for status and read alike.
func TestUnknownBlob(t *testing.T) {
	net := startNet(t, 4, 4, nil)
	c := newClient(t, net)
	ctx := testContext(t, 30*time.Second)
	var id crypto.BlobID
	id[0] = 0x42
	if _, err := c.Status(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status: %v", err)
	}
	if _, err := c.Read(ctx, id, ReadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read: %v", err)
	}
}
