package committee

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

const testToken = "operator-secret"

// serveGRPC starts the node's service on a loopback port.
func serveGRPC(t testing.TB, n *Node) (string, func()) {
	t.Helper()
	return serveGRPCWith(t, n, ServiceConfig{})
}

// serveGRPCWith is serveGRPC with other service settings.
func serveGRPCWith(t testing.TB, n *Node, cfg ServiceConfig) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.OperatorToken, cfg.GRPCAddr = testToken, l.Addr().String()
	svc, err := NewService(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(g)
	go g.Serve(l)
	return l.Addr().String(), func() { g.Stop(); svc.Close() }
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func operator(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func wantStatus(t testing.TB, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}

// retry repeats a call while the cluster is still electing or the leader
// has not announced its address (Unavailable).
func retry[T any](t testing.TB, call func() (T, error)) (T, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := call()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type storageNode struct {
	id    shardmap.NodeID
	sk    *crypto.SecretKey
	nonce uint64
	epoch uint64 // the epoch registrations and reports are signed for
}

func newStorageNode(t testing.TB, id string) *storageNode {
	seed := make([]byte, 32)
	copy(seed, id)
	sk, err := crypto.KeyGen(seed)
	if err != nil {
		t.Fatal(err)
	}
	return &storageNode{id: shardmap.NodeID(id), sk: sk}
}

func (sn *storageNode) registration(t testing.TB) *weftv1.RegisterNodeRequest {
	req := &weftv1.RegisterNodeRequest{
		PublicKey: sn.sk.PublicKey().Bytes(), ProofOfPossession: sn.sk.ProvePossession().Bytes(), Address: string(sn.id) + ":7000",
	}
	sn.nonce++
	if err := control.Sign(req, sn.sk, sn.id, sn.epoch, sn.nonce); err != nil {
		t.Fatal(err)
	}
	return req
}

func (sn *storageNode) synced(t testing.TB, epoch uint64, shard int) *weftv1.ShardSyncedRequest {
	req := &weftv1.ShardSyncedRequest{Epoch: epoch, Shard: uint32(shard)}
	sn.nonce++
	if err := control.Sign(req, sn.sk, sn.id, epoch, sn.nonce); err != nil {
		t.Fatal(err)
	}
	return req
}

// serveAll serves every voter of c over gRPC on loopback (stopped at the
// test's end) and returns their addresses by voter ID.
func serveAll(t *testing.T, c *cluster) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	for id, n := range c.nodes {
		addr, stop := serveGRPC(t, n)
		addrs[id] = addr
		t.Cleanup(stop)
	}
	return addrs
}

// The API over real gRPC on loopback against a 3-voter cluster, always
// talking to a follower so that every write is forwarded.
func TestServiceOverGRPC(t *testing.T) {
	c := newCluster(t, "v1", "v2", "v3")
	addrs := serveAll(t, c)
	leader := c.leader()
	var followerAddr, leaderAddr string
	for id, n := range c.nodes {
		if n == leader {
			leaderAddr = addrs[id]
		} else {
			followerAddr = addrs[id]
		}
	}
	conn := dial(t, followerAddr)
	admin, nodes, watch := weftv1.NewAdminClient(conn), weftv1.NewNodeClient(conn), weftv1.NewWatchClient(conn)
	bg := context.Background()
	ctx := operator(bg, testToken)

	_, err := admin.Status(bg, &weftv1.StatusRequest{})
	wantStatus(t, "admin call without a credential", err, codes.Unauthenticated)
	_, err = admin.Status(operator(bg, "guess"), &weftv1.StatusRequest{})
	wantStatus(t, "admin call with a wrong credential", err, codes.PermissionDenied)

	// Seven nodes register themselves through the follower.
	var sns []*storageNode
	for i := range 7 {
		sn := newStorageNode(t, fmt.Sprintf("node-%d", i))
		sns = append(sns, sn)
		if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(bg, sn.registration(t)) }); err != nil {
			t.Fatalf("register %s: %v", sn.id, err)
		}
	}
	// Bad input, each rejected with its code.
	bad := newStorageNode(t, "intruder").registration(t)
	bad.ProofOfPossession = sns[0].sk.ProvePossession().Bytes()
	_, err = nodes.RegisterNode(bg, bad)
	wantStatus(t, "invalid proof of possession", err, codes.InvalidArgument)
	dupID := newStorageNode(t, "other-key")
	dupID.id = "node-0"
	_, err = nodes.RegisterNode(bg, dupID.registration(t))
	wantStatus(t, "duplicate node ID", err, codes.AlreadyExists)
	forged := sns[1].registration(t)
	forged.Address = "evil:1" // not what was signed
	_, err = nodes.RegisterNode(bg, forged)
	wantStatus(t, "request altered after signing", err, codes.PermissionDenied)
	_, err = admin.SetStake(ctx, &weftv1.SetStakeRequest{Node: "ghost", Stake: 1})
	wantStatus(t, "stake of an unknown node", err, codes.NotFound)

	for _, sn := range sns {
		if _, err := admin.SetStake(ctx, &weftv1.SetStakeRequest{Node: string(sn.id), Stake: 10}); err != nil {
			t.Fatal(err)
		}
	}
	adv, err := admin.AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{})
	if err != nil || adv.Epoch != 1 {
		t.Fatalf("advance: %v %v", adv, err)
	}
	list, err := admin.ListNodes(ctx, &weftv1.ListNodesRequest{})
	if err != nil || len(list.Nodes) != 7 {
		t.Fatalf("list nodes: %v", err)
	}

	// A watcher blocked on the current index wakes on the next change;
	// one with nothing to wait for returns at its timeout.
	st, err := watch.WatchState(bg, &weftv1.WatchStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan *weftv1.WatchStateResponse, 1)
	go func() {
		resp, _ := watch.WatchState(bg, &weftv1.WatchStateRequest{AfterIndex: st.Index, TimeoutMs: 10_000})
		woke <- resp
	}()
	time.Sleep(100 * time.Millisecond)
	joiner := newStorageNode(t, "node-7")
	joiner.epoch = 1
	if _, err := nodes.RegisterNode(bg, joiner.registration(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-woke:
		if resp == nil || resp.Index <= st.Index {
			t.Fatalf("watcher woke with %v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked watcher did not wake on a change")
	}
	// Let the follower catch up, then watch with nothing left to come.
	now, _ := watch.WatchState(bg, &weftv1.WatchStateRequest{})
	for {
		next, _ := watch.WatchState(bg, &weftv1.WatchStateRequest{AfterIndex: now.Index, TimeoutMs: 200})
		if next.Index == now.Index {
			break
		}
		now = next
	}
	start := time.Now()
	idle, err := watch.WatchState(bg, &weftv1.WatchStateRequest{AfterIndex: now.Index, TimeoutMs: 300})
	if err != nil || idle.Index != now.Index || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("idle watch returned %v after %v: %v", idle, time.Since(start), err)
	}

	// Node-7 gets stake, the epoch advances into Handover; it reports a
	// shard synced; a replay of that report is refused.
	if _, err := admin.SetStake(ctx, &weftv1.SetStakeRequest{Node: "node-7", Stake: 10}); err != nil {
		t.Fatal(err)
	}
	if adv, err = admin.AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{}); err != nil || adv.Epoch != 2 {
		t.Fatalf("advance to 2: %v %v", adv, err)
	}
	state, _ := watch.WatchState(bg, &weftv1.WatchStateRequest{AfterIndex: adv.Index - 1, TimeoutMs: 5000})
	shard := -1
	for s, owner := range state.Owners {
		if owner == "node-7" {
			shard = s
			break
		}
	}
	if shard < 0 || state.Phase != "handover" {
		t.Fatalf("node-7 owns nothing after the advance (phase %s)", state.Phase)
	}
	_, err = admin.AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{})
	wantStatus(t, "plain advance during handover", err, codes.FailedPrecondition)
	report := joiner.synced(t, 2, shard)
	if _, err := nodes.ShardSynced(bg, report); err != nil {
		t.Fatal(err)
	}
	_, err = nodes.ShardSynced(bg, report)
	wantStatus(t, "replayed shard-synced report", err, codes.PermissionDenied)
	impostor := joiner.synced(t, 2, shard)
	impostor.Auth.Node = "node-0" // node-0's name, node-7's signature
	_, err = nodes.ShardSynced(bg, impostor)
	wantStatus(t, "signature by another node", err, codes.PermissionDenied)

	// Linearizable reads come from the leader; a follower passes them on,
	// so they see the last write whichever voter is asked.
	latest, err := weftv1.NewWatchClient(dial(t, leaderAddr)).WatchState(bg, &weftv1.WatchStateRequest{Linearizable: true})
	if err != nil {
		t.Fatalf("linearizable read on the leader: %v", err)
	}
	viaFollower, err := watch.WatchState(bg, &weftv1.WatchStateRequest{Linearizable: true})
	if err != nil || viaFollower.Index < latest.Index {
		t.Fatalf("linearizable read through a follower: index %v (leader had %d): %v", viaFollower.GetIndex(), latest.Index, err)
	}
	events, err := watch.Events(bg, &weftv1.EventsRequest{Limit: 1000})
	if err != nil || len(events.Events) == 0 {
		t.Fatalf("events: %v", err)
	}
}

// certificate builds an availability certificate for blob id signed by
// the first `signers` members of the committee, assembled by hand so that
// it can also be one the builder would refuse (below quorum).
func certificate(t testing.TB, committee *weftv1.GetCommitteeResponse, keys map[string]*crypto.SecretKey, id crypto.BlobID, signers int) []byte {
	t.Helper()
	cert := &crypto.Certificate{Type: crypto.MsgBlobStored, Epoch: committee.Epoch, BlobID: id, Signers: make([]byte, (len(committee.Members)+7)/8)}
	var parts []*crypto.Signature
	for i, m := range committee.Members[:signers] {
		sig, err := keys[m.Node].SignMessage(committee.Epoch, crypto.BlobStored{BlobID: id})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, sig)
		cert.Signers[i/8] |= 1 << (i % 8)
	}
	cert.Signature, _ = crypto.Aggregate(parts)
	b, err := cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The Client API: credentials, registration charged to quota, certificates
// verified against the committee before proposing and refused once their
// epoch has passed or below quorum, status and committee reads.
func TestClientServiceOverGRPC(t *testing.T) {
	c := newCluster(t, "v1", "v2", "v3")
	var addr string
	for _, n := range c.nodes {
		a, stop := serveGRPC(t, n)
		t.Cleanup(stop)
		if !n.IsLeader() {
			addr = a
		}
	}
	conn := dial(t, addr)
	admin, nodes, client := weftv1.NewAdminClient(conn), weftv1.NewNodeClient(conn), weftv1.NewClientClient(conn)
	bg := context.Background()
	op := operator(bg, testToken)
	keys := map[string]*crypto.SecretKey{}
	var sns []*storageNode
	for i := range 4 {
		sn := newStorageNode(t, fmt.Sprintf("node-%d", i))
		sns = append(sns, sn)
		keys[string(sn.id)] = sn.sk
		if _, err := retry(t, func() (*weftv1.RegisterNodeResponse, error) { return nodes.RegisterNode(bg, sn.registration(t)) }); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: string(sn.id), Stake: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	added, err := admin.AddClient(op, &weftv1.AddClientRequest{Client: "app", Quota: 1 << 30})
	if err != nil || added.Token == "" {
		t.Fatalf("add client: %v", err)
	}
	// Give the follower time to apply the new client before using it there.
	time.Sleep(200 * time.Millisecond)
	app := operator(bg, added.Token)

	reg := &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 10_000, Root: make([]byte, 32), EndEpoch: 5}
	_, err = client.RegisterBlob(bg, reg)
	wantStatus(t, "register without a credential", err, codes.Unauthenticated)
	_, err = client.RegisterBlob(operator(bg, "not-a-token"), reg)
	wantStatus(t, "register with an unknown credential", err, codes.PermissionDenied)
	_, err = client.RegisterBlob(app, &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 10_000, Root: make([]byte, 5), EndEpoch: 5})
	wantStatus(t, "malformed root", err, codes.InvalidArgument)
	_, err = client.RegisterBlob(app, &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 1 << 40, Root: make([]byte, 32), EndEpoch: 5})
	wantStatus(t, "a size the encoding cannot hold", err, codes.InvalidArgument)
	_, err = client.RegisterBlob(app, &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 1 << 28, Root: make([]byte, 32), EndEpoch: 100})
	wantStatus(t, "over quota", err, codes.ResourceExhausted)
	res, err := client.RegisterBlob(app, reg)
	if err != nil {
		t.Fatal(err)
	}
	id := crypto.BlobID(res.BlobId)
	if id != crypto.DeriveBlobID(1, 20, 10_000, crypto.Digest{}) {
		t.Fatal("blob ID not derived from the registered fields")
	}

	committee, err := client.GetCommittee(app, &weftv1.GetCommitteeRequest{})
	if err != nil || len(committee.Members) != 4 || len(committee.Owners) != 20 {
		t.Fatalf("committee: %v", err)
	}
	// 20 shards over 4 members of 5: quorum 14 needs 3 signers.
	_, err = client.CertifyBlob(app, &weftv1.CertifyBlobRequest{BlobId: id[:], Certificate: certificate(t, committee, keys, id, 2)})
	wantStatus(t, "certificate below quorum", err, codes.InvalidArgument)
	stale := certificate(t, committee, keys, id, 3)
	// committeeOf waits until the follower has applied an epoch change.
	committeeOf := func(e uint64) *weftv1.GetCommitteeResponse {
		t.Helper()
		c, err := retry(t, func() (*weftv1.GetCommitteeResponse, error) {
			c, err := client.GetCommittee(app, &weftv1.GetCommitteeRequest{})
			if err == nil && c.Epoch != e {
				return c, status.Error(codes.Unavailable, "epoch change not applied here yet")
			}
			return c, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = client.CertifyBlob(app, &weftv1.CertifyBlobRequest{BlobId: id[:], Certificate: stale})
	wantStatus(t, "certificate of the previous epoch", err, codes.FailedPrecondition)
	current := committeeOf(2)
	cert := certificate(t, current, keys, id, 3)
	if _, err := client.CertifyBlob(app, &weftv1.CertifyBlobRequest{BlobId: id[:], Certificate: cert}); err != nil {
		t.Fatalf("valid certificate: %v", err)
	}
	st, err := retry(t, func() (*weftv1.BlobStatusResponse, error) {
		st, err := client.BlobStatus(app, &weftv1.BlobStatusRequest{BlobId: id[:]})
		if err == nil && st.Status != "certified" {
			return st, status.Error(codes.Unavailable, "not applied here yet")
		}
		return st, err
	})
	if err != nil || st.CertifiedEpoch != 2 {
		t.Fatalf("status %v: %v", st, err)
	}
	_, err = client.BlobStatus(app, &weftv1.BlobStatusRequest{BlobId: make([]byte, 32)})
	wantStatus(t, "unknown blob", err, codes.NotFound)
	if pub, err := client.BlobStatus(bg, &weftv1.BlobStatusRequest{BlobId: id[:]}); err != nil || pub.Status != "certified" {
		t.Fatalf("public read of a blob's status: %v", err)
	}
	_, err = client.BlobStatus(operator(bg, "forged"), &weftv1.BlobStatusRequest{BlobId: id[:]})
	wantStatus(t, "public read with a bad credential", err, codes.PermissionDenied)
	_, err = client.BlobStatus(app, &weftv1.BlobStatusRequest{BlobId: []byte{1}})
	wantStatus(t, "malformed blob ID", err, codes.InvalidArgument)

	// A registration that ends before it could be certified.
	short, err := client.RegisterBlob(app, &weftv1.RegisterBlobRequest{Encoding: 1, Shards: 20, Length: 5, Root: make([]byte, 32), EndEpoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	third := committeeOf(3)
	sid := crypto.BlobID(short.BlobId)
	_, err = client.CertifyBlob(app, &weftv1.CertifyBlobRequest{BlobId: sid[:], Certificate: certificate(t, third, keys, sid, 3)})
	wantStatus(t, "certificate past the end epoch", err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("past the end epoch, refused for another reason: %v", err)
	}

	// A node moves; another tries to register with a taken key.
	sn := sns[0]
	move := &weftv1.UpdateAddressRequest{Address: "moved:7000"}
	sn.nonce++
	_ = control.Sign(move, sn.sk, sn.id, 3, sn.nonce)
	if _, err := nodes.UpdateAddress(bg, move); err != nil {
		t.Fatal(err)
	}
	thief := &storageNode{id: "thief", sk: sns[1].sk, epoch: 3}
	_, err = nodes.RegisterNode(bg, thief.registration(t))
	wantStatus(t, "a key registered twice", err, codes.AlreadyExists)

	// An invalid-blob certificate needs weight f+1 = 7 of 20: one member
	// (5) is not enough, two are.
	invalid := func(signers int) *weftv1.MarkBlobInvalidRequest {
		cert := &crypto.Certificate{Type: crypto.MsgBlobInvalid, Epoch: third.Epoch, BlobID: id, Signers: []byte{0}}
		var parts []*crypto.Signature
		for i, m := range third.Members[:signers] {
			sig, _ := keys[m.Node].SignMessage(third.Epoch, crypto.BlobInvalid{BlobID: id})
			parts = append(parts, sig)
			cert.Signers[0] |= 1 << i
		}
		cert.Signature, _ = crypto.Aggregate(parts)
		raw, _ := cert.MarshalBinary()
		req := &weftv1.MarkBlobInvalidRequest{BlobId: id[:], Certificate: raw}
		sn.nonce++
		_ = control.Sign(req, sn.sk, sn.id, third.Epoch, sn.nonce)
		return req
	}
	_, err = nodes.MarkBlobInvalid(bg, invalid(1))
	wantStatus(t, "invalid-blob certificate below f+1", err, codes.InvalidArgument)
	if _, err := nodes.MarkBlobInvalid(bg, invalid(2)); err != nil {
		t.Fatal(err)
	}
	st, err = retry(t, func() (*weftv1.BlobStatusResponse, error) {
		st, err := client.BlobStatus(app, &weftv1.BlobStatusRequest{BlobId: id[:]})
		if err == nil && st.Status != "invalid" {
			return st, status.Error(codes.Unavailable, "not applied here yet")
		}
		return st, err
	})
	if err != nil {
		t.Fatalf("status after invalidation: %v %v", st, err)
	}

	// The status page's read: open to anyone, one consistent view.
	ns, err := client.NetworkStatus(bg, &weftv1.NetworkStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Epoch != 3 || ns.Shards != 20 || len(ns.Owners) != 20 || len(ns.Holders) != 20 || len(ns.Nodes) != 4 || ns.Voter == "" ||
		ns.Nodes[0].Address != "moved:7000" || ns.Nodes[0].Stake != 5 || ns.Nodes[0].Shards != 5 || ns.Handover.Epoch != 3 {
		t.Fatalf("network status: %v", ns)
	}
	if b := ns.Blobs; b.Invalid != 1 || b.Ended != 1 || b.Certified != 0 || b.Objects != 0 {
		t.Fatalf("network status counts %v: want the invalid blob and the lapsed one", b)
	}
	_, err = client.NetworkStatus(operator(bg, "forged"), &weftv1.NetworkStatusRequest{})
	wantStatus(t, "network status with a bad credential", err, codes.PermissionDenied)
}

// Events below the horizon are refused over gRPC with OutOfRange and a
// message that says what to do; from the horizon on they are served.
func TestCompactedEventsAreOutOfRange(t *testing.T) {
	c := newCluster(t, "v1")
	addr, stop := serveGRPC(t, c.leader())
	t.Cleanup(stop)
	for _, id := range []string{"a", "b", "c", "d"} {
		c.registerNode(id, 10)
	}
	for range DefaultRetainEpochs + 2 {
		plan, err := c.leader().FSM().PlanEpoch(false, 0)
		if err != nil {
			t.Fatal(err)
		}
		c.propose(KindAdvanceEpoch, plan)
	}
	c.propose(KindSetPeer, SetPeer{ID: "v9", Address: "127.0.0.1:1"}) // its step compacts
	h, _ := c.leader().FSM().EventHorizon()
	if h == 0 {
		t.Fatal("no horizon")
	}
	watch := weftv1.NewWatchClient(dial(t, addr))
	_, err := watch.Events(context.Background(), &weftv1.EventsRequest{AfterIndex: 0, Limit: 10})
	wantStatus(t, "events below the horizon", err, codes.OutOfRange)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, fmt.Sprintf("compacted below index %d: bootstrap from state", h)) {
		t.Fatalf("message %q", msg)
	}
	resp, err := watch.Events(context.Background(), &weftv1.EventsRequest{AfterIndex: h - 1, Limit: 10})
	if err != nil || len(resp.Events) == 0 || resp.Events[0].Index != h {
		t.Fatalf("events from the horizon %d: %v, %v", h, resp, err)
	}
}

// Closing a service twice (a devnet closed twice) neither panics nor
// returns before the first close finished.
func TestServiceClosesTwice(t *testing.T) {
	c := newCluster(t, "v1")
	_, stop := serveGRPC(t, c.nodes["v1"])
	stop()
	stop()
}
