package committee

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

func (sn *storageNode) report(t testing.TB, round uint64, verdicts ...*weftv1.ChallengeVerdict) *weftv1.ReportChallengeRequest {
	req := &weftv1.ReportChallengeRequest{Round: round, Verdicts: verdicts}
	sn.nonce++
	if err := control.Sign(req, sn.sk, sn.id, sn.epoch, sn.nonce); err != nil {
		t.Fatal(err)
	}
	return req
}

// atEpoch makes the nodes sign for epoch e, as storage nodes sign for the
// epoch they follow.
func atEpoch(sns map[string]*storageNode, e uint64) {
	for _, sn := range sns {
		sn.epoch = e
	}
}

func pass(node string) *weftv1.ChallengeVerdict {
	return &weftv1.ChallengeVerdict{Node: node, Passed: true}
}
func fail(node, why string) *weftv1.ChallengeVerdict {
	return &weftv1.ChallengeVerdict{Node: node, Reason: why}
}

// Challenge rounds over gRPC on one voter: a round samples only blobs
// certified in earlier epochs, outcomes are decided at weight f+1 of
// challengers' verdicts (failed over passed), closing makes the silent
// missed, bad reports change nothing, node listings show the history, and
// --auto-evict takes the stake of a node that failed twice.
func TestChallengeRounds(t *testing.T) {
	c := newCluster(t, "v1")
	addr, stop := serveGRPCWith(t, c.leader(), ServiceConfig{AutoEvict: 2})
	t.Cleanup(stop)
	conn := dial(t, addr)
	admin, nodes, client := weftv1.NewAdminClient(conn), weftv1.NewNodeClient(conn), weftv1.NewClientClient(conn)
	bg := context.Background()
	op := operator(bg, testToken)
	keys := map[string]*crypto.SecretKey{}
	sns := map[string]*storageNode{}
	for i := range 5 {
		sn := newStorageNode(t, fmt.Sprintf("node-%d", i))
		sns[string(sn.id)], keys[string(sn.id)] = sn, sn.sk
		if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(bg, sn.registration(t)) }); err != nil {
			t.Fatal(err)
		}
		if i < 4 { // node-4 is registered but never in the committee
			if _, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: string(sn.id), Stake: 5}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err := admin.StartChallenge(op, &weftv1.StartChallengeRequest{})
	wantStatus(t, "a round before there is a committee", err, codes.FailedPrecondition)
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	atEpoch(sns, 1)
	app := operator(bg, mustClient(t, admin, op))
	committee, err := client.GetCommittee(app, &weftv1.GetCommitteeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var blobs []crypto.BlobID
	for i := range 3 {
		res, err := client.RegisterBlob(app, &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: uint64(1000 + i), Root: make([]byte, 32), EndEpoch: 10})
		if err != nil {
			t.Fatal(err)
		}
		id := crypto.BlobID(res.BlobId)
		if _, err := client.CertifyBlob(app, &weftv1.CertifyBlobRequest{BlobId: id[:], Certificate: certificate(t, committee, keys, id, 3)}); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, id)
	}

	// Round 1, epoch 1: the blobs were certified in this epoch, so none is
	// sampled yet (their owners may still be recovering them).
	r1 := startRound(t, admin, client, op)
	if len(r1.Blobs) != 0 || len(r1.Nodes) != 4 || !r1.Open {
		t.Fatalf("round 1: %d blobs, %d nodes, open %v; want 0 blobs of this epoch, the 4 members, open", len(r1.Blobs), len(r1.Nodes), r1.Open)
	}
	for _, n := range r1.Nodes {
		if len(n.Shards) != 5 || n.Outcome != OutcomeOpen {
			t.Fatalf("round 1, %s: %d shards, %s", n.Node, len(n.Shards), n.Outcome)
		}
	}
	ring := []string{"node-0", "node-1", "node-2", "node-3"}
	for i, reporter := range ring {
		// Each node is judged by the next two: weight 10 ≥ f+1 = 7.
		req := sns[reporter].report(t, 1, pass(ring[(i+3)%4]), pass(ring[(i+2)%4]))
		if _, err := nodes.ReportChallenge(bg, req); err != nil {
			t.Fatalf("report by %s: %v", reporter, err)
		}
	}
	if r := round(t, client, 1); r.Open || outcome(r, "node-2") != OutcomePassed {
		t.Fatalf("round 1 after every node passed: open %v, node-2 %s", r.Open, outcome(r, "node-2"))
	}

	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	atEpoch(sns, 2)
	// Round 2, epoch 2: the epoch-1 blobs are sampled.
	r2 := startRound(t, admin, client, op)
	if len(r2.Blobs) != 3 {
		t.Fatalf("round 2 sampled %d blobs, want all 3 epoch-1 blobs", len(r2.Blobs))
	}
	for _, b := range r2.Blobs {
		if !slices.Contains(blobs, crypto.BlobID(b)) {
			t.Fatalf("round 2 sampled an unknown blob %x", b)
		}
	}
	report := func(reporter string, verdicts ...*weftv1.ChallengeVerdict) error {
		_, err := nodes.ReportChallenge(bg, sns[reporter].report(t, r2.Round, verdicts...))
		return err
	}
	if err := report("node-1", pass("node-0"), fail("node-3", "item 4: symbol does not match")); err != nil {
		t.Fatal(err)
	}
	if o := outcome(round(t, client, r2.Round), "node-0"); o != OutcomeOpen {
		t.Fatalf("one challenger (weight 5 < f+1 = 7) decided node-0: %s", o)
	}
	if err := report("node-1", pass("node-0")); err != nil { // counted once
		t.Fatal(err)
	}
	if o := outcome(round(t, client, r2.Round), "node-0"); o != OutcomeOpen {
		t.Fatalf("a challenger's second verdict counted: node-0 %s", o)
	}
	wantStatus(t, "a node judging itself", report("node-0", pass("node-0")), codes.InvalidArgument)
	wantStatus(t, "a verdict by a non-member", report("node-4", pass("node-0")), codes.PermissionDenied)
	wantStatus(t, "a verdict on a node not challenged", report("node-1", pass("node-4")), codes.InvalidArgument)
	forged := sns["node-2"].report(t, r2.Round, fail("node-0", "forged"))
	forged.Verdicts[0].Passed = true // signed one thing, claims another
	_, err = nodes.ReportChallenge(bg, forged)
	wantStatus(t, "a verdict altered after signing", err, codes.PermissionDenied)
	if err := report("node-2", pass("node-0"), fail("node-3", "item 0: no answer for blob")); err != nil {
		t.Fatal(err)
	}
	if err := report("node-0", pass("node-1"), pass("node-3")); err != nil {
		t.Fatal(err)
	}
	if err := report("node-3", pass("node-1")); err != nil {
		t.Fatal(err)
	}
	r := round(t, client, r2.Round)
	if outcome(r, "node-0") != OutcomePassed || outcome(r, "node-1") != OutcomePassed || outcome(r, "node-3") != OutcomeFailed {
		t.Fatalf("round 2 outcomes: %+v", r.Nodes)
	}
	if n := nodeOf(r, "node-3"); len(n.Reasons) != 2 || !strings.Contains(n.Reasons[0], "node-1: item 4") {
		t.Fatalf("node-3's failure evidence: %q", n.Reasons)
	}
	if _, err := admin.CloseChallenge(op, &weftv1.CloseChallengeRequest{Round: r2.Round}); err != nil {
		t.Fatal(err)
	}
	if r := round(t, client, r2.Round); r.Open || outcome(r, "node-2") != OutcomeMissed {
		t.Fatalf("after close: open %v, node-2 (no verdicts) %s", r.Open, outcome(r, "node-2"))
	}
	wantStatus(t, "a verdict after the round closed", report("node-0", pass("node-2")), codes.FailedPrecondition)

	// Round 3: node-3 fails again, node-2 passes this time.
	r3 := startRound(t, admin, client, op)
	for _, rep := range []struct {
		by       string
		verdicts []*weftv1.ChallengeVerdict
	}{
		{"node-0", []*weftv1.ChallengeVerdict{pass("node-1"), pass("node-2"), fail("node-3", "bad")}},
		{"node-1", []*weftv1.ChallengeVerdict{pass("node-0"), pass("node-2"), fail("node-3", "bad")}},
		{"node-2", []*weftv1.ChallengeVerdict{pass("node-0"), pass("node-1")}},
	} {
		if _, err := nodes.ReportChallenge(bg, sns[rep.by].report(t, r3.Round, rep.verdicts...)); err != nil {
			t.Fatal(err)
		}
	}
	if r := round(t, client, r3.Round); r.Open {
		t.Fatalf("every node decided, yet round 3 is open: %+v", r.Nodes)
	}
	list, err := admin.ListNodes(op, &weftv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list.Nodes {
		switch n.Id {
		case "node-3":
			if !n.Flagged || !slices.Equal(n.ChallengeHistory, []string{"failed", "failed", "passed"}) {
				t.Fatalf("node-3 listed as flagged %v, history %v", n.Flagged, n.ChallengeHistory)
			}
		case "node-2":
			if n.Flagged || !slices.Equal(n.ChallengeHistory, []string{"passed", "missed", "passed"}) {
				t.Fatalf("node-2 listed as flagged %v, history %v", n.Flagged, n.ChallengeHistory)
			}
		}
	}

	// An eviction the rounds do not justify is refused by the FSM.
	plan, err := c.leader().FSM().PlanEpoch(false, 2)
	if err != nil || !slices.Equal(plan.Evict, []shardmap.NodeID{"node-3"}) {
		t.Fatalf("plan with --auto-evict 2: evict %v, %v", plan.Evict, err)
	}
	plan.Evict = append(plan.Evict, "node-2")
	cmd, _ := NewCommand("bad-evict", KindAdvanceEpoch, plan)
	if res, err := c.leader().Propose(bg, cmd); err != nil || res.Error == nil || res.Error.Code != CodeInvalidArgument {
		t.Fatalf("evicting node-2, which passed its last round: %v %+v", err, res)
	}
	// The leader's advance with --auto-evict 2 evicts node-3.
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	list, _ = admin.ListNodes(op, &weftv1.ListNodesRequest{})
	for _, n := range list.Nodes {
		if n.Id == "node-3" && (n.Stake != 0 || n.ShardsOwned != 0) {
			t.Fatalf("node-3 after the epoch change: stake %d, %d shards", n.Stake, n.ShardsOwned)
		}
		if n.Id != "node-3" && n.Id != "node-4" && n.Stake != 5 {
			t.Fatalf("%s lost stake: %d", n.Id, n.Stake)
		}
	}
}

func mustClient(t *testing.T, admin weftv1.AdminClient, op context.Context) string {
	added, err := admin.AddClient(op, &weftv1.AddClientRequest{Client: "app", Quota: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	return added.Token
}

func startRound(t *testing.T, admin weftv1.AdminClient, client weftv1.ClientClient, op context.Context) *weftv1.GetChallengeResponse {
	t.Helper()
	res, err := admin.StartChallenge(op, &weftv1.StartChallengeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return round(t, client, res.Round)
}

func round(t *testing.T, client weftv1.ClientClient, r uint64) *weftv1.GetChallengeResponse {
	t.Helper()
	resp, err := client.GetChallenge(context.Background(), &weftv1.GetChallengeRequest{Round: r})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func nodeOf(r *weftv1.GetChallengeResponse, node string) *weftv1.ChallengedNode {
	for _, n := range r.Nodes {
		if n.Node == node {
			return n
		}
	}
	return &weftv1.ChallengedNode{}
}

func outcome(r *weftv1.GetChallengeResponse, node string) string { return nodeOf(r, node).Outcome }
