package integration

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
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
)

// A registration with a 40 KB request ID — once a bbolt key on every
// replica, which made every voter's apply panic and the entry replay at
// each restart — is refused with InvalidArgument by every voter, without a
// credential; every voter stays up, and the leader, SIGKILLed and
// restarted, comes back and the cluster takes writes.
func TestPoisonRequestIDLeavesVotersUp(t *testing.T) {
	bin := buildWeft(t)
	r, readyPath := startDevnet(t, bin, 4, 10)
	huge := metadata.AppendToOutgoingContext(context.Background(), "weft-request-id", strings.Repeat("x", 40<<10))
	// A registration any caller can make: a key of its own, its proof of
	// possession, its signature.
	sk, err := crypto.KeyGen([]byte("a key the attacker made, 32 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	req := &weftv1.RegisterNodeRequest{PublicKey: sk.PublicKey().Bytes(), ProofOfPossession: sk.ProvePossession().Bytes(), Address: "evil:1"}
	if err = control.Sign(req, sk, "squatter", 0, 1); err != nil {
		t.Fatal(err)
	}
	for _, addr := range r.Control {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = weftv1.NewNodeClient(conn).RegisterNode(huge, req)
		conn.Close()
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("voter %s: a 40 KB request ID: %v, want InvalidArgument", addr, err)
		}
	}
	votersAnswer(t, bin, r)

	leader := voterStatus(t, bin, r).LeaderID
	pid := 0
	for _, p := range readKillReady(t, readyPath).Processes {
		if p.ID == leader {
			pid = p.PID
		}
	}
	if pid == 0 {
		t.Fatalf("leader %q is not in the ready file", leader)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	devnetRestart(t, bin, readyPath, leader)
	votersAnswer(t, bin, r)
	if out, err := adminRetry(t, bin, r, "client", "add", "after-restart", "--quota", "1"); err != nil {
		t.Fatalf("a write after the restart: %v\n%s", err, out)
	}
}

type statusReport struct {
	LeaderID string `json:"leaderId"`
}

func voterStatus(t *testing.T, bin string, r fullReady) statusReport {
	t.Helper()
	var st statusReport
	waitFor(t, 30*time.Second, "a leader", func() bool {
		out, err := adminAt(t, bin, r, "status", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.LeaderID != ""
	})
	return st
}

// votersAnswer waits until every voter answers and has caught up.
func votersAnswer(t *testing.T, bin string, r fullReady) {
	t.Helper()
	waitFor(t, 60*time.Second, "every voter up and caught up", func() bool {
		peers, ok := listPeers(t, bin, r)
		if !ok || len(peers) != 3 {
			return false
		}
		for _, p := range peers {
			if !p.caughtUp() {
				return false
			}
		}
		return true
	})
}
