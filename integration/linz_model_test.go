package integration

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"

	"github.com/anishathalye/porcupine"
)

// The registry model that TestLinearizability checks histories against:
// what committee/blobs.go and committee/objects.go do to one client's
// blobs, objects and quota while the epoch stays put (the test never
// advances it, so nothing expires or lapses and epoch reads must all
// return the one epoch). Each client registers content no other client
// does, so one client's operations and its blobs' reads form one
// partition of the history; epoch reads form another.

// linzKind is the operation an input is.
type linzKind int

const (
	opRegister linzKind = iota
	opCertify
	opExtend
	opDelete
	opStatus
	opQuota
	opEpoch
)

func (k linzKind) String() string {
	return [...]string{"register", "certify", "extend", "delete", "status", "quota", "epoch"}[k]
}

// linzBlobs is how many distinct contents one client stores.
const linzBlobs = 2

// linzInput is an operation as invoked.
type linzInput struct {
	Kind      linzKind
	Client    int // partition; -1 for epoch reads
	Slot      int // blob slot (register, certify, extend, status)
	Stored    uint64
	EndEpoch  uint64 // register, extend
	Deletable bool   // register
	Object    uint64 // extend, delete
}

// linzOutput is its response. Unknown: no definite answer arrived (the
// write may or may not have applied); the checker may place it anywhere
// after its invocation, and any effect the model gives it must explain
// what later reads saw.
type linzOutput struct {
	Unknown bool
	Code    string // "" for OK, else the gRPC code's name
	// register / extend / delete
	Object        uint64
	Refund        uint64
	BlobEndsEpoch uint64
	// certify
	CertifiedEpoch uint64
	// status
	Status            string
	EndEpoch          uint64
	Objects           int
	PermanentEndEpoch uint64
	Deleting          bool
	// quota
	Used uint64
	// epoch
	Epoch uint64
}

type linzBlob struct {
	Registered, Certified, Deleted bool
	End, PermanentEnd              uint64
	Objects                        int
}

type linzObject struct {
	ID        uint64 // 0: an object of a registration whose answer was lost
	Slot      int
	End       uint64
	Deletable bool
	Stored    uint64
}

type linzState struct {
	Used    uint64
	Blobs   [linzBlobs]linzBlob
	Objects []linzObject // sorted, so that equal states are DeepEqual
}

func (s linzState) clone() linzState {
	s.Objects = slices.Clone(s.Objects)
	return s
}

func (s *linzState) object(id uint64) int {
	if id == 0 {
		return -1
	}
	return slices.IndexFunc(s.Objects, func(o linzObject) bool { return o.ID == id })
}

func (s *linzState) sortObjects() {
	slices.SortFunc(s.Objects, func(a, b linzObject) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.End, b.End),
			cmp.Compare(a.Stored, b.Stored), cmp.Compare(boolInt(a.Deletable), boolInt(b.Deletable)))
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// linzModel is the porcupine model of the registry at epoch epoch, every
// client's quota being quota.
func linzModel(epoch, quota uint64) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[int][]porcupine.Operation{}
			var keys []int
			for _, op := range history {
				c := op.Input.(linzInput).Client
				if _, ok := by[c]; !ok {
					keys = append(keys, c)
				}
				by[c] = append(by[c], op)
			}
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() any { return linzState{} },
		Step: func(state, input, output any) (bool, any) {
			return linzStep(epoch, quota, state.(linzState), input.(linzInput), output.(linzOutput))
		},
		Equal: func(a, b any) bool { return reflect.DeepEqual(a, b) },
		DescribeOperation: func(input, output any) string {
			in, out := input.(linzInput), output.(linzOutput)
			return fmt.Sprintf("%s %+v → %s", in.Kind, in, describeOutput(out))
		},
		DescribeState: func(state any) string { return fmt.Sprintf("%+v", state.(linzState)) },
	}
}

func describeOutput(o linzOutput) string {
	switch {
	case o.Unknown:
		return "unknown"
	case o.Code != "":
		return o.Code
	}
	return fmt.Sprintf("%+v", o)
}

// linzStep applies one operation to the model: ok is false when the
// response cannot be what the registry answers in that state.
func linzStep(epoch, quota uint64, s linzState, in linzInput, out linzOutput) (bool, linzState) {
	want, next := linzApply(epoch, quota, s, in, out)
	if out.Unknown {
		return true, next
	}
	return reflect.DeepEqual(want, out), next
}

// linzApply is what the registry answers to in in state s and the state
// after. A registration's object ID is the Raft index the registry
// assigns: the model takes the answer's (0 when it was lost).
func linzApply(epoch, quota uint64, s linzState, in linzInput, out linzOutput) (linzOutput, linzState) {
	fail := func(code string) (linzOutput, linzState) { return linzOutput{Code: code}, s }
	switch in.Kind {
	case opEpoch:
		return linzOutput{Epoch: epoch}, s
	case opQuota:
		return linzOutput{Used: s.Used}, s
	case opStatus:
		b := s.Blobs[in.Slot]
		if !b.Registered {
			return fail("NotFound")
		}
		st := linzOutput{Status: "registered", EndEpoch: b.End, Objects: b.Objects, PermanentEndEpoch: b.PermanentEnd, Deleting: b.Deleted}
		if b.Certified {
			st.Status, st.CertifiedEpoch = "certified", epoch
		}
		return st, s
	case opRegister:
		cost := in.Stored * (in.EndEpoch - epoch)
		if cost > quota-min(s.Used, quota) {
			return fail("ResourceExhausted")
		}
		id := out.Object
		if out.Unknown || out.Code != "" || s.object(id) >= 0 {
			id = 0 // a lost answer's object; a reused ID is no answer the registry gives
		}
		n := s.clone()
		n.Used += cost
		b := &n.Blobs[in.Slot]
		if !b.Registered {
			*b = linzBlob{Registered: true, End: in.EndEpoch}
		} else {
			b.End = max(b.End, in.EndEpoch)
		}
		b.Objects++
		b.Deleted = false
		if !in.Deletable {
			b.PermanentEnd = max(b.PermanentEnd, in.EndEpoch)
		}
		n.Objects = append(n.Objects, linzObject{ID: id, Slot: in.Slot, End: in.EndEpoch, Deletable: in.Deletable, Stored: in.Stored})
		n.sortObjects()
		if id == 0 && !out.Unknown {
			return linzOutput{Object: 1<<64 - 1}, n // never equal to an answer: the step fails
		}
		return linzOutput{Object: id}, n
	case opCertify:
		b := s.Blobs[in.Slot]
		if !b.Registered {
			return fail("NotFound")
		}
		n := s.clone()
		n.Blobs[in.Slot].Certified = true
		return linzOutput{CertifiedEpoch: epoch}, n
	case opExtend:
		if !s.Blobs[in.Slot].Registered {
			return fail("NotFound")
		}
		i := s.object(in.Object)
		if i < 0 {
			return fail("NotFound")
		}
		o := s.Objects[i]
		if o.Slot != in.Slot {
			return fail("InvalidArgument")
		}
		if in.EndEpoch <= o.End {
			return fail("InvalidArgument")
		}
		cost := o.Stored * (in.EndEpoch - o.End)
		if cost > quota-min(s.Used, quota) {
			return fail("ResourceExhausted")
		}
		n := s.clone()
		n.Used += cost
		n.Objects[i].End = in.EndEpoch
		b := &n.Blobs[in.Slot]
		if !o.Deletable {
			b.PermanentEnd = max(b.PermanentEnd, in.EndEpoch)
		}
		b.End = max(b.End, in.EndEpoch)
		n.sortObjects()
		return linzOutput{Object: o.ID}, n
	case opDelete:
		i := s.object(in.Object)
		if i < 0 {
			return fail("NotFound")
		}
		o := s.Objects[i]
		if !o.Deletable {
			return fail("FailedPrecondition")
		}
		refund := o.Stored * (o.End - epoch - 1)
		n := s.clone()
		n.Used -= min(n.Used, refund)
		n.Objects = slices.Delete(n.Objects, i, i+1)
		b := &n.Blobs[o.Slot]
		b.Objects--
		end := b.PermanentEnd
		for _, r := range n.Objects {
			if r.Slot == o.Slot {
				end = max(end, r.End)
			}
		}
		res := linzOutput{Refund: refund}
		if end <= epoch {
			end, b.Deleted = epoch+1, true
			res.BlobEndsEpoch = end
		}
		b.End = end
		return res, n
	}
	panic(fmt.Sprintf("linz: operation kind %d", in.Kind))
}
