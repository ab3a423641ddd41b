package client

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/weftstore/weft/crypto"
)

// DefaultIdleConnTimeout is how long a cached connection to a storage node
// may go without a call before it is closed (Config.IdleConnTimeout).
const DefaultIdleConnTimeout = 5 * time.Minute

// maxCachedViews bounds the committee views a client keeps: a long-running
// client (a gateway) sees an epoch after another for years.
const maxCachedViews = 64

// cachedConn is a connection and when a caller last took it.
type cachedConn struct {
	cc   *grpc.ClientConn
	used time.Time
}

// idleDialOption makes gRPC itself count the calls on a connection: with no
// call open for the idle timeout it closes the transport and enters the
// Idle state, which is how the sweep knows that no stream — however long —
// still uses a connection it has not handed out lately.
func (c *Client) idleDialOption() grpc.DialOption {
	return grpc.WithIdleTimeout(c.cfg.IdleConnTimeout)
}

// sweepConnsLocked closes the connections no caller took for the idle
// timeout and that gRPC found idle too: nodes that left the committee, or
// a gateway's peers of long ago. Without it a client serving for months
// keeps a connection (and its goroutines) for every node it ever met. It
// runs at most once per half timeout, so its cost is spread over calls.
// c.mu is held.
func (c *Client) sweepConnsLocked(now time.Time) {
	if now.Sub(c.swept) < c.cfg.IdleConnTimeout/2 {
		return
	}
	c.swept = now
	for addr, e := range c.conns {
		if now.Sub(e.used) < c.cfg.IdleConnTimeout || e.cc.GetState() != connectivity.Idle {
			continue
		}
		delete(c.conns, addr)
		if err := e.cc.Close(); err != nil {
			c.log.Debug("closing an idle connection", "addr", addr, "err", err)
		}
	}
}

// cacheViewLocked keeps an epoch's committee view, dropping the oldest
// epoch's when maxCachedViews are held (it is fetched again if a
// certificate of that epoch comes along). c.mu is held.
func (c *Client) cacheViewLocked(epoch uint64, view *crypto.CommitteeView) {
	c.views[epoch] = view
	if len(c.views) <= maxCachedViews {
		return
	}
	oldest := epoch
	for e := range c.views {
		oldest = min(oldest, e)
	}
	delete(c.views, oldest)
}
