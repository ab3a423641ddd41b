package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/anishathalye/porcupine"
)

// The checker can fail: histories built by hand from the model that
// TestLinearizability uses, one of each kind of anomaly a broken control
// plane would show — a stale read after an acknowledged delete (what a
// voter answering from its local state while it lags does), a retried
// write charged twice (a request ID not deduplicated), a lost
// registration seen by one read and then unseen — are rejected, and the
// same histories with the answers the registry gives are accepted.
func TestLinearizabilityCheckerRejects(t *testing.T) {
	const epoch, quota, stored = 1, 1000, 10
	model := linzModel(epoch, quota)
	op := func(client int, call, ret int64, in linzInput, out linzOutput) porcupine.Operation {
		in.Client = 0
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	register := linzInput{Kind: opRegister, Slot: 0, Stored: stored, EndEpoch: 4, Deletable: true}
	status := linzInput{Kind: opStatus, Slot: 0}
	registered := linzOutput{Status: "registered", EndEpoch: 4, Objects: 1}
	deleted := linzOutput{Status: "registered", EndEpoch: 2, Deleting: true}
	base := []porcupine.Operation{
		op(0, 0, 10, register, linzOutput{Object: 7}),
		op(1, 12, 20, linzInput{Kind: opDelete, Object: 7}, linzOutput{Refund: stored * 2, BlobEndsEpoch: 2}),
	}
	after := func(ops ...porcupine.Operation) []porcupine.Operation {
		return append(append([]porcupine.Operation(nil), base...), ops...)
	}
	unknownRegister := op(0, 0, 1000, register, linzOutput{Unknown: true})
	cases := []struct {
		name    string
		history []porcupine.Operation
		ok      bool
	}{
		{"read after the delete sees it", after(op(2, 30, 40, status, deleted)), true},
		{"stale read after an acknowledged delete", after(op(2, 30, 40, status, registered)), false},
		{"read concurrent with the delete may see either", after(op(2, 15, 40, status, registered)), true},
		{"quota after the delete is refunded", after(op(2, 30, 40, linzInput{Kind: opQuota}, linzOutput{Used: stored})), true},
		{"quota after the delete not refunded", after(op(2, 30, 40, linzInput{Kind: opQuota}, linzOutput{Used: stored * 3})), false},
		{"a lost registration applied once", []porcupine.Operation{unknownRegister,
			op(1, 5, 6, linzInput{Kind: opQuota}, linzOutput{Used: stored * 3})}, true},
		{"a lost registration charged twice", []porcupine.Operation{unknownRegister,
			op(1, 5, 6, linzInput{Kind: opQuota}, linzOutput{Used: stored * 6})}, false},
		{"a write seen, then unseen", []porcupine.Operation{unknownRegister,
			op(1, 5, 6, status, registered), op(1, 7, 8, status, linzOutput{Code: "NotFound"})}, false},
		{"the epoch read moves", []porcupine.Operation{op(0, 0, 1, linzInput{Kind: opEpoch, Client: -1}, linzOutput{Epoch: 2})}, false},
	}
	for _, c := range cases {
		res, info := porcupine.CheckOperationsVerbose(model, c.history, 0)
		if got := res == porcupine.Ok; got != c.ok {
			path := filepath.Join(t.TempDir(), "history.html")
			if err := porcupine.VisualizePath(model, info, path); err == nil {
				if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
					t.Logf("visualisation: %s", path)
				}
			}
			t.Errorf("%s: checker says %s, want linearizable=%v", c.name, res, c.ok)
		}
	}
}
