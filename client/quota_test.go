package client

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
)

// A client reads its own quota: every store and extension it makes is
// charged as StoreCost says, a store the quota cannot pay for is refused
// and charges nothing, and only a client credential has a quota.
func TestQuota(t *testing.T) {
	net := startNet(t, 4, 8, nil)
	ctx := testContext(t, 60*time.Second)
	conn := dialControl(t, net)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+net.OperatorToken)
	blob := randomBlob(41, 50_000)
	first := newClient(t, net)
	cost, ok, err := first.StoreCost(ctx, uint64(len(blob)), 3)
	if err != nil || !ok || cost == 0 {
		t.Fatalf("cost of %d bytes × 3 epochs: %d, %v, %v", len(blob), cost, ok, err)
	}
	const total = 10 << 20
	added, err := weftv1.NewAdminClient(conn).AddClient(actx, &weftv1.AddClientRequest{Client: "app", Quota: total})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, net, func(cfg *Config) { cfg.Token = added.Token })

	q, err := c.Quota(ctx)
	if err != nil || q.Client != "app" || q.Total != total || q.Used != 0 || q.Left() != total {
		t.Fatalf("a new client's quota: %+v, %v", q, err)
	}
	id, _, err := c.Store(ctx, bytes.NewReader(blob), StoreOptions{Epochs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if q, err = c.Quota(ctx); err != nil || q.Used != cost {
		t.Fatalf("after storing: %+v, %v; want %d used", q, err, cost)
	}
	ext, err := c.Extend(ctx, id, ExtendOptions{Epochs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if q, err = c.Quota(ctx); err != nil || q.Used != cost+ext.Charged || ext.Charged != cost/3*2 {
		t.Fatalf("after extending by 2 epochs (charged %d): %+v, %v", ext.Charged, q, err)
	}

	big := randomBlob(42, 1<<20)
	bigCost, _, err := c.StoreCost(ctx, uint64(len(big)), 5)
	if err != nil {
		t.Fatal(err)
	}
	if bigCost <= q.Left() {
		t.Fatalf("the test's large blob (cost %d) fits the %d left", bigCost, q.Left())
	}
	if _, _, err := c.Store(ctx, bytes.NewReader(big), StoreOptions{Epochs: 5}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a store over the quota: %v", err)
	}
	if after, err := c.Quota(ctx); err != nil || after.Used != q.Used {
		t.Fatalf("a refused store charged: %+v, %v (was %d used)", after, err, q.Used)
	}

	operator := newClient(t, net, func(cfg *Config) { cfg.Token = net.OperatorToken })
	if _, err := operator.Quota(ctx); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("the operator's quota: %v", err)
	}
	for _, token := range []string{"", "not-a-token"} {
		nc := newClient(t, net, func(cfg *Config) { cfg.Token = token })
		if _, err := nc.Quota(ctx); err == nil {
			t.Fatalf("quota with token %q", token)
		}
	}
}
