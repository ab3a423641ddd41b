package client

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// A blob's lifetime is extended without storing it again: it outlives the
// end epoch it was stored with, while a blob stored alongside and not
// extended expires on time. The extension is charged (encoded size ×
// epochs added), asked again with an end epoch already reached changes
// nothing, and fails cleanly, changing nothing, for unknown, expired or
// unaffordable blobs.
func TestExtend(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	c := newClient(t, net)
	ctx := testContext(t, 90*time.Second)

	blob, other := randomBlob(31, 100_000), randomBlob(32, 100_000)
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	otherID, _, err := c.Store(ctx, bytes.NewReader(other), StoreOptions{Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}

	ext, err := c.Extend(ctx, id, ExtendOptions{Epochs: 2})
	if err != nil {
		t.Fatal(err)
	}
	size, err := testCodec(t, c, 8).Params().EncodedSize(uint64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if ext.PreviousEndEpoch != 2 || ext.Status.EndEpoch != 4 || ext.Charged != 2*size {
		t.Fatalf("extension by 2 epochs: %d → %d, charged %d; want 2 → 4, charged %d", ext.PreviousEndEpoch, ext.Status.EndEpoch, ext.Charged, 2*size)
	}
	if st, err := c.Status(ctx, id); err != nil || st.EndEpoch != 4 {
		t.Fatalf("status after the extension: %+v, %v", st, err)
	}
	ext, err = c.Extend(ctx, id, ExtendOptions{EndEpoch: 3})
	if err != nil || ext.Status.EndEpoch != 4 || ext.Charged != 0 {
		t.Fatalf("extension to an end epoch already reached: %+v, %v", ext, err)
	}

	// A client whose quota cannot pay: refused, nothing changes.
	conn := dialControl(t, net)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+net.OperatorToken)
	poor, err := weftv1.NewAdminClient(conn).AddClient(actx, &weftv1.AddClientRequest{Client: "poor", Quota: size})
	if err != nil {
		t.Fatal(err)
	}
	pc := newClient(t, net, func(cfg *Config) { cfg.Token = poor.Token })
	if _, err := pc.Extend(ctx, id, ExtendOptions{Epochs: 2}); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("extension by a client with no object of the blob: %v", err)
	}
	// Its own object of the same bytes, for one epoch, spends its quota.
	if _, _, err := pc.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Extend(ctx, id, ExtendOptions{Epochs: 2}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("extension over the quota: %v", err)
	}
	if st, err := c.Status(ctx, id); err != nil || st.EndEpoch != 4 {
		t.Fatalf("a refused extension changed the end epoch: %+v, %v", st, err)
	}

	for _, opts := range []ExtendOptions{{}, {Epochs: 1, EndEpoch: 9}} {
		if _, err := c.Extend(ctx, id, opts); !errors.Is(err, ErrExtendOptions) {
			t.Fatalf("extend with %+v: %v", opts, err)
		}
	}
	if _, err := c.Extend(ctx, crypto.BlobID{1}, ExtendOptions{Epochs: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("extending an unknown blob: %v", err)
	}
	noToken := newClient(t, net, func(cfg *Config) { cfg.Token = "" })
	if _, err := noToken.Extend(ctx, id, ExtendOptions{Epochs: 1}); err == nil {
		t.Fatal("an extension without a client token succeeded")
	}

	// Epoch 2: the blob stored for one epoch and not extended expires;
	// the extended one lives on, through epoch 3.
	for epoch := uint64(2); epoch <= 3; epoch++ {
		if _, err := net.AdvanceEpoch(ctx, false); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Read(ctx, id, ReadOptions{}); err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("epoch %d: read of the extended blob: %d bytes, %v", epoch, len(got), err)
		}
		if _, err := c.Read(ctx, otherID, ReadOptions{}); !errors.Is(err, ErrExpired) {
			t.Fatalf("epoch %d: read of the blob that was not extended: %v", epoch, err)
		}
	}
	if _, err := c.Extend(ctx, otherID, ExtendOptions{Epochs: 5}); !errors.Is(err, ErrExpired) {
		t.Fatalf("extending an expired blob: %v", err)
	}
	if _, err := net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, id, ReadOptions{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("epoch 4, the extended end: %v", err)
	}
}
