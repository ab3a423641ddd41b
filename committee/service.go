package committee

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/epoch"
	"github.com/weftstore/weft/shardmap"
)

// ServiceConfig configures a voter's gRPC service.
type ServiceConfig struct {
	OperatorToken string        // bearer token of Admin calls (required)
	GRPCAddr      string        // where this voter serves gRPC, advertised to the others
	MaxWait       time.Duration // longest a watch may block (default 60s)
	// AutoEvict: an epoch change this voter plans as leader sets the stake
	// of nodes that failed or missed their last AutoEvict challenge rounds
	// to 0 (0: never).
	AutoEvict int
	// RegistrationRate and RegistrationBurst bound RegisterNode attempts
	// per caller address (a token bucket; defaults 2 a second, bursts of 50).
	RegistrationRate  float64
	RegistrationBurst int
	// MaxSnapshotBytes caps a snapshot upload (RestoreSnapshot), spooled
	// to disk before it is checked (default 16 GiB).
	MaxSnapshotBytes int64
}

// Service serves the control-plane API of one voter. Writes reaching a
// follower are forwarded to the leader, found through the peer addresses
// each leader records in the state.
type Service struct {
	weftv1.UnimplementedAdminServer
	weftv1.UnimplementedNodeServer
	weftv1.UnimplementedWatchServer

	node   *Node
	cfg    ServiceConfig
	client *clientService
	// registrations limits RegisterNode attempts per caller address.
	registrations *peerLimiter
	mu            sync.Mutex
	conns         map[string]*grpc.ClientConn
	stop          chan struct{}
	closeOnce     sync.Once
	done          chan struct{}
}

// DefaultMaxSnapshotBytes is the default cap of a snapshot upload.
const DefaultMaxSnapshotBytes = 16 << 30

const (
	mdAuthorization = "authorization"
	mdForwarded     = "weft-forwarded"
	mdRequestID     = "weft-request-id"
)

// NewService wraps a running node.
func NewService(node *Node, cfg ServiceConfig) (*Service, error) {
	if cfg.OperatorToken == "" {
		return nil, errors.New("committee: an operator token is required")
	}
	if cfg.GRPCAddr == "" {
		return nil, errors.New("committee: the gRPC address to advertise is required")
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.MaxSnapshotBytes <= 0 {
		cfg.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if cfg.RegistrationRate <= 0 {
		cfg.RegistrationRate = defaultRegistrationRate
	}
	if cfg.RegistrationBurst <= 0 {
		cfg.RegistrationBurst = defaultRegistrationBurst
	}
	s := &Service{node: node, cfg: cfg, conns: map[string]*grpc.ClientConn{}, stop: make(chan struct{}), done: make(chan struct{}),
		registrations: newPeerLimiter(cfg.RegistrationRate, cfg.RegistrationBurst)}
	s.client = &clientService{s: s, views: map[uint64]*crypto.CommitteeView{}}
	go s.announce()
	return s, nil
}

// Register adds the services to a gRPC server built with s.ServerOptions.
func (s *Service) Register(g *grpc.Server) {
	weftv1.RegisterAdminServer(g, s)
	weftv1.RegisterNodeServer(g, s)
	weftv1.RegisterWatchServer(g, s)
	weftv1.RegisterClientServer(g, s.client)
}

// ServerOptions returns the interceptors that enforce the authorization
// table (auth.go) on unary calls and streams, and the shared transport
// settings (wire), which let clients ping as often as
// every 5 s (gRPC's default allows one ping in 5 minutes and closes the
// connection of a client that pings more): storage nodes keep their
// long-polls to a voter alive with pings, to notice a voter cut off by the
// network and move to another.
func (s *Service) ServerOptions() []grpc.ServerOption {
	return append(Authorization.ServerOptions(s.authorize), wire.ServerOptions()...)
}

// Close stops the announcer and the forwarding connections.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.stop) }) // a second Close waits too, and does not panic
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// announce keeps this voter's gRPC address in the state, so that
// followers can forward to it when it leads and ListPeers can reach it: a
// leader proposes its own; a follower asks the leader to.
func (s *Service) announce() {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	id := s.node.cfg.ID
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		if addr, found, err := s.node.FSM().PeerAddress(id); err == nil && found && addr == s.cfg.GRPCAddr {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(mdAuthorization, "Bearer "+s.cfg.OperatorToken))
		_, _ = s.AnnouncePeer(ctx, &weftv1.AnnouncePeerRequest{Id: id, GrpcAddr: s.cfg.GRPCAddr})
		cancel()
	}
}

// randomID makes a command ID: a time prefix, so that the FSM's record of
// applied commands grows at the end of its B+tree, and random bits.
func randomID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// requestID is the command ID of this call: the caller's, when it set one
// (a retry then gets the first outcome), else a fresh one.
func requestID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(mdRequestID); len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return randomID()
}

// leader returns nil when this voter leads, or a connection to the leader
// and the context to call it with (the caller's credentials and request ID
// carried over). A forwarded call is never forwarded again.
func (s *Service) leader(ctx context.Context) (*grpc.ClientConn, context.Context, error) {
	if s.node.IsLeader() {
		// What the caller checks next, it checks against this state.
		if err := s.leaderState(ctx); err != nil {
			return nil, nil, err
		}
		return nil, nil, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(mdForwarded)) > 0 {
		return nil, nil, status.Error(codes.Unavailable, "forwarded to a voter that is no longer the leader; retry")
	}
	_, leaderID := s.node.raft.LeaderWithID()
	if leaderID == "" {
		return nil, nil, status.Error(codes.Unavailable, "no leader elected; retry")
	}
	addr, found, err := s.node.FSM().PeerAddress(string(leaderID))
	if err != nil || !found {
		return nil, nil, status.Errorf(codes.Unavailable, "leader %s has not announced its address yet; retry", leaderID)
	}
	conn, err := s.conn(addr)
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "connecting to leader %s at %s: %v", leaderID, addr, err)
	}
	out := metadata.MD{}
	if v := md.Get(mdAuthorization); len(v) > 0 {
		out.Set(mdAuthorization, v[0])
	}
	out.Set(mdForwarded, "1")
	out.Set(mdRequestID, requestID(ctx))
	return conn, metadata.NewOutgoingContext(ctx, out), nil
}

// leaderState waits, on a leader, until its state reflects every write
// committed before its term (Node.LeaderCaughtUp): the checks a leader
// makes before proposing must not answer from a state older than writes
// already acknowledged. Unavailable when it cannot tell (leadership lost).
func (s *Service) leaderState(ctx context.Context) error {
	if !s.node.IsLeader() {
		return nil
	}
	if err := s.node.LeaderCaughtUp(ctx, 5*time.Second); err != nil {
		return status.Errorf(codes.Unavailable, "a new leader catching up: %v; retry", err)
	}
	return nil
}

// forward hands a write to the leader when this voter does not lead:
// done reports that the call was answered (by the leader, or with an error)
// and the caller must return resp and err as they are.
func forward[Resp any](ctx context.Context, s *Service, call func(conn *grpc.ClientConn, fctx context.Context) (Resp, error)) (resp Resp, done bool, err error) {
	conn, fctx, err := s.leader(ctx)
	if err != nil {
		return resp, true, err
	}
	if conn == nil {
		return resp, false, nil
	}
	resp, err = call(conn, fctx)
	return resp, true, err
}

func (s *Service) conn(addr string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	// Keepalive finds a leader cut off by the network; the capped backoff
	// reaches a restarted one within seconds (wire).
	c, err := grpc.NewClient(addr, s.node.dialOptions()...)
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

// propose commits a command on this (leading) voter and maps its outcome
// to a gRPC status.
func (s *Service) propose(ctx context.Context, kind Kind, body any, node shardmap.NodeID, nonce uint64) (*Result, error) {
	// Command IDs are scoped by who sent them, so that no caller can reuse
	// another's request ID to read its outcome or suppress its command.
	principal := "operator"
	switch {
	case node != "":
		principal = "node/" + string(node)
	case clientOf(ctx) != "":
		principal = "client/" + clientOf(ctx)
	}
	cmd, err := NewCommand(principal+"/"+requestID(ctx), kind, body)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cmd.Node, cmd.Nonce = node, nonce
	res, err := s.node.Propose(ctx, cmd)
	if err != nil {
		if errors.Is(err, ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return nil, status.Error(codes.Internal, err.Error())
	}
	if res.Error != nil {
		return nil, statusOf(res.Error)
	}
	return res, nil
}

func statusOf(e *CommandError) error {
	code := map[Code]codes.Code{
		CodeInvalidArgument:    codes.InvalidArgument,
		CodeNotFound:           codes.NotFound,
		CodeAlreadyExists:      codes.AlreadyExists,
		CodeFailedPrecondition: codes.FailedPrecondition,
		CodePermissionDenied:   codes.PermissionDenied,
		CodeResourceExhausted:  codes.ResourceExhausted,
	}[e.Code]
	if code == codes.OK {
		code = codes.Internal
	}
	return status.Error(code, e.Message)
}

// --- Admin ---

// Status reports this voter's view.
func (s *Service) Status(ctx context.Context, _ *weftv1.StatusRequest) (*weftv1.StatusResponse, error) {
	st, err := s.node.FSM().EpochState()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	index, _ := s.node.FSM().AppliedIndex()
	_, leaderID := s.node.raft.LeaderWithID()
	resp := &weftv1.StatusResponse{
		Id: s.node.cfg.ID, RaftState: s.node.raft.State().String(), LeaderId: string(leaderID),
		AppliedIndex: index, Epoch: st.Epoch(), Phase: st.Phase().String(), Shards: uint32(s.node.FSM().Config().Shards),
	}
	for _, shard := range st.Pending() {
		resp.PendingShards = append(resp.PendingShards, uint32(shard))
	}
	return resp, nil
}

// ListNodes lists the registry with each node's current shard count.
func (s *Service) ListNodes(ctx context.Context, _ *weftv1.ListNodesRequest) (*weftv1.ListNodesResponse, error) {
	nodes, err := s.node.FSM().Nodes()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	st, _ := s.node.FSM().EpochState()
	counts := map[shardmap.NodeID]int{}
	if m := st.Map(); m != nil {
		counts = m.Counts()
	}
	history, err := s.node.FSM().ChallengeHistory(historyRounds)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &weftv1.ListNodesResponse{}
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, &weftv1.NodeInfo{
			Id: string(n.ID), PublicKey: n.PublicKey, Address: n.Address, Stake: n.Stake, ShardsOwned: uint32(counts[n.ID]),
			ChallengeHistory: history[n.ID], Flagged: flagged(history[n.ID]),
		})
	}
	return resp, nil
}

// flagged: a node's latest closed challenge round (history newest first)
// was not passed.
func flagged(history []string) bool {
	for _, o := range history {
		if o != OutcomeOpen {
			return o != OutcomePassed
		}
	}
	return false
}

// SetStake sets a node's stake, effective at the next epoch change.
func (s *Service) SetStake(ctx context.Context, req *weftv1.SetStakeRequest) (*weftv1.SetStakeResponse, error) {
	if err := checkID("node", req.Node); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.SetStakeResponse, error) {
		return weftv1.NewAdminClient(conn).SetStake(fctx, req)
	}); done {
		return resp, err
	}
	if err := s.checkStakedKey(req); err != nil {
		return nil, err
	}
	c := SetStake{Node: shardmap.NodeID(req.Node), Stake: req.Stake, KeyFingerprint: req.KeyFingerprint}
	res, err := s.propose(ctx, KindSetStake, c, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.SetStakeResponse{Index: res.Index}, nil
}

// checkStakedKey refuses a stake pinned to a key fingerprint that is not
// the one the ID is registered to, so that an operator staking by ID does
// not stake a squatter (the FSM checks again when it applies the stake).
func (s *Service) checkStakedKey(req *weftv1.SetStakeRequest) error {
	want := req.KeyFingerprint
	if want == "" {
		return nil
	}
	if len(want) != 16 || strings.Trim(want, "0123456789abcdef") != "" {
		return status.Errorf(codes.InvalidArgument, "key fingerprint %q: want 16 lower-case hex characters (weft admin node list)", want)
	}
	rec, found, err := s.node.FSM().Node(shardmap.NodeID(req.Node))
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if !found {
		return status.Errorf(codes.NotFound, "node %s is not registered", req.Node)
	}
	if got := crypto.KeyFingerprint(rec.PublicKey); got != want {
		return status.Errorf(codes.FailedPrecondition, "node %s is registered to key fingerprint %s, not %s: it is not the key you meant to stake", req.Node, got, want)
	}
	return nil
}

// RemoveNode removes a node that owns and holds nothing.
func (s *Service) RemoveNode(ctx context.Context, req *weftv1.RemoveNodeRequest) (*weftv1.RemoveNodeResponse, error) {
	if err := checkID("node", req.Node); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.RemoveNodeResponse, error) {
		return weftv1.NewAdminClient(conn).RemoveNode(fctx, req)
	}); done {
		return resp, err
	}
	res, err := s.propose(ctx, KindRemoveNode, RemoveNode{Node: shardmap.NodeID(req.Node)}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.RemoveNodeResponse{Index: res.Index}, nil
}

// AdvanceEpoch starts the next epoch: the leader plans it from the registry.
func (s *Service) AdvanceEpoch(ctx context.Context, req *weftv1.AdvanceEpochRequest) (*weftv1.AdvanceEpochResponse, error) {
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.AdvanceEpochResponse, error) {
		return weftv1.NewAdminClient(conn).AdvanceEpoch(fctx, req)
	}); done {
		return resp, err
	}
	return s.advanceEpoch(ctx, req.Force)
}

// advanceEpoch plans and proposes the next epoch on this voter, which must
// lead (the epoch timer calls it directly; no forwarding).
func (s *Service) advanceEpoch(ctx context.Context, force bool) (*weftv1.AdvanceEpochResponse, error) {
	if err := s.leaderState(ctx); err != nil {
		return nil, err
	}
	plan, err := s.node.FSM().PlanEpoch(force, s.cfg.AutoEvict)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	res, err := s.propose(ctx, KindAdvanceEpoch, plan, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.AdvanceEpochResponse{Index: res.Index, Epoch: res.Epoch}, nil
}

// AddClient issues a client credential; the token is returned once and
// only its hash is stored.
func (s *Service) AddClient(ctx context.Context, req *weftv1.AddClientRequest) (*weftv1.AddClientResponse, error) {
	if err := checkID("client", req.Client); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.AddClientResponse, error) {
		return weftv1.NewAdminClient(conn).AddClient(fctx, req)
	}); done {
		return resp, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	res, err := s.propose(ctx, KindAddClient, AddClient{Client: req.Client, TokenHash: sha256.Sum256([]byte(token)), Quota: req.Quota}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.AddClientResponse{Index: res.Index, Token: token}, nil
}

// SetQuota changes a client's quota.
func (s *Service) SetQuota(ctx context.Context, req *weftv1.SetQuotaRequest) (*weftv1.SetQuotaResponse, error) {
	if err := checkID("client", req.Client); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.SetQuotaResponse, error) {
		return weftv1.NewAdminClient(conn).SetQuota(fctx, req)
	}); done {
		return resp, err
	}
	res, err := s.propose(ctx, KindSetQuota, SetQuota{Client: req.Client, Quota: req.Quota}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.SetQuotaResponse{Index: res.Index}, nil
}

// --- Node ---

// epochWindow is the range of epochs a node request may be signed for.
type epochWindow struct{ lo, hi uint64 }

// nodeEpochs is the window this replica accepts: the current epoch or the
// one before it (a node may sign just before an epoch change and send
// just after). A follower also takes the next epoch, since it may not have
// applied an epoch change the node already saw; it forwards the request
// to the leader, which runs the same check with hi = its current epoch.
func (s *Service) nodeEpochs(ctx context.Context) (epochWindow, error) {
	if err := s.leaderState(ctx); err != nil {
		return epochWindow{}, err
	}
	st, err := s.node.FSM().EpochState()
	if err != nil {
		return epochWindow{}, status.Error(codes.Internal, err.Error())
	}
	w := epochWindow{lo: st.Epoch(), hi: st.Epoch()}
	if w.lo > 0 {
		w.lo--
	}
	if !s.node.IsLeader() {
		w.hi++
	}
	return w, nil
}

// verifyNode checks a signed node request against key (control.Verify)
// after bounding the node ID it is sent as. It returns the nonce.
func verifyNode(req control.NodeRequest, key *crypto.PublicKey, epochs epochWindow) (uint64, error) {
	if auth := req.GetAuth(); auth != nil && auth.Node != "" {
		if err := checkID("node", auth.Node); err != nil {
			return 0, err
		}
	}
	return control.Verify(req, key, epochs.lo, epochs.hi)
}

// RegisterNode registers a storage node: its proof of possession and its
// signature of the request are checked here, before proposing. The
// registry binds an ID to one key: registering the same ID with the same
// key again succeeds (a restarted node; it may move), with another key it
// is AlreadyExists naming the registered key's fingerprint.
func (s *Service) RegisterNode(ctx context.Context, req *weftv1.RegisterNodeRequest) (*weftv1.RegisterNodeResponse, error) {
	if err := checkAddress("node", req.Address); err != nil {
		return nil, err
	}
	pk, err := crypto.PublicKeyFromBytes(req.PublicKey)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "public key: %v", err)
	}
	pop, err := crypto.SignatureFromBytes(req.ProofOfPossession)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "proof of possession: %v", err)
	}
	if err := pk.VerifyPossession(pop); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "proof of possession: %v", err)
	}
	epochs, err := s.nodeEpochs(ctx)
	if err != nil {
		return nil, err
	}
	nonce, err := verifyNode(req, pk, epochs)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.RegisterNodeResponse, error) {
		return weftv1.NewNodeClient(conn).RegisterNode(fctx, req)
	}); done {
		return resp, err
	}
	node := shardmap.NodeID(req.Auth.Node)
	res, err := s.propose(ctx, KindRegisterNode, RegisterNode{Node: node, PublicKey: req.PublicKey, Address: req.Address}, node, nonce)
	if err != nil {
		return nil, err
	}
	return &weftv1.RegisterNodeResponse{Index: res.Index}, nil
}

// ShardSynced records an owner's report that it holds a shard.
func (s *Service) ShardSynced(ctx context.Context, req *weftv1.ShardSyncedRequest) (*weftv1.ShardSyncedResponse, error) {
	rec, nonce, err := s.registeredSigner(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.ShardSyncedResponse, error) {
		return weftv1.NewNodeClient(conn).ShardSynced(fctx, req)
	}); done {
		return resp, err
	}
	res, err := s.propose(ctx, KindShardSynced, ShardSynced{Epoch: req.Epoch, Shard: int(req.Shard), Node: rec.ID}, rec.ID, nonce)
	if err != nil {
		return nil, err
	}
	return &weftv1.ShardSyncedResponse{Index: res.Index}, nil
}

// --- Watch ---

func (s *Service) wait(ctx context.Context, ms uint32) time.Duration {
	return min(time.Duration(ms)*time.Millisecond, s.cfg.MaxWait)
}

// WatchState returns the epoch state once the state index passes the
// caller's, or at the timeout. Linearizable reads need the leader.
func (s *Service) WatchState(ctx context.Context, req *weftv1.WatchStateRequest) (*weftv1.WatchStateResponse, error) {
	if req.Linearizable {
		// Served by the leader: a follower passes the read on.
		if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.WatchStateResponse, error) {
			return weftv1.NewWatchClient(conn).WatchState(fctx, req)
		}); done {
			return resp, err
		}
		if err := s.node.LinearizableRead(ctx, 5*time.Second); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	fsm := s.node.FSM()
	fsm.WaitApplied(ctx, req.AfterIndex, s.wait(ctx, req.TimeoutMs))
	resp := watchResponse(fsm, req)
	kind := "full"
	if resp.Delta {
		kind = "delta"
	}
	fsm.metrics.watchSent(kind, proto.Size(resp))
	return resp, nil
}

// watchResponse answers a watcher with what changed since its index when
// it asks for that and this voter knows it, else with the full state.
func watchResponse(fsm *FSM, req *weftv1.WatchStateRequest) *weftv1.WatchStateResponse {
	if !req.Delta || req.AfterIndex == 0 {
		return stateResponse(fsm.WatchSnapshot())
	}
	index, st, shards, ok := fsm.ChangesSince(req.AfterIndex)
	if !ok {
		return stateResponse(index, st)
	}
	return smallerResponse(index, st, shards)
}

// smallerResponse is the delta of shards, or the full state if that is
// smaller. A delta spends a few bytes more per shard than the full
// state (the shard number, a message header), so up to half the shards
// it is the smaller for sure; beyond, both are measured.
func smallerResponse(index uint64, st epoch.State, shards []int) *weftv1.WatchStateResponse {
	delta := deltaResponse(index, st, shards)
	if 2*len(shards) <= st.Shards() {
		return delta
	}
	full := stateResponse(index, st)
	if proto.Size(full) <= proto.Size(delta) {
		return full
	}
	return delta
}

// deltaResponse lists the current owner and holder of shards.
func deltaResponse(index uint64, st epoch.State, shards []int) *weftv1.WatchStateResponse {
	resp := &weftv1.WatchStateResponse{Index: index, Epoch: st.Epoch(), Phase: st.Phase().String(), Delta: true}
	resp.Changes = make([]*weftv1.ShardChange, 0, len(shards))
	for _, shard := range shards {
		resp.Changes = append(resp.Changes, &weftv1.ShardChange{
			Shard: uint32(shard), Owner: string(st.Owner(shard)), Holder: string(st.Holder(shard)),
		})
	}
	return resp
}

func stateResponse(index uint64, st epoch.State) *weftv1.WatchStateResponse {
	resp := &weftv1.WatchStateResponse{Index: index, Epoch: st.Epoch(), Phase: st.Phase().String()}
	for shard := range st.Shards() {
		resp.Owners = append(resp.Owners, string(st.Owner(shard)))
		resp.Holders = append(resp.Holders, string(st.Holder(shard)))
	}
	return resp
}

// Events returns events after an index, waiting up to the timeout for the
// first one.
func (s *Service) Events(ctx context.Context, req *weftv1.EventsRequest) (*weftv1.EventsResponse, error) {
	limit := int(min(max(req.Limit, 1), 1000))
	events, err := s.node.FSM().Events(req.AfterIndex, limit)
	if err == nil && len(events) == 0 && req.TimeoutMs > 0 {
		s.node.FSM().WaitApplied(ctx, req.AfterIndex, s.wait(ctx, req.TimeoutMs))
		events, err = s.node.FSM().Events(req.AfterIndex, limit)
	}
	if compacted := (*ErrCompacted)(nil); errors.As(err, &compacted) {
		return nil, status.Error(codes.OutOfRange, compacted.Error())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &weftv1.EventsResponse{}
	for _, e := range events {
		resp.Events = append(resp.Events, e.Proto())
	}
	return resp, nil
}

// registeredSigner verifies a signed request from a registered node.
func (s *Service) registeredSigner(ctx context.Context, req control.NodeRequest) (NodeRecord, uint64, error) {
	auth := req.GetAuth()
	if auth == nil {
		return NodeRecord{}, 0, status.Error(codes.Unauthenticated, "signed node request required")
	}
	if err := checkID("node", auth.Node); err != nil {
		return NodeRecord{}, 0, err
	}
	if err := s.leaderState(ctx); err != nil {
		return NodeRecord{}, 0, err
	}
	rec, found, err := s.node.FSM().Node(shardmap.NodeID(auth.Node))
	if err != nil || !found {
		return NodeRecord{}, 0, status.Errorf(codes.Unauthenticated, "unknown node %q", auth.Node)
	}
	pk, err := crypto.PublicKeyFromBytes(rec.PublicKey)
	if err != nil {
		return NodeRecord{}, 0, status.Error(codes.Internal, err.Error())
	}
	epochs, err := s.nodeEpochs(ctx)
	if err != nil {
		return NodeRecord{}, 0, err
	}
	nonce, err := verifyNode(req, pk, epochs)
	return rec, nonce, err
}

// UpdateAddress changes where a node is reached.
func (s *Service) UpdateAddress(ctx context.Context, req *weftv1.UpdateAddressRequest) (*weftv1.UpdateAddressResponse, error) {
	if err := checkAddress("node", req.Address); err != nil {
		return nil, err
	}
	rec, nonce, err := s.registeredSigner(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.UpdateAddressResponse, error) {
		return weftv1.NewNodeClient(conn).UpdateAddress(fctx, req)
	}); done {
		return resp, err
	}
	res, err := s.propose(ctx, KindUpdateAddress, UpdateAddress{Node: rec.ID, Address: req.Address}, rec.ID, nonce)
	if err != nil {
		return nil, err
	}
	return &weftv1.UpdateAddressResponse{Index: res.Index}, nil
}

// MarkBlobInvalid verifies an invalid-blob certificate against its epoch's
// committee on the leader, then proposes it.
func (s *Service) MarkBlobInvalid(ctx context.Context, req *weftv1.MarkBlobInvalidRequest) (*weftv1.MarkBlobInvalidResponse, error) {
	rec, nonce, err := s.registeredSigner(ctx, req)
	if err != nil {
		return nil, err
	}
	id, err := blobIDFrom(req.BlobId)
	if err != nil {
		return nil, err
	}
	var cert crypto.Certificate
	if err := cert.UnmarshalBinary(req.Certificate); err != nil || cert.BlobID != id {
		return nil, status.Errorf(codes.InvalidArgument, "invalid-blob certificate: %v", err)
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.MarkBlobInvalidResponse, error) {
		return weftv1.NewNodeClient(conn).MarkBlobInvalid(fctx, req)
	}); done {
		return resp, err
	}
	view, err := s.client.view(cert.Epoch)
	if err != nil {
		return nil, err
	}
	if err := cert.VerifyInvalidity(view); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid-blob certificate: %v", err)
	}
	res, err := s.propose(ctx, KindMarkInvalid, MarkBlobInvalid{BlobID: id, Certificate: req.Certificate}, rec.ID, nonce)
	if err != nil {
		return nil, err
	}
	return &weftv1.MarkBlobInvalidResponse{Index: res.Index}, nil
}
