package client

import (
	"context"
	"errors"
	"fmt"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// ExtendOptions says how far to extend a blob's lifetime: set exactly one.
type ExtendOptions struct {
	// Epochs adds this many epochs to the blob's current end epoch.
	Epochs uint64
	// EndEpoch makes the blob live at least until this end epoch; a blob
	// that already does is left as it is, and nothing is charged.
	EndEpoch uint64
}

// Extension is what an Extend did.
type Extension struct {
	Status           *BlobStatus // the registry entry afterwards
	PreviousEndEpoch uint64
	// Charged is what the extension drew from the client's quota: the
	// bytes the blob takes on all shards × the epochs added (0 when the
	// blob already lived long enough).
	Charged uint64
}

// ErrExtendOptions is wrapped when ExtendOptions sets neither or both
// fields, or an end epoch that overflows.
var ErrExtendOptions = errors.New("client: extend needs either Epochs or EndEpoch")

// Extend moves a blob's end epoch later (DESIGN §5), charged to the
// client's quota: the blob's encoded size × the epochs added. The blob
// need not be stored again; anyone with a client token may extend any
// live blob. It returns ErrNotFound for an unknown blob, ErrExpired or
// ErrInvalidBlob for one that can no longer live, and the control plane's
// ResourceExhausted status when the quota does not cover the extension.
func (c *Client) Extend(ctx context.Context, id crypto.BlobID, opts ExtendOptions) (*Extension, error) {
	if (opts.Epochs == 0) == (opts.EndEpoch == 0) {
		return nil, fmt.Errorf("%w (got Epochs %d, EndEpoch %d)", ErrExtendOptions, opts.Epochs, opts.EndEpoch)
	}
	if err := c.requireToken(ctx, "extend a blob"); err != nil {
		return nil, err
	}
	st, err := c.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Status == StatusInvalid || st.Status == StatusExpired {
		return nil, st.Err()
	}
	end := opts.EndEpoch
	if opts.Epochs != 0 {
		if opts.Epochs > math.MaxUint64-st.EndEpoch {
			return nil, fmt.Errorf("%w: %d epochs past end epoch %d overflow", ErrExtendOptions, opts.Epochs, st.EndEpoch)
		}
		end = st.EndEpoch + opts.Epochs
	}
	ext := &Extension{Status: st, PreviousEndEpoch: st.EndEpoch}
	if end <= st.EndEpoch {
		return ext, nil
	}
	if err := c.extendTo(ctx, id, end, newRequestID()); err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			// Expired or found invalid since the status above: say which.
			if now, serr := c.Status(ctx, id); serr == nil && (now.Status == StatusInvalid || now.Status == StatusExpired) {
				return nil, now.Err()
			}
		}
		return nil, err
	}
	if ext.Status, err = c.Status(ctx, id); err != nil {
		return nil, err
	}
	// What the control plane charged, as it computes it (it took the
	// extension, so the size is computable and the product fits).
	if params, err := coding.NewParams(int(st.Shards), coding.WithEncoding(st.Encoding)); err == nil {
		ext.Charged, _, _ = costOf(params, st.Length, end-st.EndEpoch)
	}
	return ext, nil
}

// extendTo asks the control plane to move id's end epoch to end; retries
// carry requestID, so the extension is charged once.
func (c *Client) extendTo(ctx context.Context, id crypto.BlobID, end uint64, requestID string) error {
	return c.controlCall(ctx, "ExtendBlob", func(ctx context.Context, conn *grpc.ClientConn) error {
		wctx, err := c.writeContext(ctx, requestID)
		if err != nil {
			return err
		}
		resp, err := weftv1.NewClientClient(conn).ExtendBlob(wctx, &weftv1.ExtendBlobRequest{BlobId: id[:], EndEpoch: end})
		if err == nil {
			c.wrote(resp.Index)
		}
		return err
	})
}
