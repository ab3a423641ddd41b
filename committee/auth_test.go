package committee

import (
	"context"
	"testing"

	"github.com/weftstore/weft/api/wire/wiretest"
)

var controlServices = []string{"weft.v1.Admin", "weft.v1.Node", "weft.v1.Client", "weft.v1.Watch"}

// Every method of every service a voter serves is in the table, and each
// one not open to anyone is refused without its credential — or with the
// wrong one — over real gRPC, streams included, before it changes
// anything.
func TestAuthorizationTable(t *testing.T) {
	wiretest.RequireComplete(t, Authorization, controlServices...)

	c := newCluster(t, "v1")
	leader := c.leader()
	addr, stop := serveGRPC(t, leader)
	defer stop()
	awaitAnnounced(t, leader, addr)
	conn := dial(t, addr)
	c.registerNode("n1", 1) // some state to change
	before := fingerprint(t, leader.FSM())
	applied, _ := leader.FSM().AppliedIndex()

	calls := wiretest.RequireRefusedWithout(context.Background(), t, conn, Authorization, controlServices...)
	if calls < 25 {
		t.Fatalf("called %d methods; the services have more", calls)
	}
	wiretest.RequireRefusedWithout(operator(context.Background(), "not-the-token"), t, conn, Authorization, controlServices...)

	if after, _ := leader.FSM().AppliedIndex(); after != applied {
		t.Fatalf("refused calls moved the applied index from %d to %d", applied, after)
	}
	if got := fingerprint(t, leader.FSM()); got != before {
		t.Fatal("refused calls changed the state")
	}
}
