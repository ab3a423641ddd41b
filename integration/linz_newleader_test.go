package integration

import (
	"context"
	"math/rand"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/internal/faultnet"
)

// TestNewLeaderPreCheck: a voter elected a moment ago may lack entries
// committed in the previous term (its commit index lags until its first
// entry of the term commits), and the service checks some requests against
// the leader's state before proposing. The epoch is advanced on the
// leader, which is SIGKILLed as soon as the advance is acknowledged
// (before its next heartbeat tells the followers the entry is committed);
// the first survivor to lead is cut off from the other at once, so that
// its first entry of the term cannot commit and its state stays where it
// was until its lease runs out. A certificate of the acknowledged epoch
// sent to it then must not be refused as "no committee for epoch e" — a
// definite answer from a state older than an acknowledged write: it was,
// in 6 attempts of 8, before Node.LeaderCaughtUp. Now the leader answers
// Unavailable (it cannot confirm its state) or takes it.
func TestNewLeaderPreCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes, SIGKILLs and elections: not under -short")
	}
	attempts := 4
	if os.Getenv("WEFT_REPRO_NEWLEADER") != "" {
		attempts = 12
	}
	artifacts := t.TempDir()
	bin := buildWeft(t)
	c := startLinzCluster(t, bin, artifacts)
	s := c.setup(t, 1, 0)
	cl := s.clients[0]
	ctx := context.Background()
	retry(t, "quota", func(ctx context.Context) error {
		_, err := weftv1.NewAdminClient(c.conns[0]).SetQuota(ctx, &weftv1.SetQuotaRequest{Client: "linz-0", Quota: 1 << 50})
		return err
	})
	stale := 0
	for attempt := 1; attempt <= attempts; attempt++ {
		lead, ok := c.healthy(ctx, 60*time.Second)
		if !ok {
			t.Fatal("no healthy cluster")
		}
		// The blob is registered, so certifying it is a valid request.
		out := (&linzRun{c: c, s: s}).write(ctx, rand.New(rand.NewSource(int64(attempt))), cl, linzInput{Kind: opRegister, Slot: 0, EndEpoch: s.epoch + 50, Deletable: true}, "repro-reg-"+itoa(attempt))
		if out.Unknown || out.Code != "" {
			t.Fatalf("register: %+v", out)
		}
		adv, err := weftv1.NewAdminClient(c.conns[lead]).AdvanceEpoch(operatorContext(ctx), &weftv1.AdvanceEpochRequest{})
		if err != nil {
			t.Logf("attempt %d: advance: %v", attempt, err)
			continue
		}
		c.kill(c.voters[lead])
		next := adv.Epoch
		// Wait for a survivor to lead, then cut it off.
		newLead := -1
		deadline := time.Now().Add(10 * time.Second)
		for newLead < 0 && time.Now().Before(deadline) {
			for i := range c.voters {
				if i == lead {
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				st, err := weftv1.NewAdminClient(c.conns[i]).Status(operatorContext(cctx), &weftv1.StatusRequest{})
				cancel()
				if err == nil && st.RaftState == "Leader" {
					newLead = i
					c.isolate(i)
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		if newLead < 0 {
			t.Logf("attempt %d: no new leader", attempt)
		} else {
			st, _ := weftv1.NewAdminClient(c.conns[newLead]).Status(operatorContext(ctx), &weftv1.StatusRequest{})
			cert := certificateFor(t, s, next, cl.blobs[0].id)
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := weftv1.NewClientClient(c.conns[newLead]).CertifyBlob(clientContext(cctx, cl, ""), &weftv1.CertifyBlobRequest{BlobId: cl.blobs[0].id[:], Certificate: cert})
			cancel()
			t.Logf("attempt %d: epoch %d committed on %s, killed; %s leads (raft state %s, its FSM at epoch %d): certify with epoch %d's certificate → %v",
				attempt, next, c.voters[lead].id, c.voters[newLead].id, st.GetRaftState(), st.GetEpoch(), next, status.Convert(err).Message())
			if st.GetEpoch() < next {
				stale++
			}
			if status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.InvalidArgument {
				t.Errorf("attempt %d: a certificate of acknowledged epoch %d refused by the new leader: %v", attempt, next, err)
			}
		}
		for _, p := range c.proxies {
			p.SetMode(faultnet.Pass)
		}
		c.start(t, c.voters[lead])
		s.epoch = next
	}
	t.Logf("%d of %d attempts found the new leader's state behind the acknowledged epoch", stale, attempts)
}

// certificateFor signs blob id's availability certificate for epoch e with
// every member of the setup's committee (the same nodes and stakes in
// every epoch of this test).
func certificateFor(t *testing.T, s *linzSetup, e uint64, id crypto.BlobID) []byte {
	cert := &crypto.Certificate{Type: crypto.MsgBlobStored, Epoch: e, BlobID: id, Signers: make([]byte, (len(s.members)+7)/8)}
	var parts []*crypto.Signature
	for i, m := range s.members {
		sig, err := s.keys[m.Node].SignMessage(e, crypto.BlobStored{BlobID: id})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, sig)
		cert.Signers[i/8] |= 1 << (i % 8)
	}
	sig, err := crypto.Aggregate(parts)
	if err != nil {
		t.Fatal(err)
	}
	cert.Signature = sig
	b, err := cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
