package committee

import (
	"testing"
	"time"
)

// A round opened by a leader whose wall clock reads an hour ahead of this
// one's — or, the same to this voter, this voter's clock stepped back an
// hour since — closes one window after this voter saw it open, not an
// hour later: the window runs on the monotonic clock.
func TestSchedulerChallengeWindowIgnoresTheWallClock(t *testing.T) {
	const window = time.Second
	c := newCluster(t, "solo")
	c.registerNode("storage", 5)
	c.propose(KindAdvanceEpoch, plannedEpoch(t, c))
	c.propose(KindStartChallenge, StartChallenge{At: time.Now().Add(time.Hour).UnixNano(), Fresh: [32]byte{7}})
	n := c.leader()
	if r, found, _, _ := n.FSM().Challenge(0); !found || !r.Open {
		t.Fatalf("round not open: %+v", r)
	}
	start := time.Now()
	_, rec := schedule(t, c, "solo", SchedulerConfig{ChallengeWindow: window})
	waitUntil(t, 15*time.Second, "the round closed by the timer", func() bool {
		r, _, _, _ := n.FSM().Challenge(0)
		return !r.Open && rec.count("challenge timer: round closed") > 0
	})
	if took := time.Since(start); took < window {
		t.Fatalf("the round closed %s after the timer first saw it, before the window of %s", took, window)
	}
}
