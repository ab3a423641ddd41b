package committee

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

type batchCommand struct {
	kind Kind
	body any
}

// applyMixed applies commands of any kinds as one Raft batch and returns
// their results.
func (tf *testFSM) applyMixed(cmds []batchCommand) []*Result {
	tf.t.Helper()
	var logs []*raft.Log
	for _, c := range cmds {
		tf.index++
		cmd, err := NewCommand(fmt.Sprintf("cmd-%d", tf.index), c.kind, c.body)
		if err != nil {
			tf.t.Fatal(err)
		}
		data, _ := json.Marshal(cmd)
		logs = append(logs, &raft.Log{Index: tf.index, Type: raft.LogCommand, Data: data})
	}
	var out []*Result
	for _, r := range tf.fsm.ApplyBatch(logs) {
		out = append(out, r.(*Result))
	}
	return out
}

// A batch's client records are written once, at its end (flushClients):
// the same commands applied one per transaction and all in one leave the
// same state and results — charges, refunds, quotas, a client added and
// charged in the batch, a second client of that ID refused, a charge past
// the quota refused — and a reopened file has the charges.
func TestFSMClientWritesPerBatch(t *testing.T) {
	one, batched := compactionFSM(t), compactionFSM(t)
	root := func(i int) crypto.Digest { return crypto.Digest{byte(i), 'r'} }
	reg := func(client string, i int, deletable bool) batchCommand {
		return batchCommand{KindRegisterBlob, RegisterBlob{Client: client, Encoding: 1, Shards: 10, Length: 500, Root: root(i), EndEpoch: 5, Deletable: deletable}}
	}
	params, err := coding.NewParams(10, coding.WithEncoding(1))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := params.EncodedSize(500)
	if err != nil {
		t.Fatal(err)
	}
	cost := stored * (5 - one.state().Epoch()) // one registration's charge
	// The first registration's object is deleted in the batch (a refund).
	first := one.mustApply(KindRegisterBlob, reg("app", 0, true).body).Object
	batched.mustApply(KindRegisterBlob, reg("app", 0, true).body)
	cmds := []batchCommand{
		reg("app", 1, false),
		reg("app", 2, true),
		{KindAddClient, AddClient{Client: "new", TokenHash: crypto.Digest{7}, Quota: cost * 3 / 2}},
		{KindAddClient, AddClient{Client: "new", TokenHash: crypto.Digest{8}, Quota: 1}},
		reg("new", 3, false),
		reg("new", 4, false), // past new's quota
		{KindSetQuota, SetQuota{Client: "new", Quota: 1 << 40}},
		reg("new", 4, false),
		{KindDeleteObject, DeleteObject{Client: "app", Object: first}},
		reg("app", 5, false),
	}
	var want []*Result
	for _, c := range cmds {
		want = append(want, one.apply(c.kind, c.body))
	}
	got := batched.applyMixed(cmds)
	if !reflect.DeepEqual(got, want) {
		for i := range want {
			t.Logf("%d %s: one by one %+v (%v), batched %+v (%v)", i, cmds[i].kind, want[i], want[i].Err(), got[i], got[i].Err())
		}
		t.Fatal("batched results differ")
	}
	wantCode(t, "a second client of the same ID in the batch", got[3], CodeAlreadyExists)
	wantCode(t, "a charge past the quota", got[5], CodeResourceExhausted)
	if a, b := stateDump(t, one.fsm), stateDump(t, batched.fsm); !reflect.DeepEqual(a, b) {
		t.Fatal("the batched state differs from the state applied one by one")
	}
	path := batched.fsm.path
	wantUsed := batched.used("app")
	if err := batched.fsm.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenFSM(path, Config{Shards: 10, RetainEpochs: MinRetainEpochs})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	rec, found, err := reopened.Client("app")
	if err != nil || !found || rec.Used != wantUsed || wantUsed == 0 {
		t.Fatalf("reopened: app %+v (%v, %v), want %d used", rec, found, err, wantUsed)
	}
}
