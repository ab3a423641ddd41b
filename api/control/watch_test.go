package control

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/shardmap"
)

// baseState is a 4-shard state at index 10 of epoch 2.
func baseState() State {
	return State{
		Index: 10, Epoch: 2,
		Owners:  []shardmap.NodeID{"a", "b", "c", "d"},
		Holders: []shardmap.NodeID{"a", "b", "x", "d"},
	}
}

func change(shard uint32, owner, holder string) *weftv1.ShardChange {
	return &weftv1.ShardChange{Shard: shard, Owner: owner, Holder: holder}
}

func TestApplyDelta(t *testing.T) {
	base := baseState()
	keep := baseState()
	got, err := ApplyDelta(base, &weftv1.WatchStateResponse{Index: 12, Epoch: 2, Delta: true, Changes: []*weftv1.ShardChange{change(2, "c", "c"), change(3, "e", "d")}})
	if err != nil {
		t.Fatal(err)
	}
	want := State{Index: 12, Epoch: 2, Owners: []shardmap.NodeID{"a", "b", "c", "e"}, Holders: []shardmap.NodeID{"a", "b", "c", "d"}}
	if got.Index != want.Index || got.Epoch != want.Epoch || !slices.Equal(got.Owners, want.Owners) || !slices.Equal(got.Holders, want.Holders) {
		t.Fatalf("applied: %+v, want %+v", got, want)
	}
	if !slices.Equal(base.Owners, keep.Owners) || !slices.Equal(base.Holders, keep.Holders) {
		t.Fatal("applying a delta changed the state it was applied to")
	}
	// Nothing changed: the same state at a later index.
	if got, err := ApplyDelta(base, &weftv1.WatchStateResponse{Index: 30, Epoch: 2, Delta: true}); err != nil || got.Index != 30 || !slices.Equal(got.Owners, base.Owners) {
		t.Fatalf("empty delta: %+v, %v", got, err)
	}
}

// Every delta that does not fit the state it claims to follow is refused
// with what is wrong in it.
func TestApplyDeltaRefusesMisfits(t *testing.T) {
	changes := func(c ...*weftv1.ShardChange) []*weftv1.ShardChange { return c }
	for _, tc := range []struct {
		why  string
		resp *weftv1.WatchStateResponse
		base State
	}{
		{"not a delta", &weftv1.WatchStateResponse{Index: 11, Epoch: 2}, baseState()},
		{"owners", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Owners: []string{"a"}}, baseState()},
		{"older than", &weftv1.WatchStateResponse{Index: 9, Epoch: 2, Delta: true}, baseState()},
		{"older than", &weftv1.WatchStateResponse{Index: 11, Epoch: 1, Delta: true}, baseState()},
		{"shard 4 of 4", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(change(4, "a", "a"))}, baseState()},
		{"changes 1 shards of 0", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(change(0, "a", "a"))}, State{Index: 10}},
		{"after shard 1", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(change(1, "a", "a"), change(1, "b", "b"))}, baseState()},
		{"after shard 3", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(change(3, "a", "a"), change(0, "b", "b"))}, baseState()},
		{"without owner", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(change(0, "", "a"))}, baseState()},
		{"without owner or holder", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(change(0, "a", ""))}, baseState()},
		{"changes 5 shards of 4", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true,
			Changes: changes(change(0, "a", "a"), change(1, "a", "a"), change(2, "a", "a"), change(3, "a", "a"), change(4, "a", "a"))}, baseState()},
		{"change 0 is empty", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true, Changes: changes(nil)}, baseState()},
		{"base state", &weftv1.WatchStateResponse{Index: 11, Epoch: 2, Delta: true}, State{Index: 10, Epoch: 2, Owners: []shardmap.NodeID{"a"}}},
	} {
		_, err := ApplyDelta(tc.base, tc.resp)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: %v", tc.why, err)
		}
	}
}

// scriptedWatch is a Watch server answering from a list, recording what
// it was asked.
type scriptedWatch struct {
	weftv1.UnimplementedWatchServer
	mu      sync.Mutex
	answers []*weftv1.WatchStateResponse
	asked   []*weftv1.WatchStateRequest
}

func (s *scriptedWatch) WatchState(_ context.Context, req *weftv1.WatchStateRequest) (*weftv1.WatchStateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, proto.Clone(req).(*weftv1.WatchStateRequest))
	resp := s.answers[0]
	s.answers = s.answers[1:]
	return resp, nil
}

func full(index, epoch uint64, owners, holders []string) *weftv1.WatchStateResponse {
	return &weftv1.WatchStateResponse{Index: index, Epoch: epoch, Owners: owners, Holders: holders}
}

// Client.Watch over real gRPC: a full state first, then a delta against
// it; a delta that does not fit is answered by asking for the full
// state; a watch from an index the client does not hold asks no delta.
func TestClientWatchAppliesDeltas(t *testing.T) {
	script := &scriptedWatch{answers: []*weftv1.WatchStateResponse{
		full(10, 2, []string{"a", "b", "c"}, []string{"a", "b", "x"}),
		{Index: 12, Epoch: 2, Delta: true, Changes: []*weftv1.ShardChange{change(2, "c", "c")}},
		{Index: 15, Epoch: 3, Delta: true, Changes: []*weftv1.ShardChange{change(7, "c", "c")}}, // no shard 7
		full(15, 3, []string{"a", "d", "c"}, []string{"a", "b", "c"}),
		full(20, 3, []string{"a", "d", "c"}, []string{"a", "d", "c"}),
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	weftv1.RegisterWatchServer(srv, script)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := NewClient(conn, "", nil)
	ctx := context.Background()

	wantState := func(what string, got State, index, epoch uint64, owners, holders []shardmap.NodeID) {
		t.Helper()
		if got.Index != index || got.Epoch != epoch || !slices.Equal(got.Owners, owners) || !slices.Equal(got.Holders, holders) {
			t.Fatalf("%s: %+v", what, got)
		}
	}
	st, err := c.Watch(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantState("first", st, 10, 2, []shardmap.NodeID{"a", "b", "c"}, []shardmap.NodeID{"a", "b", "x"})
	first := st
	if st, err = c.Watch(ctx, st.Index, time.Second); err != nil {
		t.Fatal(err)
	}
	wantState("delta applied", st, 12, 2, []shardmap.NodeID{"a", "b", "c"}, []shardmap.NodeID{"a", "b", "c"})
	if first.Holders[2] != "x" {
		t.Fatal("the delta changed the state returned before it")
	}
	if st, err = c.Watch(ctx, st.Index, time.Second); err != nil {
		t.Fatal(err)
	}
	wantState("misfit delta replaced by the full state", st, 15, 3, []shardmap.NodeID{"a", "d", "c"}, []shardmap.NodeID{"a", "b", "c"})
	if st, err = c.Watch(ctx, 11, time.Second); err != nil {
		t.Fatal(err)
	}
	wantState("from an index the client does not hold", st, 20, 3, []shardmap.NodeID{"a", "d", "c"}, []shardmap.NodeID{"a", "d", "c"})

	wantAsked := []*weftv1.WatchStateRequest{
		{},
		{AfterIndex: 10, TimeoutMs: 1000, Delta: true},
		{AfterIndex: 12, TimeoutMs: 1000, Delta: true},
		{AfterIndex: 12, TimeoutMs: 1000},
		{AfterIndex: 11, TimeoutMs: 1000},
	}
	for i, want := range wantAsked {
		if !proto.Equal(script.asked[i], want) {
			t.Fatalf("request %d: %v, want %v", i, script.asked[i], want)
		}
	}
}

// FuzzApplyDelta feeds arbitrary bytes, as a WatchState response, to the
// delta applier against a fixed state: it never panics, and a delta it
// accepts gives a state of the same size, no older, with exactly the
// listed shards changed, and leaves the state it was applied to alone.
func FuzzApplyDelta(f *testing.F) {
	seed := func(resp *weftv1.WatchStateResponse) {
		b, err := proto.Marshal(resp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&weftv1.WatchStateResponse{Index: 12, Epoch: 2, Delta: true, Changes: []*weftv1.ShardChange{change(2, "c", "c")}})
	seed(&weftv1.WatchStateResponse{Index: 12, Epoch: 3, Delta: true, Changes: []*weftv1.ShardChange{change(0, "e", "a"), change(3, "e", "d")}})
	seed(&weftv1.WatchStateResponse{Index: 12, Epoch: 3, Delta: true, Changes: []*weftv1.ShardChange{change(3, "e", "d"), change(3, "e", "d")}})
	seed(&weftv1.WatchStateResponse{Index: 10, Epoch: 2, Delta: true, Changes: []*weftv1.ShardChange{change(1<<31, "e", "d")}})
	seed(full(12, 2, []string{"a"}, []string{"b"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp weftv1.WatchStateResponse
		if proto.Unmarshal(data, &resp) != nil {
			return
		}
		base, pristine := baseState(), baseState()
		got, err := ApplyDelta(base, &resp)
		if !slices.Equal(base.Owners, pristine.Owners) || !slices.Equal(base.Holders, pristine.Holders) {
			t.Fatal("the base state was modified")
		}
		if err != nil {
			return
		}
		if got.Index < base.Index || got.Epoch < base.Epoch || got.Index != resp.Index || got.Epoch != resp.Epoch {
			t.Fatalf("accepted a delta to index %d epoch %d over index %d epoch %d", got.Index, got.Epoch, base.Index, base.Epoch)
		}
		if len(got.Owners) != len(base.Owners) || len(got.Holders) != len(base.Holders) {
			t.Fatalf("the state has %d owners and %d holders, was %d", len(got.Owners), len(got.Holders), len(base.Owners))
		}
		listed := map[int]*weftv1.ShardChange{}
		for _, ch := range resp.Changes {
			if listed[int(ch.Shard)] != nil {
				t.Fatalf("accepted shard %d twice", ch.Shard)
			}
			listed[int(ch.Shard)] = ch
		}
		for shard := range got.Owners {
			owner, holder := base.Owners[shard], base.Holders[shard]
			if ch := listed[shard]; ch != nil {
				owner, holder = shardmap.NodeID(ch.Owner), shardmap.NodeID(ch.Holder)
			}
			if got.Owners[shard] != owner || got.Holders[shard] != holder || owner == "" || holder == "" {
				t.Fatalf("shard %d: %s/%s, want %s/%s", shard, got.Owners[shard], got.Holders[shard], owner, holder)
			}
		}
	})
}
