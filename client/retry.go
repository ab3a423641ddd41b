package client

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The control plane's metadata keys (committee/service.go): the bearer
// credential, and the command ID that makes a retried write return the
// first attempt's outcome instead of applying twice.
const (
	mdAuthorization = "authorization"
	mdRequestID     = "weft-request-id"
)

// transient reports whether an error is worth trying again as is: the
// peer was unreachable or did not answer in time. Everything else is an
// answer, and asking again would get the same one — ResourceExhausted
// included: the control plane says so of a spent quota, and a storage
// node of a writer over its limits or of a write it has no room for (a
// full node: the store goes on with the other nodes). A node refusing a blob because a
// challenge round samples it answers Unavailable too, but will answer the
// same until the round closes: Read waits for that instead.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return !embargoed(err)
	case codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// embargoed reports a storage node's refusal of a blob under an open
// challenge round.
func embargoed(err error) bool {
	return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "under storage challenge")
}

// delay is the wait before retry number attempt (1-based): exponential
// from cfg.Backoff, capped, with ±25% jitter so that many clients that
// failed together do not come back together.
func (c *Client) delay(attempt int) time.Duration {
	d := c.cfg.Backoff << min(attempt-1, 20)
	if d <= 0 || d > c.cfg.MaxBackoff {
		d = c.cfg.MaxBackoff
	}
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryPolicy says which failures of one call are tried again.
type retryPolicy struct {
	attempts int                  // total tries, ≥ 1
	also     func(err error) bool // beyond transient ones; nil: none
}

func (c *Client) policy(also func(error) bool) retryPolicy {
	return retryPolicy{attempts: 1 + c.cfg.Retries, also: also}
}

// retry runs f with a fresh per-call timeout until it succeeds, fails for
// a reason the policy does not retry, or the attempts run out. The last
// error is returned as is (its gRPC status intact), annotated with the
// number of attempts when there were several.
func (c *Client) retry(ctx context.Context, timeout time.Duration, p retryPolicy, f func(ctx context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if attempt >= p.attempts || !(transient(err) || (p.also != nil && p.also(err))) {
			if attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		c.log.Debug("retrying", "attempt", attempt, "err", err)
		if serr := sleep(ctx, c.delay(attempt)); serr != nil {
			return errors.Join(serr, err)
		}
	}
}

// controlCall runs one control-plane call, moving through the voters from
// the last one that answered; a round where every voter failed
// transiently is retried after a backoff. A voter's answer, even an error,
// ends the call: followers forward writes, so any voter speaks for the
// cluster.
//
// The rounds are Config.Retries, or as many as the caller's deadline
// leaves time for if it has one: a leader election, or voters restarting
// one after another, outlasts a few backoffs, and a caller that gave a
// store two minutes should not see it fail after five seconds.
func (c *Client) controlCall(ctx context.Context, what string, f func(ctx context.Context, conn *grpc.ClientConn) error) error {
	addrs := c.cfg.Control
	var errs []error
	for round := 0; c.anotherRound(ctx, round); round++ {
		if round > 0 {
			if err := sleep(ctx, c.delay(round)); err != nil {
				return fmt.Errorf("%s: %w", what, errors.Join(append(errs, err)...))
			}
		}
		errs = errs[:0]
		start := int(c.preferred.Load())
		for k := range addrs {
			i := (start + k) % len(addrs)
			conn, err := c.conn(ctx, addrs[i])
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, c.cfg.ControlTimeout)
			err = f(cctx, conn)
			cancel()
			if err == nil || !transient(err) || ctx.Err() != nil {
				if err == nil {
					c.preferred.Store(int32(i))
					return nil
				}
				return fmt.Errorf("%s (control plane %s): %w", what, addrs[i], err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", addrs[i], err))
		}
	}
	return fmt.Errorf("%s: no control-plane voter answered: %w", what, errors.Join(errs...))
}

// anotherRound reports whether round number round (0: the first) of a
// control-plane call is tried: within Config.Retries, or, when retries
// are on and the context has a deadline, while the deadline leaves room
// for the backoff before it and a call.
func (c *Client) anotherRound(ctx context.Context, round int) bool {
	if round <= c.cfg.Retries {
		return true
	}
	deadline, ok := ctx.Deadline()
	if c.cfg.Retries == 0 || !ok {
		return false
	}
	backoff := c.cfg.Backoff << min(round-1, 20)
	if backoff <= 0 || backoff > c.cfg.MaxBackoff {
		backoff = c.cfg.MaxBackoff
	}
	return time.Until(deadline) > backoff
}

// writeContext adds the client credential and a command ID to a write.
// The same ID is sent on every retry of one logical write, so the control
// plane applies it once whichever voter or attempt gets through.
func (c *Client) writeContext(ctx context.Context, requestID string) (context.Context, error) {
	ctx, err := c.authContext(ctx)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, mdRequestID, requestID), nil
}

// authContext adds the client credential to a call.
func (c *Client) authContext(ctx context.Context) (context.Context, error) {
	if err := c.requireToken(ctx, "call the control plane as a client"); err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, mdAuthorization, "Bearer "+c.token(ctx)), nil
}

// requireToken refuses, before any work, what needs a client token.
func (c *Client) requireToken(ctx context.Context, to string) error {
	if c.token(ctx) == "" {
		return fmt.Errorf("client: a client token is required to %s (Config.Token or WithToken)", to)
	}
	return nil
}

type tokenKey struct{}

// WithToken returns a context whose stores, extensions and quota reads
// are made with token as the client credential, and charged to it,
// instead of Config.Token. A server acting for many clients (the HTTP
// gateway) charges each caller's writes to the caller this way, sharing
// one Client and its connections. An empty token means none: the call is
// refused rather than charged to Config.Token.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// token is the credential calls with ctx are made with.
func (c *Client) token(ctx context.Context) string {
	if t, ok := ctx.Value(tokenKey{}).(string); ok {
		return t
	}
	return c.cfg.Token
}

// newRequestID is a write's command ID: the time, then 8 random bytes.
// The control plane keeps each recent command's result keyed by its ID
// (committee/DESIGN.md): IDs that grow with time land at the end of that
// key range, where bbolt appends to the last page, instead of each on a
// random page of its own — one page written per insert, for as many
// registrations as the control plane applies.
func newRequestID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = crand.Read(b[8:])
	return "client-" + hex.EncodeToString(b[:])
}
