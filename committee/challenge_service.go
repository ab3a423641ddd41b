package committee

import (
	"context"
	"crypto/rand"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/challenge"
	"github.com/weftstore/weft/shardmap"
)

// StartChallenge opens a storage-challenge round now. The leader draws the
// round's fresh value here, so it exists nowhere before the command is
// proposed, and is known to storage nodes only once it is committed.
func (s *Service) StartChallenge(ctx context.Context, req *weftv1.StartChallengeRequest) (*weftv1.StartChallengeResponse, error) {
	if req.Challengers > challenge.MaxChallengers {
		return nil, status.Errorf(codes.InvalidArgument, "%d challengers per node: want at most %d", req.Challengers, challenge.MaxChallengers)
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.StartChallengeResponse, error) {
		return weftv1.NewAdminClient(conn).StartChallenge(fctx, req)
	}); done {
		return resp, err
	}
	return s.startChallenge(ctx, int(req.Challengers))
}

// startChallenge opens a round on this voter, which must lead (the
// challenge timer calls it directly; no forwarding). challengers is the
// draws per node (0: challenge.DefaultChallengers).
func (s *Service) startChallenge(ctx context.Context, challengers int) (*weftv1.StartChallengeResponse, error) {
	if challengers == 0 {
		challengers = challenge.DefaultChallengers
	}
	c := StartChallenge{At: time.Now().UnixNano(), Challengers: challengers, ShardsPerBlob: challenge.DefaultShardsPerBlob}
	if _, err := rand.Read(c.Fresh[:]); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	res, err := s.propose(ctx, KindStartChallenge, c, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.StartChallengeResponse{Index: res.Index, Round: res.Epoch}, nil
}

// CloseChallenge closes a round (0: the latest): nodes without an outcome
// missed it.
func (s *Service) CloseChallenge(ctx context.Context, req *weftv1.CloseChallengeRequest) (*weftv1.CloseChallengeResponse, error) {
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.CloseChallengeResponse, error) {
		return weftv1.NewAdminClient(conn).CloseChallenge(fctx, req)
	}); done {
		return resp, err
	}
	return s.closeChallenge(ctx, req.Round)
}

// closeChallenge closes a round on this voter, which must lead.
func (s *Service) closeChallenge(ctx context.Context, round uint64) (*weftv1.CloseChallengeResponse, error) {
	res, err := s.propose(ctx, KindCloseChallenge, CloseChallenge{Round: round}, "", 0)
	if err != nil {
		return nil, err
	}
	return &weftv1.CloseChallengeResponse{Index: res.Index}, nil
}

const maxVerdicts = 10_000

// ReportChallenge records a challenger's signed verdicts.
func (s *Service) ReportChallenge(ctx context.Context, req *weftv1.ReportChallengeRequest) (*weftv1.ReportChallengeResponse, error) {
	if len(req.Verdicts) == 0 || len(req.Verdicts) > maxVerdicts {
		return nil, status.Errorf(codes.InvalidArgument, "%d verdicts: want 1 to %d", len(req.Verdicts), maxVerdicts)
	}
	for _, v := range req.Verdicts {
		if v.Node == "" || len(v.Node) > maxNodeIDLength || len(v.Reason) > 1<<15 {
			return nil, status.Errorf(codes.InvalidArgument, "malformed verdict for %q", v.Node)
		}
	}
	rec, nonce, err := s.registeredSigner(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp, done, err := forward(ctx, s, func(conn *grpc.ClientConn, fctx context.Context) (*weftv1.ReportChallengeResponse, error) {
		return weftv1.NewNodeClient(conn).ReportChallenge(fctx, req)
	}); done {
		return resp, err
	}
	c := ReportChallenge{Round: req.Round, Reporter: rec.ID}
	for _, v := range req.Verdicts {
		c.Verdicts = append(c.Verdicts, Verdict{Node: shardmap.NodeID(v.Node), Passed: v.Passed, Reason: v.Reason})
	}
	res, err := s.propose(ctx, KindReportChallenge, c, rec.ID, nonce)
	if err != nil {
		return nil, err
	}
	return &weftv1.ReportChallengeResponse{Index: res.Index}, nil
}

// GetChallenge returns a round (0: the latest). Public: storage nodes and
// anyone auditing read it.
func (c *clientService) GetChallenge(ctx context.Context, req *weftv1.GetChallengeRequest) (*weftv1.GetChallengeResponse, error) {
	r, found, index, err := c.s.node.FSM().Challenge(req.Round)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "no challenge round %d", req.Round)
	}
	return challengeProto(r, index), nil
}

func challengeProto(r ChallengeRound, index uint64) *weftv1.GetChallengeResponse {
	out := &weftv1.GetChallengeResponse{Round: r.Round, Epoch: r.Epoch, Seed: r.Seed[:], OpenedIndex: r.OpenedIndex, Open: r.Open, Index: index,
		Challengers: uint32(r.Challengers), ShardsPerBlob: uint32(r.ShardsPerBlob)}
	for _, id := range r.Blobs {
		out.Blobs = append(out.Blobs, id[:])
	}
	for _, n := range r.Nodes {
		out.Nodes = append(out.Nodes, &weftv1.ChallengedNode{Node: string(n.Node), Shards: n.Shards, Outcome: n.Outcome,
			PassedWeight: n.Passed, FailedWeight: n.Failed, Reasons: n.Reasons})
	}
	return out
}
