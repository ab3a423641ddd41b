package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/weftstore/weft/internal/atomicfile"
)

// Nonces hands out the nonces of a node's signed requests. The control
// plane takes a node's requests only with a nonce above the last one it
// took (a replay is refused), and a peer serving a shard sync does the
// same, so nonces must only grow — whatever the wall clock does.
//
// Each nonce is the clock's Unix nanoseconds or one above the previous
// nonce, whichever is more: a clock stepped back an hour only slows the
// nonces' growth to one a request until the clock passes them again.
// Opened on a file (OpenNonces), the nonces also grow across restarts:
// before a nonce is handed out, a ceiling above it is on disk, and a
// restarted node starts above that ceiling — so a node whose clock went
// back while it was down is not refused as a replayer.
type Nonces struct {
	now func() time.Time

	mu       sync.Mutex
	last     uint64 // the last nonce handed out
	ceiling  uint64 // every nonce handed out is at most this (durable ones: on disk)
	path     string // "" for nonces kept in memory only
	reserved uint64 // how far above a nonce a new ceiling is put
}

// nonceReserve is how far ahead of the nonce that needs it a durable
// ceiling is written: one write per minute of clock at most.
const nonceReserve = uint64(time.Minute)

// NewNonces returns nonces kept in memory, read from now (nil: time.Now).
func NewNonces(now func() time.Time) *Nonces {
	if now == nil {
		now = time.Now
	}
	return &Nonces{now: now}
}

// OpenNonces returns nonces whose ceiling is kept in the file at path
// (created on first use), read from now (nil: time.Now).
func OpenNonces(path string, now func() time.Time) (*Nonces, error) {
	n := NewNonces(now)
	n.path, n.reserved = path, nonceReserve
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("control: reading the nonce ceiling: %w", err)
	case len(b) != 8:
		return nil, fmt.Errorf("control: nonce ceiling file %s holds %d bytes, not 8", path, len(b))
	default:
		n.ceiling = binary.BigEndian.Uint64(b)
		n.last = n.ceiling
	}
	return n, nil
}

// Next returns a nonce above every one handed out before, from this
// process or — for durable nonces — any earlier one.
func (n *Nonces) Next() (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v := max(uint64(max(n.now().UnixNano(), 0)), n.last+1)
	if n.path != "" && v > n.ceiling {
		ceiling := v + n.reserved
		if err := atomicfile.Write(n.path, binary.BigEndian.AppendUint64(nil, ceiling), 0o600); err != nil {
			return 0, fmt.Errorf("control: recording the nonce ceiling: %w", err)
		}
		n.ceiling = ceiling
	}
	n.last = v
	return v, nil
}
