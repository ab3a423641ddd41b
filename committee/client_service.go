package committee

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"math"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// clientService serves the Client API; it shares the voter's Service.
type clientService struct {
	weftv1.UnimplementedClientServer
	s *Service

	mu    sync.Mutex
	views map[uint64]*crypto.CommitteeView // committee keys decoded once per epoch
	// generation is the FSM's state file the views were read from: a
	// restored snapshot brings its own committees.
	generation uint64
}

type clientKey struct{}

// authenticateClient resolves the bearer token of a Client call to the
// client it was issued to: missing is Unauthenticated, unknown is
// PermissionDenied.
func (s *Service) authenticateClient(ctx context.Context) (context.Context, error) {
	token, ok := bearer(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "client credential required (authorization: Bearer <token>)")
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.OperatorToken)) == 1 {
		// Operators may read (status, committee); writes need a client,
		// and the operator is none, so they are refused by the FSM.
		return context.WithValue(ctx, clientKey{}, ""), nil
	}
	id, found, err := s.node.FSM().ClientByToken(sha256.Sum256([]byte(token)))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		return nil, status.Error(codes.PermissionDenied, "client credential not accepted")
	}
	return context.WithValue(ctx, clientKey{}, id), nil
}

func clientOf(ctx context.Context) string {
	id, _ := ctx.Value(clientKey{}).(string)
	return id
}

func blobIDFrom(b []byte) (crypto.BlobID, error) {
	if len(b) != crypto.DigestSize {
		return crypto.BlobID{}, status.Errorf(codes.InvalidArgument, "blob ID of %d bytes, want %d", len(b), crypto.DigestSize)
	}
	return crypto.BlobID(b), nil
}

// RegisterBlob registers a blob's encoding, charged to the client.
func (c *clientService) RegisterBlob(ctx context.Context, req *weftv1.RegisterBlobRequest) (*weftv1.RegisterBlobResponse, error) {
	if len(req.Root) != crypto.DigestSize || req.Encoding > math.MaxUint8 {
		return nil, status.Error(codes.InvalidArgument, "a registration needs a 32-byte root and an encoding byte")
	}
	if err := control.ValidateAttributes(req.Attributes); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "registration: %v", err)
	}
	if resp, done, err := forward(ctx, c.s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.RegisterBlobResponse, error) {
		return weftv1.NewClientClient(conn).RegisterBlob(fctx, req)
	}); done {
		return resp, err
	}
	res, err := c.s.propose(ctx, KindRegisterBlob, RegisterBlob{
		Client: clientOf(ctx), Encoding: uint8(req.Encoding), Shards: req.Shards, Length: req.Length,
		Root: crypto.Digest(req.Root), EndEpoch: req.EndEpoch, Deletable: req.Deletable, Attributes: req.Attributes,
	}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.RegisterBlobResponse{Index: res.Index, BlobId: res.BlobID[:], ObjectId: res.Object}, nil
}

// CertifyBlob verifies an availability certificate against its epoch's
// committee on the leader — never inside Apply — and then proposes it; the
// FSM accepts it only if that epoch is still the current one.
func (c *clientService) CertifyBlob(ctx context.Context, req *weftv1.CertifyBlobRequest) (*weftv1.CertifyBlobResponse, error) {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	var cert crypto.Certificate
	if err := cert.UnmarshalBinary(req.Certificate); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate: %v", err)
	}
	if cert.BlobID != id {
		return nil, status.Error(codes.InvalidArgument, "certificate is for another blob")
	}
	if resp, done, err := forward(ctx, c.s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.CertifyBlobResponse, error) {
		return weftv1.NewClientClient(conn).CertifyBlob(fctx, req)
	}); done {
		return resp, err
	}
	view, err := c.view(cert.Epoch)
	if err != nil {
		return nil, err
	}
	if err := cert.VerifyAvailability(view); err != nil {
		code := codes.InvalidArgument
		if errors.Is(err, crypto.ErrWrongEpoch) {
			code = codes.FailedPrecondition
		}
		return nil, status.Errorf(code, "certificate: %v", err)
	}
	res, err := c.s.propose(ctx, KindCertifyBlob, CertifyBlob{BlobID: id, Certificate: req.Certificate}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.CertifyBlobResponse{Index: res.Index, CertifiedEpoch: res.Epoch}, nil
}

// view returns an epoch's committee view, its keys decoded once.
func (c *clientService) view(e uint64) (*crypto.CommitteeView, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.s.node.FSM().Generation(); g != c.generation {
		c.views, c.generation = map[uint64]*crypto.CommitteeView{}, g
	}
	if v, ok := c.views[e]; ok {
		return v, nil
	}
	rec, found, err := c.s.node.FSM().Committee(e)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		return nil, status.Errorf(codes.FailedPrecondition, "no committee for epoch %d", e)
	}
	v, err := rec.View()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	c.views[e] = v
	return v, nil
}

// ExtendBlob moves a blob's end epoch, charged to the client.
func (c *clientService) ExtendBlob(ctx context.Context, req *weftv1.ExtendBlobRequest) (*weftv1.ExtendBlobResponse, error) {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, c.s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.ExtendBlobResponse, error) {
		return weftv1.NewClientClient(conn).ExtendBlob(fctx, req)
	}); done {
		return resp, err
	}
	res, err := c.s.propose(ctx, KindExtendBlob, ExtendBlob{Client: clientOf(ctx), BlobID: id, EndEpoch: req.EndEpoch, Object: req.ObjectId}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.ExtendBlobResponse{Index: res.Index, ObjectId: res.Object}, nil
}

// GetClient returns the calling client's record (local, possibly stale:
// the SDK waits for the voter to apply its own writes first).
func (c *clientService) GetClient(ctx context.Context, _ *weftv1.GetClientRequest) (*weftv1.GetClientResponse, error) {
	if clientOf(ctx) == "" {
		return nil, status.Error(codes.InvalidArgument, "the operator credential is not a client's (weft admin client list shows every client's quota)")
	}
	rec, found, err := c.s.node.FSM().Client(clientOf(ctx))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		// The credential was checked: the client was removed since.
		return nil, status.Errorf(codes.NotFound, "client %q is not registered", clientOf(ctx))
	}
	return &weftv1.GetClientResponse{Client: &weftv1.ClientInfo{Client: rec.ID, Quota: rec.Quota, Used: rec.Used}}, nil
}

// BlobStatus reads a blob's registry entry (local, possibly stale).
func (c *clientService) BlobStatus(ctx context.Context, req *weftv1.BlobStatusRequest) (*weftv1.BlobStatusResponse, error) {
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	rec, found, err := c.s.node.FSM().Blob(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "blob %s is not registered", id)
	}
	st := blobStatus(rec)
	if rec.Live() && rec.Objects > 0 {
		if st.ContentType, err = c.contentType(id); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return st, nil
}

// maxTypedObjects bounds the objects a status answer reads for the blob's
// content type: past it, the type is not named.
const maxTypedObjects = 16

// contentType is the content type a blob's objects name, when all of them
// that do agree.
func (c *clientService) contentType(id crypto.BlobID) (string, error) {
	objects, err := c.s.node.FSM().BlobObjects(id, maxTypedObjects+1)
	if err != nil || len(objects) > maxTypedObjects {
		return "", err
	}
	typ := ""
	for _, o := range objects {
		switch t := o.Attributes[control.ContentTypeAttribute]; {
		case t == "" || t == typ:
		case typ == "":
			typ = t
		default:
			return "", nil // they disagree: name none
		}
	}
	return typ, nil
}

func blobStatus(rec BlobRecord) *weftv1.BlobStatusResponse {
	st := "registered"
	switch {
	case rec.Invalid:
		st = "invalid"
	case rec.Expired && rec.Deleted:
		st = "deleted"
	case rec.Expired:
		st = "expired"
	case rec.CertifiedEpoch != 0:
		st = "certified"
	}
	return &weftv1.BlobStatusResponse{
		BlobId: rec.ID[:], Status: st, Encoding: uint32(rec.Encoding), Shards: rec.Shards, Length: rec.Length,
		EndEpoch: rec.EndEpoch, RegisteredEpoch: rec.RegisteredEpoch, CertifiedEpoch: rec.CertifiedEpoch, Certificate: rec.Certificate,
		RegisteredIndex: rec.RegisteredIndex, Objects: uint32(rec.Objects), PermanentEndEpoch: rec.PermanentEndEpoch,
		Deleting: rec.Deleted && rec.Live(),
	}
}

// ListCertified pages the live blobs certified before an epoch (local
// read): an incoming shard owner's to-do list in blob ID order, or a
// bootstrapping node's listing in certification order.
func (c *clientService) ListCertified(ctx context.Context, req *weftv1.ListCertifiedRequest) (*weftv1.ListCertifiedResponse, error) {
	var after crypto.BlobID
	if len(req.After) != 0 {
		var err error
		if after, err = blobIDFrom(req.After); err != nil {
			return nil, err
		}
	}
	limit := int(min(max(req.Limit, 1), 1000))
	list := c.s.node.FSM().CertifiedBefore
	if req.InCertificationOrder {
		list = c.s.node.FSM().CertifiedInOrder
	}
	recs, more, err := list(req.BeforeEpoch, after, limit)
	if errors.Is(err, errCursorGone) {
		return nil, status.Errorf(codes.FailedPrecondition, "%v: list again from the start", err)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &weftv1.ListCertifiedResponse{More: more}
	for _, rec := range recs {
		st := blobStatus(rec)
		st.Certificate = nil // the to-do list needs IDs and sizes, not certificates
		resp.Blobs = append(resp.Blobs, st)
	}
	return resp, nil
}

// GetCommittee returns an epoch's committee (0: the current one) with the
// members' addresses, and the shard map when it is the current epoch.
func (c *clientService) GetCommittee(ctx context.Context, req *weftv1.GetCommitteeRequest) (*weftv1.GetCommitteeResponse, error) {
	fsm := c.s.node.FSM()
	st, err := fsm.EpochState()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	e := req.Epoch
	if e == 0 {
		e = st.Epoch()
	}
	rec, found, err := fsm.Committee(e)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "no committee for epoch %d", e)
	}
	resp := &weftv1.GetCommitteeResponse{Epoch: e}
	for _, m := range rec.Members {
		member := &weftv1.Member{Node: string(m.Node), PublicKey: m.PublicKey, Weight: m.Weight}
		if n, ok, _ := fsm.Node(m.Node); ok {
			member.Address = n.Address
		}
		resp.Members = append(resp.Members, member)
	}
	if e == st.Epoch() {
		for _, o := range st.Owners() {
			resp.Owners = append(resp.Owners, string(o))
		}
	}
	return resp, nil
}

// NetworkStatus serves what a status page shows of the control plane: the
// nodes, the shard map, the current handover and the registry's counts,
// read in one transaction (the challenge history in a second).
func (c *clientService) NetworkStatus(ctx context.Context, _ *weftv1.NetworkStatusRequest) (*weftv1.NetworkStatusResponse, error) {
	fsm := c.s.node.FSM()
	o, err := fsm.Overview()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	history, err := fsm.ChallengeHistory(historyRounds)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	_, leader := c.s.node.raft.LeaderWithID()
	resp := &weftv1.NetworkStatusResponse{
		Index: o.Index, Epoch: o.State.Epoch(), Phase: o.State.Phase().String(), Shards: uint32(fsm.Config().Shards),
		Voter: c.s.node.cfg.ID, Leader: string(leader),
		Blobs: &weftv1.BlobCounts{
			Registered: o.Counts.Registered, Certified: o.Counts.Certified, Invalid: o.Counts.Invalid, Ended: o.Counts.Ended,
			RegisteredBytes: o.Counts.RegisteredBytes, CertifiedBytes: o.Counts.CertifiedBytes, Objects: o.Counts.Objects,
		},
		Handover: &weftv1.NetworkHandover{Epoch: o.Handover.Epoch, StartedIndex: o.Handover.Index, Forced: o.Handover.Forced},
	}
	counts := map[shardmap.NodeID]int{}
	if m := o.State.Map(); m != nil {
		counts = m.Counts()
	}
	for _, n := range o.Nodes {
		resp.Nodes = append(resp.Nodes, &weftv1.NetworkNode{
			Id: string(n.ID), Address: n.Address, Stake: n.Stake, Shards: uint32(counts[n.ID]),
			ChallengeHistory: history[n.ID], Flagged: flagged(history[n.ID]),
		})
	}
	for shard := range o.State.Shards() {
		resp.Owners = append(resp.Owners, string(o.State.Owner(shard)))
		resp.Holders = append(resp.Holders, string(o.State.Holder(shard)))
	}
	for _, m := range o.Handover.Moves {
		resp.Handover.Shards = append(resp.Handover.Shards, uint32(m.Shard))
		resp.Handover.From = append(resp.Handover.From, string(m.From))
	}
	for _, shard := range o.Handover.Carried {
		resp.Handover.Carried = append(resp.Handover.Carried, uint32(shard))
	}
	return resp, nil
}
