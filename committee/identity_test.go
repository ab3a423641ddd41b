package committee

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// identityPlane is a one-voter control plane served over gRPC.
func identityPlane(t *testing.T) (*cluster, weftv1.AdminClient, weftv1.NodeClient, context.Context) {
	c := newCluster(t, "v1")
	addr, stop := serveGRPC(t, c.leader())
	t.Cleanup(stop)
	conn := dial(t, addr)
	return c, weftv1.NewAdminClient(conn), weftv1.NewNodeClient(conn), operator(context.Background(), testToken)
}

func registered(t *testing.T, c *cluster, id shardmap.NodeID) (NodeRecord, bool) {
	t.Helper()
	rec, found, err := c.leader().FSM().Node(id)
	if err != nil {
		t.Fatal(err)
	}
	return rec, found
}

// A request node A signed, sent as node B's, is refused before anything is
// registered: the node ID is part of what is signed.
func TestRelabelledRegistrationRefused(t *testing.T) {
	c, _, nodes, _ := identityPlane(t)
	a := newStorageNode(t, "A")
	req := a.registration(t)
	req.Auth.Node = "B"
	_, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(context.Background(), req) })
	wantStatus(t, "A's registration sent as B's", err, codes.PermissionDenied)
	if !strings.Contains(status.Convert(err).Message(), `signed for node "A", sent as "B"`) {
		t.Fatalf("refusal does not name both IDs: %v", err)
	}
	for _, id := range []shardmap.NodeID{"A", "B"} {
		if _, found := registered(t, c, id); found {
			t.Fatalf("node %s registered by a relabelled request", id)
		}
	}
	// The same request as signed is fine: only the label was wrong.
	req.Auth.Node = "A"
	if _, err := nodes.RegisterNode(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// Registering an ID again with its key succeeds and may move the node; a
// replay of an earlier registration cannot move it back; another key under
// the ID is AlreadyExists naming the registered key's fingerprint.
func TestReregistration(t *testing.T) {
	c, _, nodes, _ := identityPlane(t)
	bg := context.Background()
	a := newStorageNode(t, "A")
	first := a.registration(t)
	if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(bg, first) }); err != nil {
		t.Fatal(err)
	}
	again := a.registration(t)
	again.Address = "moved:7000"
	_ = control.Sign(again, a.sk, a.id, 0, a.nonce)
	if _, err := nodes.RegisterNode(bg, again); err != nil {
		t.Fatalf("a restarted node registering again with its key: %v", err)
	}
	if rec, _ := registered(t, c, "A"); rec.Address != "moved:7000" {
		t.Fatalf("address after re-registration: %q", rec.Address)
	}
	_, err := nodes.RegisterNode(bg, first)
	wantStatus(t, "a replayed registration", err, codes.PermissionDenied)
	if rec, _ := registered(t, c, "A"); rec.Address != "moved:7000" {
		t.Fatalf("a replayed registration moved the node back to %q", rec.Address)
	}

	squatter := newStorageNode(t, "squatter")
	squatter.id = "A"
	_, err = nodes.RegisterNode(bg, squatter.registration(t))
	wantStatus(t, "another key under A", err, codes.AlreadyExists)
	want := fmt.Sprintf("node ID A is registered to key fingerprint %s; this registration's key is %s", a.sk.PublicKey().Fingerprint(), squatter.sk.PublicKey().Fingerprint())
	if !strings.Contains(status.Convert(err).Message(), want) {
		t.Fatalf("refusal %q, want it to say %q", status.Convert(err).Message(), want)
	}
	if rec, _ := registered(t, c, "A"); crypto.KeyFingerprint(rec.PublicKey) != a.sk.PublicKey().Fingerprint() {
		t.Fatal("A's key changed")
	}
}

// A node request is taken for the current epoch or the one before it.
func TestNodeRequestEpochWindow(t *testing.T) {
	_, admin, nodes, op := identityPlane(t)
	bg := context.Background()
	var sns []*storageNode
	for i := range 4 {
		sn := newStorageNode(t, fmt.Sprintf("node-%d", i))
		sns = append(sns, sn)
		if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(bg, sn.registration(t)) }); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: string(sn.id), Stake: 5}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	sn := sns[0]
	move := func(epoch uint64) error {
		req := &weftv1.UpdateAddressRequest{Address: fmt.Sprintf("e%d:7000", epoch)}
		sn.nonce++
		_ = control.Sign(req, sn.sk, sn.id, epoch, sn.nonce)
		_, err := nodes.UpdateAddress(bg, req)
		return err
	}
	for _, e := range []uint64{3, 2} {
		if err := move(e); err != nil {
			t.Fatalf("signed for epoch %d in epoch 3: %v", e, err)
		}
	}
	for _, e := range []uint64{1, 0, 4} {
		wantStatus(t, fmt.Sprintf("signed for epoch %d in epoch 3", e), move(e), codes.PermissionDenied)
	}
	late := newStorageNode(t, "late")
	_, err := nodes.RegisterNode(bg, late.registration(t)) // signed for epoch 0
	wantStatus(t, "a registration signed for epoch 0 in epoch 3", err, codes.PermissionDenied)
}

// A stake pinned to a key fingerprint is refused, and changes nothing,
// unless the ID is registered to that key; the FSM checks again.
func TestStakePinnedToKey(t *testing.T) {
	c, admin, nodes, op := identityPlane(t)
	a := newStorageNode(t, "A")
	if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) {
		return nodes.RegisterNode(context.Background(), a.registration(t))
	}); err != nil {
		t.Fatal(err)
	}
	right, wrong := a.sk.PublicKey().Fingerprint(), newStorageNode(t, "B").sk.PublicKey().Fingerprint()
	_, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: "A", Stake: 10, KeyFingerprint: wrong})
	wantStatus(t, "stake pinned to another key", err, codes.FailedPrecondition)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, right) || !strings.Contains(msg, wrong) {
		t.Fatalf("refusal %q does not name both fingerprints", msg)
	}
	_, err = admin.SetStake(op, &weftv1.SetStakeRequest{Node: "A", Stake: 10, KeyFingerprint: "not-hex"})
	wantStatus(t, "malformed fingerprint", err, codes.InvalidArgument)
	// Past the service's check (the key changed in between): the FSM refuses.
	cmd, _ := NewCommand("pinned-wrong", KindSetStake, SetStake{Node: "A", Stake: 10, KeyFingerprint: wrong})
	if res, err := c.leader().Propose(context.Background(), cmd); err != nil || res.Error == nil || res.Error.Code != CodeFailedPrecondition {
		t.Fatalf("the FSM took a stake pinned to another key: %v %+v", err, res)
	}
	if rec, _ := registered(t, c, "A"); rec.Stake != 0 {
		t.Fatalf("refused stakes set A's stake to %d", rec.Stake)
	}
	if _, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: "A", Stake: 10, KeyFingerprint: right}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := registered(t, c, "A"); rec.Stake != 10 {
		t.Fatalf("A's stake is %d after the pinned stake", rec.Stake)
	}
}
