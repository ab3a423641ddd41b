package committee

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/crypto"
)

// wantTokenTable checks the FSM's in-memory token table against the
// tokens bucket of its state file, entry for entry.
func wantTokenTable(t *testing.T, f *FSM) {
	t.Helper()
	inFile := map[crypto.Digest]string{}
	if err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			inFile[crypto.Digest(k)] = string(v)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if n := f.tokens.t.Load().Len(); n != len(inFile) {
		t.Fatalf("token table has %d entries, the tokens bucket %d", n, len(inFile))
	}
	for h, id := range inFile {
		if got, ok, _ := f.ClientByToken(h); !ok || got != id {
			t.Fatalf("token %x: table says %q (%v), the bucket %q", h[:4], got, ok, id)
		}
	}
}

// The token table follows the tokens bucket: loaded at open (a reopened
// file), changed by committed AddClients only (a refused one leaves it),
// replaced by a restore (a token the restored state lacks is refused at
// once).
func TestFSMTokenTable(t *testing.T) {
	tf := newTestFSM(t, Config{Shards: 10})
	hash := func(token string) crypto.Digest { return sha256.Sum256([]byte(token)) }
	tf.mustApply(KindAddClient, AddClient{Client: "a", TokenHash: hash("ta"), Quota: 1})
	wantTokenTable(t, tf.fsm)
	snap, err := tf.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	tf.mustApply(KindAddClient, AddClient{Client: "b", TokenHash: hash("tb"), Quota: 1})
	wantCode(t, "a second client with b's token", tf.apply(KindAddClient, AddClient{Client: "c", TokenHash: hash("tb"), Quota: 1}), CodeAlreadyExists)
	wantCode(t, "a client without a token hash", tf.apply(KindAddClient, AddClient{Client: "d", Quota: 1}), CodeInvalidArgument)
	wantTokenTable(t, tf.fsm)
	if id, ok, _ := tf.fsm.ClientByToken(hash("tb")); !ok || id != "b" {
		t.Fatalf("b's token: %q, %v", id, ok)
	}
	if _, ok, _ := tf.fsm.ClientByToken(hash("guess")); ok {
		t.Fatal("an unknown token was accepted")
	}

	// Two in one batch (one transaction): both published with it.
	var logs []*raft.Log
	for i, c := range []string{"e", "f"} {
		tf.index++
		cmd, err := NewCommand(fmt.Sprintf("batch-%d", i), KindAddClient, AddClient{Client: c, TokenHash: hash("t" + c), Quota: 1})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(cmd)
		logs = append(logs, &raft.Log{Index: tf.index, Type: raft.LogCommand, Data: data})
	}
	for _, out := range tf.fsm.ApplyBatch(logs) {
		if err := out.(*Result).Err(); err != nil {
			t.Fatal(err)
		}
	}
	wantTokenTable(t, tf.fsm)

	// Reopened: the table is loaded from the file.
	path := tf.fsm.path
	if err := tf.fsm.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenFSM(path, Config{Shards: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reopened.Close() })
	wantTokenTable(t, reopened)
	if id, ok, _ := reopened.ClientByToken(hash("tf")); !ok || id != "f" {
		t.Fatalf("f's token after reopening: %q, %v", id, ok)
	}

	// Restored to the state before b: b's token is refused from the
	// restore's return on.
	if err := reopened.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	wantTokenTable(t, reopened)
	if _, ok, _ := reopened.ClientByToken(hash("tb")); ok {
		t.Fatal("b's token was accepted after a restore to a state without it")
	}
	if id, ok, _ := reopened.ClientByToken(hash("ta")); !ok || id != "a" {
		t.Fatalf("a's token after the restore: %q, %v", id, ok)
	}
}

// On a real cluster, through gRPC: a client's token is accepted once its
// AddClient returns, and refused as soon as RestoreSnapshot returns with a
// state that lacks it — the authorization check reads the FSM's token
// table, which the restore replaced.
func TestTokenRefusedRightAfterRestore(t *testing.T) {
	c := newCluster(t, "v1")
	leader := c.leader()
	addr, stop := serveGRPC(t, leader)
	defer stop()
	awaitAnnounced(t, leader, addr)
	conn := dial(t, addr)
	admin, client := weftv1.NewAdminClient(conn), weftv1.NewClientClient(conn)
	op := operator(context.Background(), testToken)
	addClient := func(name string) string {
		added, err := admin.AddClient(op, &weftv1.AddClientRequest{Client: name, Quota: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return added.Token
	}
	before := addClient("before")

	save, err := admin.SaveSnapshot(op, &weftv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var saved [][]byte
	for {
		chunk, err := save.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		saved = append(saved, chunk.Data)
	}

	after := addClient("after")
	for _, token := range []string{before, after} {
		if _, err := client.GetClient(operator(context.Background(), token), &weftv1.GetClientRequest{}); err != nil {
			t.Fatalf("a client's token before the restore: %v", err)
		}
	}
	upload, err := admin.RestoreSnapshot(op)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range saved {
		if err := upload.Send(&weftv1.SnapshotChunk{Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := upload.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	_, err = client.GetClient(operator(context.Background(), after), &weftv1.GetClientRequest{})
	wantStatus(t, "the token of a client the restored state lacks", err, codes.PermissionDenied)
	if _, err := client.GetClient(operator(context.Background(), before), &weftv1.GetClientRequest{}); err != nil {
		t.Fatalf("a token the restored state holds: %v", err)
	}
	wantTokenTable(t, leader.FSM())
}

// Publishing a batch's token change copies what it changes, not the table:
// with 100,000 clients one new token allocates a few kilobytes (a copy of
// the table, as before, was megabytes — and onboarding clients one by one
// quadratic).
func TestTokenTablePublishCostsTheChange(t *testing.T) {
	var table tokenTable
	const clients = 100_000
	changes := make([]tokenChange, clients)
	for i := range changes {
		changes[i] = tokenChange{hash: sha256.Sum256(fmt.Appendf(nil, "token-%d", i)), client: fmt.Sprintf("client-%d", i)}
	}
	table.publish(changes)
	one := []tokenChange{{hash: sha256.Sum256([]byte("new")), client: "new"}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	table.publish(one)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Errorf("one token published into %d allocated %d bytes, want a few kilobytes", clients, got)
	}
	for _, c := range []tokenChange{changes[0], changes[clients-1], one[0]} {
		if id, ok := table.lookup(c.hash); !ok || id != c.client {
			t.Errorf("token of %s: %q, %v", c.client, id, ok)
		}
	}
	table.publish([]tokenChange{{hash: changes[7].hash}})
	if _, ok := table.lookup(changes[7].hash); ok {
		t.Error("a withdrawn token is still in the table")
	}
}

// The table owns its keys: loaded from a read transaction whose keys point
// into bbolt's memory map, it still answers after the file grew and bbolt
// mapped it again (the old map unmapped) — a voter restarted with its
// state, then taking writes (CI's kill test refused every client once).
func TestTokenTableOutlivesItsTransaction(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hashes := make([]crypto.Digest, 100)
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketTokens)
		if err != nil {
			return err
		}
		for i := range hashes {
			hashes[i] = sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
			if err := b.Put(hashes[i][:], fmt.Appendf(nil, "client-%d", i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var table tokenTable
	if err := db.View(table.load); err != nil {
		t.Fatal(err)
	}
	// Grow the file well past its first mapping: bbolt maps it again.
	filler := bytes.Repeat([]byte{0xee}, 64<<10)
	for round := range 8 {
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("filler"))
			if err != nil {
				return err
			}
			for i := range 64 {
				if err := b.Put(fmt.Appendf(nil, "%d-%d", round, i), filler); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hashes {
		if id, ok := table.lookup(h); !ok || id != fmt.Sprintf("client-%d", i) {
			t.Fatalf("token %d after the file grew: %q, %v", i, id, ok)
		}
	}
}
