package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// Object is a blob object (issue #21): one client's claim on a blob's
// bytes, made when it stored them. Clients who store the same bytes share
// the blob but each own an object; the bytes are kept while any live
// object references them.
type Object struct {
	ID           uint64
	Owner        string // the client that owns it
	BlobID       crypto.BlobID
	EndEpoch     uint64 // it lives through EndEpoch−1
	Deletable    bool   // its owner may delete it before EndEpoch
	Attributes   map[string]string
	CreatedEpoch uint64
	// StoredBytes is the blob's size over all shards: one epoch of the
	// object costs this much quota.
	StoredBytes uint64
}

// ErrObjectNotFound is wrapped when an object does not exist: never
// created, deleted, or ended with its end epoch or its blob.
var ErrObjectNotFound = errors.New("object not found")

// ErrNotOwner is wrapped when a client acts on an object another owns.
var ErrNotOwner = errors.New("object belongs to another client")

// ErrPermanent is wrapped when deleting a permanent object before its end
// epoch.
var ErrPermanent = errors.New("object is permanent")

func objectFromProto(o *weftv1.BlobObject) (*Object, error) {
	if len(o.GetBlobId()) != crypto.DigestSize {
		return nil, fmt.Errorf("client: object %d names a %d-byte blob ID", o.GetId(), len(o.GetBlobId()))
	}
	return &Object{
		ID: o.Id, Owner: o.Owner, BlobID: crypto.BlobID(o.BlobId), EndEpoch: o.EndEpoch, Deletable: o.Deletable,
		Attributes: o.Attributes, CreatedEpoch: o.CreatedEpoch, StoredBytes: o.StoredBytes,
	}, nil
}

// objectError maps the control plane's refusals of an object call to the
// SDK's errors, with the control plane's message alone (not the whole
// gRPC chain). Refusals of another kind — a credential not accepted, a
// transfer to a client that does not exist — keep their status.
func objectError(err error) error {
	msg := status.Convert(err).Message()
	switch code := status.Code(err); {
	case code == codes.NotFound && strings.Contains(msg, "does not exist"):
		return fmt.Errorf("%w: %s", ErrObjectNotFound, msg)
	case code == codes.PermissionDenied && (strings.Contains(msg, "belongs to another client") || strings.Contains(msg, "owns none")):
		return fmt.Errorf("%w: %s", ErrNotOwner, msg)
	case code == codes.FailedPrecondition && strings.Contains(msg, "permanent"):
		return fmt.Errorf("%w: %s", ErrPermanent, msg)
	}
	return err
}

// Object returns a live object; ErrObjectNotFound when there is none.
func (c *Client) Object(ctx context.Context, id uint64) (*Object, error) {
	var resp *weftv1.GetObjectResponse
	err := c.controlCall(ctx, "GetObject", func(ctx context.Context, conn *grpc.ClientConn) error {
		if err := c.caughtUp(ctx, conn); err != nil {
			return err
		}
		var err error
		resp, err = weftv1.NewClientClient(conn).GetObject(ctx, &weftv1.GetObjectRequest{ObjectId: id})
		if status.Code(err) == codes.NotFound {
			// This voter may lag behind the write that made it.
			if err := catchUpCommitted(ctx, conn); err != nil {
				return err
			}
			resp, err = weftv1.NewClientClient(conn).GetObject(ctx, &weftv1.GetObjectRequest{ObjectId: id})
		}
		return err
	})
	if err != nil {
		return nil, objectError(err)
	}
	return objectFromProto(resp.GetObject())
}

// ObjectsPage pages the client's own live objects in ID order after an
// object ID (0: from the first), only those of blob when it is not zero.
func (c *Client) ObjectsPage(ctx context.Context, blob crypto.BlobID, after uint64, limit int) (objects []*Object, more bool, err error) {
	if err := c.requireToken(ctx, "list its objects"); err != nil {
		return nil, false, err
	}
	req := &weftv1.ListObjectsRequest{After: after, Limit: uint32(max(min(limit, 1000), 1))}
	if blob != (crypto.BlobID{}) {
		req.BlobId = blob[:]
	}
	var resp *weftv1.ListObjectsResponse
	err = c.controlCall(ctx, "ListObjects", func(ctx context.Context, conn *grpc.ClientConn) error {
		if err := c.caughtUp(ctx, conn); err != nil {
			return err
		}
		actx, err := c.authContext(ctx)
		if err != nil {
			return err
		}
		resp, err = weftv1.NewClientClient(conn).ListObjects(actx, req)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	for _, o := range resp.Objects {
		obj, err := objectFromProto(o)
		if err != nil {
			return nil, false, err
		}
		objects = append(objects, obj)
	}
	return objects, resp.More, nil
}

// ObjectsOf returns every live object the client owns of one blob.
func (c *Client) ObjectsOf(ctx context.Context, blob crypto.BlobID) ([]*Object, error) {
	var all []*Object
	for after := uint64(0); ; {
		page, more, err := c.ObjectsPage(ctx, blob, after, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if !more || len(page) == 0 {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}

// Deletion is what a Delete did.
type Deletion struct {
	// Refund is the quota given back: the object's stored bytes × its
	// epochs after the current one.
	Refund uint64
	// BlobEndsEpoch is the epoch at whose start the nodes drop the blob,
	// when this was its last object; 0 while other objects keep it.
	BlobEndsEpoch uint64
}

// Delete deletes one of the client's deletable objects. The current epoch
// stays paid for; the later ones are refunded. When no other object
// references the blob, the nodes drop its bytes at the next epoch's start
// and reads then answer ErrDeleted. ErrPermanent for a permanent object,
// ErrNotOwner for another client's, ErrObjectNotFound for none.
func (c *Client) Delete(ctx context.Context, id uint64) (*Deletion, error) {
	if err := c.requireToken(ctx, "delete an object"); err != nil {
		return nil, err
	}
	var resp *weftv1.DeleteObjectResponse
	if err := c.objectWrite(ctx, "DeleteObject", id, func(ctx context.Context, cc weftv1.ClientClient) (uint64, error) {
		var err error
		resp, err = cc.DeleteObject(ctx, &weftv1.DeleteObjectRequest{ObjectId: id})
		return resp.GetIndex(), err
	}); err != nil {
		return nil, err
	}
	return &Deletion{Refund: resp.Refund, BlobEndsEpoch: resp.BlobEndsEpoch}, nil
}

// Transfer gives one of the client's objects to another client, with the
// right to delete, extend or edit it (and any refund a deletion gives).
func (c *Client) Transfer(ctx context.Context, id uint64, to string) error {
	if err := c.requireToken(ctx, "transfer an object"); err != nil {
		return err
	}
	return c.objectWrite(ctx, "TransferObject", id, func(ctx context.Context, cc weftv1.ClientClient) (uint64, error) {
		resp, err := cc.TransferObject(ctx, &weftv1.TransferObjectRequest{ObjectId: id, To: to})
		return resp.GetIndex(), err
	})
}

// SetAttributes changes one of the client's objects' attributes: set adds
// or replaces (keys are lower-cased), remove deletes. The whole set stays
// within control.ValidateAttributes' bounds.
func (c *Client) SetAttributes(ctx context.Context, id uint64, set map[string]string, remove []string) error {
	if err := c.requireToken(ctx, "edit an object's attributes"); err != nil {
		return err
	}
	set = NormalizeAttributes(set)
	if err := control.ValidateAttributes(set); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	lower := make([]string, len(remove))
	for i, k := range remove {
		lower[i] = strings.ToLower(k)
	}
	return c.objectWrite(ctx, "SetAttributes", id, func(ctx context.Context, cc weftv1.ClientClient) (uint64, error) {
		resp, err := cc.SetAttributes(ctx, &weftv1.SetAttributesRequest{ObjectId: id, Set: set, Remove: lower})
		return resp.GetIndex(), err
	})
}

// NormalizeAttributes returns attrs with lower-cased keys (attribute keys
// are lower case, so that Content-Type and content-type are one).
func NormalizeAttributes(attrs map[string]string) map[string]string {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]string, len(attrs))
	for k, v := range attrs {
		out[strings.ToLower(k)] = v
	}
	return out
}

// objectWrite sends one object write with a request ID kept across
// retries (a retry after a lost answer gets the first outcome).
func (c *Client) objectWrite(ctx context.Context, what string, id uint64, call func(ctx context.Context, cc weftv1.ClientClient) (uint64, error)) error {
	reqID := newRequestID()
	err := c.controlCall(ctx, what, func(ctx context.Context, conn *grpc.ClientConn) error {
		wctx, err := c.writeContext(ctx, reqID)
		if err != nil {
			return err
		}
		index, err := call(wctx, weftv1.NewClientClient(conn))
		if err == nil {
			c.wrote(index)
		}
		return err
	})
	return objectError(err)
}

// sameObjectKind reports whether an object is of the kind a store with
// these options would create: then storing the same bytes again reuses it
// instead of paying for a second.
func sameObjectKind(o *Object, deletable bool, attrs map[string]string) bool {
	return o.Deletable == deletable && maps.Equal(o.Attributes, attrs)
}
