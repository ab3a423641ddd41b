package committee

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/challenge"
	"github.com/weftstore/weft/shardmap"
)

// fourNodeCommittee is a one-voter control plane served over gRPC with
// four registered storage nodes staked and a committee at epoch 1.
type fourNodeCommittee struct {
	c      *cluster
	admin  weftv1.AdminClient
	nodes  weftv1.NodeClient
	client weftv1.ClientClient
	bg, op context.Context
	sns    map[string]*storageNode
}

func startFourNodeCommittee(t *testing.T, stake func(i int) uint64) fourNodeCommittee {
	t.Helper()
	c := newCluster(t, "v1")
	addr, stop := serveGRPCWith(t, c.leader(), ServiceConfig{})
	t.Cleanup(stop)
	conn := dial(t, addr)
	bg := context.Background()
	f := fourNodeCommittee{c: c, admin: weftv1.NewAdminClient(conn), nodes: weftv1.NewNodeClient(conn), client: weftv1.NewClientClient(conn),
		bg: bg, op: operator(bg, testToken), sns: map[string]*storageNode{}}
	for i := range 4 {
		sn := newStorageNode(t, fmt.Sprintf("node-%d", i))
		f.sns[string(sn.id)] = sn
		if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return f.nodes.RegisterNode(bg, sn.registration(t)) }); err != nil {
			t.Fatal(err)
		}
		if _, err := f.admin.SetStake(f.op, &weftv1.SetStakeRequest{Node: string(sn.id), Stake: stake(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.admin.AdvanceEpoch(f.op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	atEpoch(f.sns, 1)
	return f
}

// A sampled round (one draw per node among 4 members, so each node has
// exactly one challenger) takes verdicts only from each node's sampled
// challenger: a report naming a node the reporter was not drawn for is
// refused whole and changes nothing; the drawn challenger's one vote
// decides. A round asking for more draws than the API allows is refused.
func TestChallengeReportsOnlyFromSampledChallengers(t *testing.T) {
	net := startFourNodeCommittee(t, func(i int) uint64 { return uint64(3 + i) })
	admin, nodes, client, bg, op, sns := net.admin, net.nodes, net.client, net.bg, net.op, net.sns
	_, err := admin.StartChallenge(op, &weftv1.StartChallengeRequest{Challengers: challenge.MaxChallengers + 1})
	wantStatus(t, "a round of too many draws", err, codes.InvalidArgument)

	res, err := admin.StartChallenge(op, &weftv1.StartChallengeRequest{Challengers: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := round(t, client, res.Round)
	if r.Challengers != 1 || len(r.Nodes) != 4 {
		t.Fatalf("round %d: %d draws, %d nodes; want 1 draw, 4 nodes", r.Round, r.Challengers, len(r.Nodes))
	}
	com, err := client.GetCommittee(bg, &weftv1.GetCommitteeRequest{Epoch: r.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	var members []challenge.Member
	for _, m := range com.Members {
		members = append(members, challenge.Member{Node: m.Node, Weight: uint64(m.Weight)})
	}
	sampler := challenge.NewSampler(challenge.Seed(r.Seed), members, int(r.Challengers))
	judge := map[string]string{} // node → its one challenger
	for _, n := range r.Nodes {
		s := sampler.Of(n.Node)
		if s.Everyone || len(s.Challengers) != 1 || s.Need != 1 {
			t.Fatalf("%s's sample: %+v", n.Node, s)
		}
		judge[n.Node] = s.Challengers[0].Node
	}
	report := func(reporter string, verdicts ...*weftv1.ChallengeVerdict) error {
		_, err := nodes.ReportChallenge(bg, sns[reporter].report(t, r.Round, verdicts...))
		return err
	}
	for target, drawn := range judge {
		var outsider string
		for id := range sns {
			if id != target && id != drawn {
				outsider = id
			}
		}
		// The outsider's report also carries a verdict it may give: still
		// refused whole.
		verdicts := []*weftv1.ChallengeVerdict{fail(target, "not drawn")}
		for other, j := range judge {
			if j == outsider && other != target {
				verdicts = append([]*weftv1.ChallengeVerdict{pass(other)}, verdicts...)
			}
		}
		wantStatus(t, fmt.Sprintf("%s judging %s (drawn: %s)", outsider, target, drawn), report(outsider, verdicts...), codes.PermissionDenied)
		now := round(t, client, r.Round)
		for _, n := range now.Nodes {
			if n.Outcome != OutcomeOpen || n.PassedWeight != 0 || n.FailedWeight != 0 {
				t.Fatalf("a refused report changed %s: %+v", n.Node, n)
			}
		}
	}
	// Each drawn challenger's single vote decides: node-0 fails, the rest pass.
	for target, drawn := range judge {
		v := pass(target)
		if target == "node-0" {
			v = fail(target, "item 0: symbol does not match")
		}
		if err := report(drawn, v); err != nil {
			t.Fatalf("%s judging %s: %v", drawn, target, err)
		}
	}
	final := round(t, client, r.Round)
	if final.Open {
		t.Fatalf("every node has its outcome, yet the round is open: %+v", final.Nodes)
	}
	for _, n := range final.Nodes {
		want := OutcomePassed
		if n.Node == "node-0" {
			want = OutcomeFailed
		}
		if n.Outcome != want {
			t.Fatalf("%s: %s, want %s", n.Node, n.Outcome, want)
		}
	}
}

// Rounds opened by commands logged before sampling (no draw count) keep
// the old rule — every member judges every node at f+1 — and a verdict
// recorded then by name still counts once.
func TestChallengeRoundsBeforeSamplingKeepTheOldRule(t *testing.T) {
	n := ChallengedNode{Reporters: []shardmap.NodeID{"node-2"}}
	if !n.reported(7, "node-2") || n.reported(0, "node-1") {
		t.Fatal("a verdict recorded by name before sampling is not recognised")
	}
	n.markReported(9, 12)
	if !n.reported(9, "node-x") || n.reported(8, "node-x") || len(n.Reported) != 2 {
		t.Fatalf("bitmap %08b", n.Reported)
	}

	net := startFourNodeCommittee(t, func(int) uint64 { return 5 })
	c, nodes, client, bg, sns := net.c, net.nodes, net.client, net.bg, net.sns
	cmd, err := NewCommand("old-start", KindStartChallenge, StartChallenge{Fresh: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.leader().Propose(bg, cmd); err != nil || res.Error != nil {
		t.Fatalf("start without a draw count: %v %+v", err, res)
	}
	cmd, _ = NewCommand("bad-start", KindStartChallenge, StartChallenge{Challengers: -1})
	if res, err := c.leader().Propose(bg, cmd); err != nil || res.Error == nil || res.Error.Code != CodeInvalidArgument {
		t.Fatalf("start with -1 draws: %v %+v", err, res)
	}
	r := round(t, client, 0)
	if r.Challengers != 0 {
		t.Fatalf("old-style round recorded %d draws", r.Challengers)
	}
	// Every other member may judge node-3; two of them (weight 10 ≥ f+1 = 7)
	// decide.
	for i, reporter := range []string{"node-0", "node-1"} {
		if _, err := nodes.ReportChallenge(bg, sns[reporter].report(t, r.Round, pass("node-3"))); err != nil {
			t.Fatal(err)
		}
		if o := outcome(round(t, client, r.Round), "node-3"); (i == 0) != (o == OutcomeOpen) {
			t.Fatalf("after %d verdicts node-3 is %s", i+1, o)
		}
	}
}
