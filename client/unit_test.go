package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// testCommittee makes a committee of real BLS keys: member i owns
// weights[i] shards, laid out in order.
func testCommittee(t *testing.T, epoch uint64, weights ...uint32) (*Committee, []*crypto.SecretKey) {
	t.Helper()
	var members []Member
	var keys []*crypto.SecretKey
	var owners []shardmap.NodeID
	for i, w := range weights {
		sk, err := crypto.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		node := shardmap.NodeID(fmt.Sprintf("n%d", i))
		members = append(members, Member{Node: node, Address: fmt.Sprintf("127.0.0.1:%d", 9000+i), PublicKey: sk.PublicKey(), Weight: w})
		keys = append(keys, sk)
		for range w {
			owners = append(owners, node)
		}
	}
	com, err := control.NewCommittee(epoch, members, owners)
	if err != nil {
		t.Fatal(err)
	}
	return com, keys
}

func sign(t *testing.T, sk *crypto.SecretKey, epoch uint64, id crypto.BlobID) *crypto.Signature {
	t.Helper()
	sig, err := sk.SignMessage(epoch, crypto.BlobStored{BlobID: id})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// A bad signature (here: one over another blob) that arrived after the
// quorum was checked is dropped at aggregation and named; the write goes
// on with the rest when they still reach the quorum.
func TestAggregateDropsBadSigner(t *testing.T) {
	com, keys := testCommittee(t, 3, 1, 1, 1, 1, 1, 1, 1) // n = 7, quorum 5
	id := crypto.BlobID{1, 2, 3}
	other := crypto.BlobID{9}
	c := &Client{log: slog.New(slog.DiscardHandler)}
	w := &write{c: c, enc: &coding.Encoded{ID: id}}
	var signed []nodeOutcome
	for i, sk := range keys[:6] {
		msgID := id
		if i == 2 {
			msgID = other
		}
		signed = append(signed, nodeOutcome{member: com.Members[i], sig: sign(t, sk, 3, msgID), weight: 1})
	}
	cert, dropped, err := w.aggregate(com, signed)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0].Node != "n2" || !errors.Is(dropped[0], crypto.ErrBadSignature) {
		t.Fatalf("dropped %v", dropped)
	}
	if got := cert.SignerIndices(); fmt.Sprint(got) != "[0 1 3 4 5]" {
		t.Fatalf("signers %v", got)
	}
	if err := Verify(cert, com.View()); err != nil {
		t.Fatal(err)
	}

	// Two bad ones leave four good signers: below the quorum of five.
	signed[3].sig = sign(t, keys[3], 3, other)
	if _, _, err := w.aggregate(com, signed); !errors.Is(err, crypto.ErrBelowThreshold) {
		t.Fatalf("aggregate below quorum: %v", err)
	}
}

// Verify accepts a good certificate and names what is wrong with bad ones.
func TestVerify(t *testing.T) {
	com, keys := testCommittee(t, 5, 2, 1, 1, 3) // n = 7, quorum 5
	id := crypto.BlobID{7}
	var sigs []crypto.MemberSignature
	for i, sk := range keys {
		if i == 1 {
			continue // 2 + 1 + 3 = 6 ≥ 5
		}
		sigs = append(sigs, crypto.MemberSignature{Key: sk.PublicKey(), Signature: sign(t, sk, 5, id)})
	}
	cert, err := crypto.BuildCertificate(com.View(), crypto.BlobStored{BlobID: id}, sigs)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(cert, com.View()); err != nil {
		t.Fatal(err)
	}
	if w := SignedWeight(cert, com.View()); w != 6 {
		t.Fatalf("signed weight %d", w)
	}

	// The committee of another epoch.
	later, _ := testCommittee(t, 6, 2, 1, 1, 3)
	if err := Verify(cert, later.View()); !errors.Is(err, crypto.ErrWrongEpoch) {
		t.Fatalf("other epoch: %v", err)
	}
	// A signer claimed who did not sign: the aggregate no longer matches.
	forged := *cert
	forged.Signers = bytes.Clone(cert.Signers)
	forged.Signers[0] |= 1 << 1
	if err := Verify(&forged, com.View()); !errors.Is(err, crypto.ErrBadSignature) {
		t.Fatalf("forged signer: %v", err)
	}
	// Signers dropped below the quorum.
	forged.Signers = []byte{1 << 3} // weight 3
	if err := Verify(&forged, com.View()); !errors.Is(err, crypto.ErrBelowThreshold) {
		t.Fatalf("below quorum: %v", err)
	}
	if err := Verify(nil, com.View()); err == nil {
		t.Fatal("nil certificate verified")
	}
}

func TestReadBlobLimit(t *testing.T) {
	if b, err := readBlob(bytes.NewReader(make([]byte, 100)), 100); err != nil || len(b) != 100 {
		t.Fatalf("at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := readBlob(bytes.NewReader(make([]byte, 101)), 100); !errors.Is(err, ErrBlobTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestShardList(t *testing.T) {
	for _, tc := range []struct {
		in   []uint32
		want string
	}{
		{nil, "none"}, {[]uint32{3}, "3"}, {[]uint32{0, 1, 2, 5, 7, 8}, "0-2,5,7-8"},
	} {
		if got := shardList(tc.in); got != tc.want {
			t.Errorf("shardList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("no control-plane address accepted")
	}
	c, err := New(Config{Control: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.Retries != 3 || c.cfg.MaxParallel != 32 || c.cfg.MaxBlobLength != coding.DefaultMaxBlobLength {
		t.Fatalf("defaults %+v", c.cfg)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn(context.Background(), "127.0.0.1:1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("conn after close: %v", err)
	}
}

// BlobStatus.Err is the verdict Read gives on a registry entry: nil when
// certified, else the typed error (the same text as a read's).
func TestBlobStatusErr(t *testing.T) {
	id := crypto.BlobID{9}
	for _, c := range []struct {
		st   BlobStatus
		want error
		text string
	}{
		{BlobStatus{ID: id, Status: StatusCertified}, nil, ""},
		{BlobStatus{ID: id, Status: StatusInvalid}, ErrInvalidBlob, fmt.Sprintf("%s: %s", ErrInvalidBlob, id)},
		{BlobStatus{ID: id, Status: StatusExpired, EndEpoch: 7}, ErrExpired, fmt.Sprintf("%s: %s (end epoch 7)", ErrExpired, id)},
		{BlobStatus{ID: id, Status: StatusRegistered, RegisteredEpoch: 3}, ErrNotCertified, fmt.Sprintf("%s: %s (registered in epoch 3)", ErrNotCertified, id)},
		{BlobStatus{ID: id, Status: "odd"}, nil, fmt.Sprintf("client: blob %s has unknown status %q", id, "odd")},
	} {
		err := c.st.Err()
		if c.text == "" {
			if err != nil {
				t.Errorf("%s: %v, want nil", c.st.Status, err)
			}
			continue
		}
		if err == nil || err.Error() != c.text || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %q (%v)", c.st.Status, err, c.text, c.want)
		}
	}
}

// Confirmations are checked together once owners of a quorum have signed:
// a bad one among them is dropped and named, and the write keeps gathering
// until good signatures carry the quorum — it does not cut the others off
// on the strength of a signature that does not verify.
func TestGatherChecksQuorumTogether(t *testing.T) {
	com, keys := testCommittee(t, 3, 1, 1, 1, 1, 1, 1, 1) // n = 7, quorum 5
	id := crypto.BlobID{4, 5, 6}
	c := &Client{log: slog.New(slog.DiscardHandler), cfg: Config{StragglerWait: -1}}
	w := &write{c: c, enc: &coding.Encoded{ID: id}, stats: &StoreStats{}, stored: map[shardmap.NodeID]map[uint32]bool{}}
	var jobs []storeJob
	results := make(chan nodeOutcome, len(keys))
	for i, sk := range keys {
		jobs = append(jobs, storeJob{m: com.Members[i], shards: []uint32{uint32(i)}, accepted: new(atomic.Bool)})
		o := nodeOutcome{member: com.Members[i], sig: sign(t, sk, 3, id), weight: 1}
		switch i {
		case 1: // signs another blob, and answers among the first five
			o.sig = sign(t, sk, 3, crypto.BlobID{9})
		case 6: // answers after the cut-off
			o = nodeOutcome{member: com.Members[i], err: &NodeError{Node: string(com.Members[i].Node), Err: context.Canceled}}
		}
		results <- o
	}
	cancelled := false
	got := w.gather(com, time.Now(), results, jobs, func() { cancelled = true })
	var names []string
	for _, o := range got.signed {
		names = append(names, string(o.member.Node))
	}
	if fmt.Sprint(names) != "[n0 n2 n3 n4 n5]" || got.weight != 5 {
		t.Fatalf("signed %v (weight %d), want n1 dropped and n5 taken in", names, got.weight)
	}
	if len(got.failures) != 1 || got.failures[0].Node != "n1" || !errors.Is(got.failures[0], crypto.ErrBadSignature) {
		t.Fatalf("failures %v, want n1's bad signature", got.failures)
	}
	if !cancelled || fmt.Sprint(w.stats.CutOff) != "[n6]" {
		t.Fatalf("cancelled %v, cut off %v: the quorum of good signatures should cut n6 off", cancelled, w.stats.CutOff)
	}
	cert, dropped, err := w.aggregate(com, got.signed)
	if err != nil || len(dropped) != 0 {
		t.Fatalf("aggregate: %v (dropped %v)", err, dropped)
	}
	if err := Verify(cert, com.View()); err != nil {
		t.Fatal(err)
	}
}

// Request IDs grow with time (the control plane's command records then
// append instead of landing on random pages) and stay unique.
func TestRequestIDsGrowWithTime(t *testing.T) {
	prev := newRequestID()
	seen := map[string]bool{prev: true}
	for i := range 2000 {
		if i%20 == 0 {
			time.Sleep(time.Microsecond)
		}
		id := newRequestID()
		if seen[id] {
			t.Fatalf("request ID %s made twice", id)
		}
		seen[id] = true
		if i%20 == 0 && id <= prev {
			t.Fatalf("request ID %s made after %s sorts before it", id, prev)
		}
		prev = id
	}
}
