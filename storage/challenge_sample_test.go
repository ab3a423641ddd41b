package storage_test

import (
	"context"
	"testing"
	"time"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/challenge"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// In a round of 2 draws per node over 6 nodes, each node judges only the
// nodes it was drawn for (as the pure sampling computes them from the
// round's seed and committee) — far fewer than all-to-all — the control
// plane takes every verdict (it refuses a report from a node not drawn),
// the honest nodes pass and a node that dropped half its pairs fails.
func TestChallengeSampledChallengersJudgeOnlyTheirTargets(t *testing.T) {
	const nodes, cheater = 6, 5
	w := startNet(t, devnet.Config{Nodes: nodes, Shards: 18, Faults: map[int]storage.Faults{cheater: {DropPairs: 50}}})
	w.storeEligible(t, 12, 2_000)
	resp, err := weftv1.NewAdminClient(w.conn).StartChallenge(w.operatorCtx(), &weftv1.StartChallengeRequest{Challengers: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := w.awaitClosed(t, resp.Round, 60*time.Second)
	if r.Challengers != 2 {
		t.Fatalf("round %d: %d draws per node, want 2", r.Round, r.Challengers)
	}
	got := outcomes(r)
	for i := range nodes {
		want := "passed"
		if i == cheater {
			want = "failed"
		}
		if n := got[string(w.net.NodeID(i))]; n.Outcome != want {
			t.Fatalf("node %d: %s %v, want %s", i, n.Outcome, n.Reasons, want)
		}
	}
	com, err := weftv1.NewClientClient(w.conn).GetCommittee(context.Background(), &weftv1.GetCommitteeRequest{Epoch: r.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	var members []challenge.Member
	for _, m := range com.Members {
		members = append(members, challenge.Member{Node: m.Node, Weight: uint64(m.Weight)})
	}
	sampler := challenge.NewSampler(challenge.Seed(r.Seed), members, int(r.Challengers))
	drawnFor := map[string]int64{}
	for _, n := range r.Nodes {
		for _, c := range sampler.Of(n.Node).Challengers {
			drawnFor[c.Node]++
		}
	}
	var judged int64
	for i := range nodes {
		st := w.net.Node(i).Stats()
		verdicts := st.ChallengesPassed + st.ChallengesFailed + st.ChallengesAbstained
		if verdicts != drawnFor[string(w.net.NodeID(i))] {
			t.Fatalf("node %d judged %d nodes, was drawn for %d", i, verdicts, drawnFor[string(w.net.NodeID(i))])
		}
		judged += verdicts
	}
	if judged > nodes*2 || judged >= nodes*(nodes-1) {
		t.Fatalf("%d judgements in a round of 2 draws over %d nodes", judged, nodes)
	}
	t.Logf("%d judgements (all-to-all: %d)", judged, nodes*(nodes-1))
}
