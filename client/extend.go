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
	"github.com/weftstore/weft/crypto"
)

// ExtendOptions says how far to extend a blob's lifetime: set exactly one.
type ExtendOptions struct {
	// Epochs adds this many epochs to the client's object's end epoch.
	Epochs uint64
	// EndEpoch makes the client's object live at least until this end
	// epoch; one that already does is left as it is, and nothing is
	// charged.
	EndEpoch uint64
}

// Extension is what an Extend did.
type Extension struct {
	Status           *BlobStatus // the registry entry afterwards
	PreviousEndEpoch uint64
	// Charged is what the extension drew from the client's quota: the
	// bytes the blob takes on all shards × the epochs added (0 when the
	// object already lived long enough).
	Charged uint64
	// Object is the client's object that was extended; PreviousEndEpoch
	// is its end epoch before.
	Object uint64
}

// ErrExtendOptions is wrapped when ExtendOptions sets neither or both
// fields, or an end epoch that overflows.
var ErrExtendOptions = errors.New("client: extend needs either Epochs or EndEpoch")

// Extend moves the end epoch of the client's own object of a blob later
// (the object that ends last, when it owns several), charged to the
// client's quota: the blob's encoded size × the epochs added; the blob
// lives as long as its latest object. The blob need not be stored again.
// It returns ErrNotFound for an unknown blob, ErrExpired or ErrInvalidBlob
// for one that can no longer live, ErrObjectNotFound when the client owns
// no object of it (storing the blob makes one), and the control plane's
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
	if st.Status != StatusRegistered && st.Status != StatusCertified {
		return nil, st.Err()
	}
	obj, err := c.latestObject(ctx, id)
	if err != nil {
		return nil, err
	}
	end := opts.EndEpoch
	if opts.Epochs != 0 {
		if opts.Epochs > math.MaxUint64-obj.EndEpoch {
			return nil, fmt.Errorf("%w: %d epochs past end epoch %d overflow", ErrExtendOptions, opts.Epochs, obj.EndEpoch)
		}
		end = obj.EndEpoch + opts.Epochs
	}
	ext := &Extension{Status: st, PreviousEndEpoch: obj.EndEpoch, Object: obj.ID}
	if end <= obj.EndEpoch {
		return ext, nil
	}
	if err := c.extendTo(ctx, id, obj.ID, end, newRequestID()); err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			// Expired or found invalid since the status above: say which.
			if now, serr := c.Status(ctx, id); serr == nil && now.Status != StatusRegistered && now.Status != StatusCertified {
				return nil, now.Err()
			}
		}
		return nil, objectError(err)
	}
	if ext.Status, err = c.Status(ctx, id); err != nil {
		return nil, err
	}
	ext.Charged = obj.StoredBytes * (end - obj.EndEpoch) // as the control plane charged it
	return ext, nil
}

// latestObject is the client's object of a blob that ends last.
func (c *Client) latestObject(ctx context.Context, id crypto.BlobID) (*Object, error) {
	mine, err := c.ObjectsOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(mine) == 0 {
		return nil, fmt.Errorf("%w: the client owns no object of blob %s (storing it makes one)", ErrObjectNotFound, id)
	}
	latest := mine[0]
	for _, o := range mine[1:] {
		if o.EndEpoch > latest.EndEpoch {
			latest = o
		}
	}
	return latest, nil
}

// extendTo asks the control plane to move the client's object of id to
// end epoch end; retries carry requestID, so the extension is charged
// once.
func (c *Client) extendTo(ctx context.Context, id crypto.BlobID, object, end uint64, requestID string) error {
	return c.controlCall(ctx, "ExtendBlob", func(ctx context.Context, conn *grpc.ClientConn) error {
		wctx, err := c.writeContext(ctx, requestID)
		if err != nil {
			return err
		}
		resp, err := weftv1.NewClientClient(conn).ExtendBlob(wctx, &weftv1.ExtendBlobRequest{BlobId: id[:], EndEpoch: end, ObjectId: object})
		if err == nil {
			c.wrote(resp.Index)
		}
		return err
	})
}
