package committee

import (
	"context"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// The blob-object calls of the Client API (issue #21). Writes name the
// calling client as the actor; the FSM refuses them unless it owns the
// object.

// maxObjectsPage bounds a ListObjects page.
const maxObjectsPage = 1000

func objectProto(o ObjectRecord) *weftv1.BlobObject {
	return &weftv1.BlobObject{
		Id: o.ID, Owner: o.Owner, BlobId: o.BlobID[:], EndEpoch: o.EndEpoch, Deletable: o.Deletable,
		Attributes: o.Attributes, CreatedEpoch: o.CreatedEpoch, StoredBytes: o.Stored,
	}
}

func objectIDFrom(id uint64) error {
	if id == 0 {
		return status.Error(codes.InvalidArgument, "object ID 0: no object has it")
	}
	return nil
}

// actingClient is the calling client; the operator credential is none.
func actingClient(ctx context.Context) (string, error) {
	if id := clientOf(ctx); id != "" {
		return id, nil
	}
	return "", status.Error(codes.PermissionDenied, "blob objects belong to clients: the operator credential owns none")
}

// DeleteObject deletes one of the caller's deletable objects.
func (c *clientService) DeleteObject(ctx context.Context, req *weftv1.DeleteObjectRequest) (*weftv1.DeleteObjectResponse, error) {
	if err := objectIDFrom(req.ObjectId); err != nil {
		return nil, err
	}
	client, err := actingClient(ctx)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, c.s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.DeleteObjectResponse, error) {
		return weftv1.NewClientClient(conn).DeleteObject(fctx, req)
	}); done {
		return resp, err
	}
	res, err := c.s.propose(ctx, KindDeleteObject, DeleteObject{Client: client, Object: req.ObjectId}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.DeleteObjectResponse{Index: res.Index, Refund: res.Refund, BlobEndsEpoch: res.Epoch}, nil
}

// TransferObject gives one of the caller's objects to another client.
func (c *clientService) TransferObject(ctx context.Context, req *weftv1.TransferObjectRequest) (*weftv1.TransferObjectResponse, error) {
	if err := objectIDFrom(req.ObjectId); err != nil {
		return nil, err
	}
	if req.To == "" || len(req.To) > maxNodeIDLength {
		return nil, status.Errorf(codes.InvalidArgument, "new owner's client ID of %d bytes (1–%d)", len(req.To), maxNodeIDLength)
	}
	client, err := actingClient(ctx)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, c.s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.TransferObjectResponse, error) {
		return weftv1.NewClientClient(conn).TransferObject(fctx, req)
	}); done {
		return resp, err
	}
	res, err := c.s.propose(ctx, KindTransferObject, TransferObject{Client: client, Object: req.ObjectId, To: req.To}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.TransferObjectResponse{Index: res.Index}, nil
}

// SetAttributes changes one of the caller's objects' attributes.
func (c *clientService) SetAttributes(ctx context.Context, req *weftv1.SetAttributesRequest) (*weftv1.SetAttributesResponse, error) {
	if err := objectIDFrom(req.ObjectId); err != nil {
		return nil, err
	}
	if err := control.ValidateAttributes(req.Set); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "set: %v", err)
	}
	if len(req.Remove) > control.MaxAttributes {
		return nil, status.Errorf(codes.InvalidArgument, "removing %d attributes (at most %d)", len(req.Remove), control.MaxAttributes)
	}
	for _, k := range req.Remove {
		if err := control.ValidateAttributeKey(k); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "remove: %v", err)
		}
	}
	if len(req.Set)+len(req.Remove) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no attribute to set or remove")
	}
	client, err := actingClient(ctx)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, c.s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.SetAttributesResponse, error) {
		return weftv1.NewClientClient(conn).SetAttributes(fctx, req)
	}); done {
		return resp, err
	}
	res, err := c.s.propose(ctx, KindSetAttributes, SetAttributes{Client: client, Object: req.ObjectId, Set: req.Set, Remove: req.Remove}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.SetAttributesResponse{Index: res.Index}, nil
}

// GetObject reads an object (local, possibly stale).
func (c *clientService) GetObject(ctx context.Context, req *weftv1.GetObjectRequest) (*weftv1.GetObjectResponse, error) {
	if err := objectIDFrom(req.ObjectId); err != nil {
		return nil, err
	}
	obj, found, err := c.s.node.FSM().ObjectByID(req.ObjectId)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "object %d does not exist (never created, deleted or ended)", req.ObjectId)
	}
	return &weftv1.GetObjectResponse{Object: objectProto(obj)}, nil
}

// ListObjects pages the caller's live objects (local, possibly stale).
func (c *clientService) ListObjects(ctx context.Context, req *weftv1.ListObjectsRequest) (*weftv1.ListObjectsResponse, error) {
	client, err := actingClient(ctx)
	if err != nil {
		return nil, err
	}
	var blob crypto.BlobID
	if len(req.BlobId) != 0 {
		if blob, err = blobIDFrom(req.BlobId); err != nil {
			return nil, err
		}
	}
	if req.After == math.MaxUint64 {
		return &weftv1.ListObjectsResponse{}, nil
	}
	limit := int(min(max(req.Limit, 1), maxObjectsPage))
	objects, more, err := c.s.node.FSM().ObjectsOf(client, blob, req.After, limit)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &weftv1.ListObjectsResponse{More: more}
	for _, o := range objects {
		resp.Objects = append(resp.Objects, objectProto(o))
	}
	return resp, nil
}
