package committee

import (
	"context"
	"net"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Registration attempts need no credential but a key the caller made
// itself, and an accepted one writes to the log of every voter: each peer
// address gets a token bucket. The buckets of the most recent peers are
// kept (an LRU), so the limiter's memory is bounded whatever the number
// of addresses that call.
const (
	defaultRegistrationRate  = 2  // attempts a second, per peer address
	defaultRegistrationBurst = 50 // a devnet registers all its nodes at once from one address
	registrationPeers        = 4096
)

type peerLimiter struct {
	limit rate.Limit
	burst int
	peers *lru.Cache[string, *rate.Limiter]
}

func newPeerLimiter(perSecond float64, burst int) *peerLimiter {
	peers, _ := lru.New[string, *rate.Limiter](registrationPeers)
	return &peerLimiter{limit: rate.Limit(perSecond), burst: burst, peers: peers}
}

// allow takes a token of the caller's address, or refuses the call
// (ResourceExhausted, naming the address and the rate).
func (l *peerLimiter) allow(ctx context.Context) error {
	addr := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
	}
	lim, ok := l.peers.Get(addr)
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.peers.Add(addr, lim)
	}
	if !lim.Allow() {
		return status.Errorf(codes.ResourceExhausted, "too many registration attempts from %s (at most %g a second, bursts of %d); retry later", addr, float64(l.limit), l.burst)
	}
	return nil
}
