package committee

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// Control-plane membership and snapshots (operator calls).

// PeerInfo describes this voter; bootstrap discovery and ListPeers ask it.
func (s *Service) PeerInfo(ctx context.Context, _ *weftv1.PeerInfoRequest) (*weftv1.PeerInfoResponse, error) {
	index, _ := s.node.FSM().AppliedIndex()
	return &weftv1.PeerInfoResponse{
		Id: s.node.cfg.ID, RaftAddr: s.node.cfg.RaftAddr, GrpcAddr: s.cfg.GRPCAddr,
		AppliedIndex: index, RaftState: s.node.raft.State().String(),
	}, nil
}

// AnnouncePeer records a voter's gRPC address (on the leader).
func (s *Service) AnnouncePeer(ctx context.Context, req *weftv1.AnnouncePeerRequest) (*weftv1.AnnouncePeerResponse, error) {
	if err := checkID("voter", req.Id); err != nil {
		return nil, err
	}
	if err := checkAddress("gRPC", req.GrpcAddr); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.AnnouncePeerResponse, error) {
		return weftv1.NewAdminClient(conn).AnnouncePeer(fctx, req)
	}); done {
		return resp, err
	}
	if _, err := s.propose(ctx, KindSetPeer, SetPeer{ID: req.Id, Address: req.GrpcAddr}, "", 0); err != nil {
		return nil, err
	}
	return &weftv1.AnnouncePeerResponse{}, nil
}

// ListPeers lists the Raft configuration with each voter's applied index,
// asked of the voter itself, and its lag behind the most advanced one.
func (s *Service) ListPeers(ctx context.Context, _ *weftv1.ListPeersRequest) (*weftv1.ListPeersResponse, error) {
	future := s.node.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	_, leaderID := s.node.raft.LeaderWithID()
	md, _ := metadata.FromIncomingContext(ctx)
	resp := &weftv1.ListPeersResponse{}
	var top uint64
	for _, srv := range future.Configuration().Servers {
		p := &weftv1.Peer{Id: string(srv.ID), RaftAddr: string(srv.Address), Suffrage: srv.Suffrage.String(), Leader: srv.ID == leaderID}
		p.GrpcAddr, _, _ = s.node.FSM().PeerAddress(p.Id)
		info, err := s.peerInfo(metadata.NewOutgoingContext(ctx, md), p.Id, p.GrpcAddr)
		if err != nil {
			p.Error = err.Error()
		} else {
			p.AppliedIndex = info.AppliedIndex
			top = max(top, info.AppliedIndex)
		}
		resp.Peers = append(resp.Peers, p)
	}
	for _, p := range resp.Peers {
		if p.Error == "" {
			p.Lag = top - p.AppliedIndex
		}
	}
	return resp, nil
}

func (s *Service) peerInfo(ctx context.Context, id, addr string) (*weftv1.PeerInfoResponse, error) {
	if id == s.node.cfg.ID {
		return s.PeerInfo(ctx, nil)
	}
	if addr == "" {
		return nil, fmt.Errorf("voter %s has not announced its gRPC address", id)
	}
	conn, err := s.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return weftv1.NewAdminClient(conn).PeerInfo(ctx, &weftv1.PeerInfoRequest{})
}

// AddPeer adds a voter (on the leader); adding one that is already a voter
// at that address changes nothing.
func (s *Service) AddPeer(ctx context.Context, req *weftv1.AddPeerRequest) (*weftv1.AddPeerResponse, error) {
	if err := checkID("voter", req.Id); err != nil {
		return nil, err
	}
	if err := checkAddress("Raft", req.RaftAddr); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.AddPeerResponse, error) {
		return weftv1.NewAdminClient(conn).AddPeer(fctx, req)
	}); done {
		return resp, err
	}
	if err := s.node.AddVoter(req.Id, req.RaftAddr); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &weftv1.AddPeerResponse{}, nil
}

// RemovePeer removes a voter (on the leader).
func (s *Service) RemovePeer(ctx context.Context, req *weftv1.RemovePeerRequest) (*weftv1.RemovePeerResponse, error) {
	if err := checkID("voter", req.Id); err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.RemovePeerResponse, error) {
		return weftv1.NewAdminClient(conn).RemovePeer(fctx, req)
	}); done {
		return resp, err
	}
	future := s.node.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	known := false
	for _, srv := range future.Configuration().Servers {
		known = known || string(srv.ID) == req.Id
	}
	if !known {
		return nil, status.Errorf(codes.NotFound, "no voter %s", req.Id)
	}
	if err := s.node.RemoveServer(req.Id); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &weftv1.RemovePeerResponse{}, nil
}

// TransferLeadership hands leadership to a voter (any, when unnamed).
func (s *Service) TransferLeadership(ctx context.Context, req *weftv1.TransferLeadershipRequest) (*weftv1.TransferLeadershipResponse, error) {
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.TransferLeadershipResponse, error) {
		return weftv1.NewAdminClient(conn).TransferLeadership(fctx, req)
	}); done {
		return resp, err
	}
	var f raft.Future
	if req.ToId == "" {
		f = s.node.raft.LeadershipTransfer()
	} else {
		future := s.node.raft.GetConfiguration()
		if err := future.Error(); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		var addr raft.ServerAddress
		for _, srv := range future.Configuration().Servers {
			if string(srv.ID) == req.ToId {
				addr = srv.Address
			}
		}
		if addr == "" {
			return nil, status.Errorf(codes.NotFound, "no voter %s", req.ToId)
		}
		f = s.node.raft.LeadershipTransferToServer(raft.ServerID(req.ToId), addr)
	}
	if err := f.Error(); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	// Report the new leader once this voter has heard from it.
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, id := s.node.raft.LeaderWithID()
		if (id != "" && string(id) != s.node.cfg.ID) || time.Now().After(deadline) {
			return &weftv1.TransferLeadershipResponse{LeaderId: string(id)}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshotChunk is the size of the pieces a snapshot streams in.
const snapshotChunk = 1 << 20

// SaveSnapshot streams the state as of the leader's latest commit: a
// follower relays the leader's stream; the leader waits until its own file
// holds everything committed (a linearizable read), then streams a
// consistent copy.
func (s *Service) SaveSnapshot(req *weftv1.SaveSnapshotRequest, stream weftv1.Admin_SaveSnapshotServer) error {
	conn, fctx, err := s.leader(stream.Context())
	if err != nil {
		return err
	}
	if conn != nil {
		upstream, err := weftv1.NewAdminClient(conn).SaveSnapshot(fctx, req)
		if err != nil {
			return err
		}
		for {
			chunk, err := upstream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := stream.Send(chunk); err != nil {
				return err
			}
		}
	}
	if err := s.node.LinearizableRead(stream.Context(), 30*time.Second); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	w := &chunkWriter{send: func(b []byte, index uint64) error {
		return stream.Send(&weftv1.SnapshotChunk{Data: b, Index: index})
	}}
	index, err := s.node.FSM().WriteSnapshot(w)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	w.index = index
	return w.flush()
}

// chunkWriter batches writes into chunks of snapshotChunk bytes.
type chunkWriter struct {
	buf   []byte
	index uint64
	send  func(b []byte, index uint64) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= snapshotChunk {
		if err := w.send(w.buf[:snapshotChunk], 0); err != nil {
			return 0, err
		}
		w.buf = append([]byte(nil), w.buf[snapshotChunk:]...)
	}
	return len(p), nil
}

// flush sends the rest; the last chunk carries the state index, known once
// the copy is done.
func (w *chunkWriter) flush() error { return w.send(w.buf, w.index) }

// RestoreSnapshot replaces the whole cluster's state with a saved one: the
// leader installs it through Raft, which sends it to every voter; a
// follower relays the upload to the leader.
func (s *Service) RestoreSnapshot(stream weftv1.Admin_RestoreSnapshotServer) error {
	conn, fctx, err := s.leader(stream.Context())
	if err != nil {
		return err
	}
	if conn != nil {
		upstream, err := weftv1.NewAdminClient(conn).RestoreSnapshot(fctx)
		if err != nil {
			return err
		}
		for {
			chunk, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if err := upstream.Send(chunk); err != nil {
				return err
			}
		}
		resp, err := upstream.CloseAndRecv()
		if err != nil {
			return err
		}
		return stream.SendAndClose(resp)
	}
	tmp, err := os.CreateTemp(s.node.cfg.DataDir, ".upload-*")
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := spool(stream, tmp, s.cfg.MaxSnapshotBytes)
	if err != nil {
		return err
	}
	applied, err := checkSnapshotFile(tmp.Name(), s.node.FSM().Config())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "snapshot: %v", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	// Raft installs the snapshot at one past the larger of its index and
	// the log's last: giving it the state's own applied index keeps the
	// cluster's indices above every index the state (its events, its
	// watchers, the applied-index guard against replays) has seen — a new
	// cluster restored from a backup would otherwise apply nothing until
	// its log caught up with the backup's index.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size, Index: applied}
	if err := s.node.raft.Restore(meta, tmp, time.Minute); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return stream.SendAndClose(&weftv1.RestoreSnapshotResponse{Index: s.node.raft.LastIndex()})
}

// spool writes an upload to tmp, refusing it (ResourceExhausted) as soon
// as it passes limit bytes, and returns its size.
func spool(stream weftv1.Admin_RestoreSnapshotServer, tmp *os.File, limit int64) (int64, error) {
	var size int64
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return size, nil
		}
		if err != nil {
			return 0, err
		}
		if size += int64(len(chunk.Data)); size > limit {
			return 0, status.Errorf(codes.ResourceExhausted, "snapshot upload passes %d bytes, the cap (--max-snapshot-size)", limit)
		}
		if _, err := tmp.Write(chunk.Data); err != nil {
			return 0, status.Error(codes.Internal, err.Error())
		}
	}
}

// checkSnapshotFile checks an uploaded snapshot before it may replace
// anything, without writing to it: a bbolt file (its meta pages' checksums
// hold, every page is reachable once and in bounds: bbolt's consistency
// check) with every bucket of the schema, created for this network's
// configuration, whose epoch state decodes. It returns the Raft index its
// state was applied up to. A file corrupt enough to make bbolt fault or
// panic is an error too, not a crash.
func checkSnapshotFile(path string, cfg Config) (applied uint64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			applied, err = 0, fmt.Errorf("not a readable state file: %v", r)
		}
	}()
	if err := checkPageGraph(path); err != nil {
		return 0, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the check runs on its own goroutine
			if first == nil {
				first = fmt.Errorf("inconsistent file: %w", err)
			}
		}
		if first != nil {
			return first
		}
		return checkSchema(tx, cfg.withDefaults())
	})
	if err != nil {
		return 0, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		applied = readApplied(tx)
		return nil
	})
	return applied, err
}

// checkSchema checks a state file's buckets, configuration and epoch.
func checkSchema(tx *bolt.Tx, cfg Config) error {
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("no %q bucket: not a state file of this version", name)
		}
	}
	var stored Config
	found, err := getJSON(tx.Bucket(bucketMeta), keyConfig, &stored)
	if err != nil || !found {
		return fmt.Errorf("no readable configuration (%v)", err)
	}
	if stored.withDefaults() != cfg.withDefaults() { // older files lack later fields

		return fmt.Errorf("created for %+v, not this network's %+v", stored, cfg)
	}
	if _, err := readEpoch(tx); err != nil {
		return fmt.Errorf("epoch state: %w", err)
	}
	return nil
}

// ListClients lists client credentials and their quota use.
func (s *Service) ListClients(ctx context.Context, _ *weftv1.ListClientsRequest) (*weftv1.ListClientsResponse, error) {
	clients, err := s.node.FSM().Clients()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &weftv1.ListClientsResponse{}
	for _, c := range clients {
		resp.Clients = append(resp.Clients, &weftv1.ClientInfo{Client: c.ID, Quota: c.Quota, Used: c.Used})
	}
	return resp, nil
}
