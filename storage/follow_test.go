package storage

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/committee"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

const operatorToken = "storage-test-operator"

// controlPlane starts a real one-voter control plane with its gRPC API.
func controlPlane(t *testing.T, shards int) string {
	t.Helper()
	raftAddr := freeAddr(t)
	node, err := committee.StartNode(committee.NodeConfig{
		ID: "cp", DataDir: filepath.Join(t.TempDir(), "cp"), RaftAddr: raftAddr,
		Bootstrap:        []raft.Server{{ID: "cp", Address: raft.ServerAddress(raftAddr)}},
		State:            committee.Config{Shards: shards},
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := committee.NewService(node, committee.ServiceConfig{OperatorToken: operatorToken, GRPCAddr: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(g)
	go g.Serve(l)
	t.Cleanup(func() { g.Stop(); svc.Close(); node.Shutdown() })
	return l.Addr().String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func dialControl(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// A storage node registers itself, follows the control plane with blocking
// watches, and learns its shards when the operator advances the epoch.
func TestFollowerLearnsItsShards(t *testing.T) {
	addr := controlPlane(t, 12)
	conn := dialControl(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var followers []*Follower
	for _, id := range []shardmap.NodeID{"alpha", "beta", "gamma"} {
		sk, _ := crypto.GenerateKey(nil)
		f := NewFollower(control.NewClient(conn, id, sk), id, sk, string(id)+":7100")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := f.Register(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("register %s: %v", id, err)
			}
		}
		if err := f.Register(ctx); err != nil { // registering again is fine
			t.Fatalf("second registration of %s: %v", id, err)
		}
		go f.Run(ctx, 5*time.Second)
		followers = append(followers, f)
	}
	changed := followers[0].Changed()
	admin := weftv1.NewAdminClient(conn)
	op := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+operatorToken)
	for _, id := range []string{"alpha", "beta", "gamma"} {
		if _, err := admin.SetStake(op, &weftv1.SetStakeRequest{Node: id, Stake: 10}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.AdvanceEpoch(op, &weftv1.AdvanceEpochRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the follower was not woken by the change")
	}
	total := 0
	for _, f := range followers {
		for deadline := time.Now().Add(10 * time.Second); f.Current().Epoch != 1; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw epoch 1", f.id)
			}
		}
		owned := f.Current().Owned(f.id)
		if len(owned) != 4 {
			t.Fatalf("%s owns %v, want 4 of 12 shards", f.id, owned)
		}
		total += len(owned)
	}
	if total != 12 {
		t.Fatalf("%d shards owned in all", total)
	}
}

// A node whose ID another key registered does not run on (it would follow
// shards staked to the other key's holder): Start fails at once, naming
// both fingerprints, instead of retrying or starting. The ID's own key
// registering again is fine.
func TestSquattedIDStopsTheNode(t *testing.T) {
	conn := dialControl(t, controlPlane(t, 12))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner, _ := crypto.GenerateKey(nil)
	first := NewFollower(control.NewClient(conn, "node-x", owner), "node-x", owner, "x:7100")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := first.Register(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("register node-x: %v", err)
		}
	}
	if err := NewFollower(control.NewClient(conn, "node-x", owner), "node-x", owner, "x:7200").Register(ctx); err != nil {
		t.Fatalf("node-x restarted with its key at a new address: %v", err)
	}
	other, _ := crypto.GenerateKey(nil)
	n, err := Start(ctx, Config{ID: "node-x", Key: other, DataDir: t.TempDir(), PublicAddr: "y:7100", Control: conn})
	if err == nil {
		n.Close()
		t.Fatal("a node with another key under node-x's ID started")
	}
	if ctx.Err() != nil || !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Start: %v (context %v), want ErrKeyMismatch at once", err, ctx.Err())
	}
	for _, fp := range []string{owner.PublicKey().Fingerprint(), other.PublicKey().Fingerprint()} {
		if !strings.Contains(err.Error(), fp) {
			t.Fatalf("%q does not name fingerprint %s", err, fp)
		}
	}
}
