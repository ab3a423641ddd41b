package committee

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// A 40 KB request ID — a bbolt key once it is part of a command ID, which
// made ApplyBatch panic on every voter at every replay — is refused before
// anything is proposed; so are over-long strings and IDs with odd
// characters. The voters stay up and keep taking writes.
func TestOversizedInputIsRefusedBeforePropose(t *testing.T) {
	c := newCluster(t, "v1", "v2", "v3")
	leader := c.leader()
	addr, stop := serveGRPC(t, leader)
	defer stop()
	awaitAnnounced(t, leader, addr)
	conn := dial(t, addr)
	nodes, admin := weftv1.NewNodeClient(conn), weftv1.NewAdminClient(conn)
	bg := context.Background()
	applied, _ := leader.FSM().AppliedIndex()

	sn := newStorageNode(t, "node-1")
	huge := metadata.AppendToOutgoingContext(bg, "weft-request-id", strings.Repeat("x", 40<<10))
	_, err := nodes.RegisterNode(huge, sn.registration(t))
	wantStatus(t, "a 40 KB request ID", err, codes.InvalidArgument)
	odd := metadata.AppendToOutgoingContext(bg, "weft-request-id", "a/b")
	_, err = nodes.RegisterNode(odd, sn.registration(t))
	wantStatus(t, "a request ID with a slash", err, codes.InvalidArgument)

	long := sn.registration(t)
	long.Auth.Node = strings.Repeat("n", 300) // the signer refuses such an ID; a caller can still send it
	_, err = nodes.RegisterNode(bg, long)
	wantStatus(t, "a 300-byte node ID", err, codes.InvalidArgument)
	badAddr := sn.registration(t)
	badAddr.Address = "no-port"
	_, err = nodes.RegisterNode(bg, badAddr)
	wantStatus(t, "an address without a port", err, codes.InvalidArgument)
	ctx := operator(bg, testToken)
	_, err = admin.AddClient(ctx, &weftv1.AddClientRequest{Client: strings.Repeat("c", 40<<10), Quota: 1})
	wantStatus(t, "a 40 KB client ID", err, codes.InvalidArgument)
	_, err = admin.AddPeer(ctx, &weftv1.AddPeerRequest{Id: "v9", RaftAddr: strings.Repeat("h", 300) + ":1"})
	wantStatus(t, "a 300-byte Raft address", err, codes.InvalidArgument)

	if now, _ := leader.FSM().AppliedIndex(); now != applied {
		t.Fatalf("refused calls moved the applied index from %d to %d", applied, now)
	}
	res, err := nodes.RegisterNode(bg, sn.registration(t))
	if err != nil {
		t.Fatalf("a good registration after the refused ones: %v", err)
	}
	c.last = res.Index
	c.converge()
}

// A linearizable watch confirms leadership and waits for the applied
// index: 200 of them, from anyone, grow the Raft log by at most one entry
// (each ran a barrier, one fsynced entry per call, before).
func TestLinearizableWatchesWriteNothing(t *testing.T) {
	c := newCluster(t, "v1", "v2", "v3")
	leader := c.leader()
	addr, stop := serveGRPC(t, leader)
	defer stop()
	awaitAnnounced(t, leader, addr)
	watch := weftv1.NewWatchClient(dial(t, addr))
	c.registerNode("n1", 1)
	before := leader.Raft().LastIndex()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := watch.WatchState(context.Background(), &weftv1.WatchStateRequest{Linearizable: true})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("linearizable watch: %v", err)
		}
	}
	if grown := leader.Raft().LastIndex() - before; grown > 1 {
		t.Fatalf("200 linearizable watches grew the Raft log by %d entries", grown)
	}
	// And it is linearizable: a write acknowledged just before is seen.
	c.registerNode("n2", 1)
	resp, err := watch.WatchState(context.Background(), &weftv1.WatchStateRequest{Linearizable: true})
	if err != nil {
		t.Fatal(err)
	}
	if applied, _ := leader.FSM().AppliedIndex(); resp.Index < applied {
		t.Fatalf("linearizable watch answered index %d, the state is at %d", resp.Index, applied)
	}
}

// Registration needs no credential, so attempts are limited per caller
// address; past the burst they are refused without touching the log.
func TestRegistrationAttemptsAreRateLimited(t *testing.T) {
	c := newCluster(t, "v1")
	leader := c.leader()
	addr, stop := serveGRPCWith(t, leader, ServiceConfig{RegistrationRate: 0.001, RegistrationBurst: 5})
	defer stop()
	awaitAnnounced(t, leader, addr)
	nodes := weftv1.NewNodeClient(dial(t, addr))
	var refused int
	for i := range 20 {
		sn := newStorageNode(t, "spam-"+string(rune('a'+i)))
		req := sn.registration(t)
		req.ProofOfPossession = newStorageNode(t, "other").sk.ProvePossession().Bytes() // never accepted
		_, err := nodes.RegisterNode(context.Background(), req)
		switch code := statusCode(err); code {
		case codes.ResourceExhausted:
			refused++
		case codes.InvalidArgument:
		default:
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if refused != 15 {
		t.Fatalf("%d of 20 attempts refused, want the 15 past the burst of 5", refused)
	}
}

func statusCode(err error) codes.Code { return status.Code(err) }

// Snapshot uploads: without the operator token refused before a byte is
// read; past the size cap refused while spooling; garbage refused by the
// check. None changes the state.
func TestSnapshotUploadsAreCheckedBeforeInstall(t *testing.T) {
	c := newCluster(t, "v1")
	leader := c.leader()
	addr, stop := serveGRPCWith(t, leader, ServiceConfig{MaxSnapshotBytes: 1 << 20})
	defer stop()
	awaitAnnounced(t, leader, addr)
	admin := weftv1.NewAdminClient(dial(t, addr))
	c.registerNode("n1", 1)
	before := fingerprint(t, leader.FSM())
	applied, _ := leader.FSM().AppliedIndex()

	upload := func(ctx context.Context, chunks ...[]byte) error {
		stream, err := admin.RestoreSnapshot(ctx)
		if err != nil {
			return err
		}
		for _, b := range chunks {
			if err := stream.Send(&weftv1.SnapshotChunk{Data: b}); err != nil {
				break // the server answered; CloseAndRecv has its status
			}
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	garbage := []byte(strings.Repeat("not a state file ", 1000))
	wantStatus(t, "an upload without a token", upload(context.Background(), garbage), codes.Unauthenticated)
	wantStatus(t, "an upload with a wrong token", upload(operator(context.Background(), "guess"), garbage), codes.PermissionDenied)
	ctx := operator(context.Background(), testToken)
	wantStatus(t, "an upload past the cap", upload(ctx, make([]byte, 700<<10), make([]byte, 700<<10)), codes.ResourceExhausted)
	wantStatus(t, "an upload of garbage", upload(ctx, garbage), codes.InvalidArgument)

	save, err := admin.SaveSnapshot(context.Background(), &weftv1.SaveSnapshotRequest{})
	if err == nil {
		_, err = save.Recv()
	}
	wantStatus(t, "a download without a token", err, codes.Unauthenticated)

	if got := fingerprint(t, leader.FSM()); got != before {
		t.Fatal("refused uploads changed the state")
	}
	if now, _ := leader.FSM().AppliedIndex(); now != applied {
		t.Fatalf("refused uploads moved the applied index from %d to %d", applied, now)
	}
}

// awaitAnnounced waits until the voter n has recorded its gRPC address (a
// write of its own, which would otherwise land amid a test's counting).
func awaitAnnounced(t *testing.T, n *Node, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, found, _ := n.FSM().PeerAddress(n.cfg.ID); found && got == addr {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("voter %s never announced %s", n.cfg.ID, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
