package committee

import (
	"context"
	"sync"
	"time"
)

// indexNotifier lets any number of watchers block until the state index
// passes theirs: each update closes the channel they wait on. An idle
// watcher costs a parked goroutine and nothing else.
type indexNotifier struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{}
}

func newIndexNotifier(index uint64) *indexNotifier {
	return &indexNotifier{index: index, ch: make(chan struct{})}
}

func (n *indexNotifier) set(index uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if index > n.index {
		n.index = index
		close(n.ch)
		n.ch = make(chan struct{})
	}
}

// wait returns the index once it is above after, or when timeout passes or
// ctx ends (then the index as it stands).
func (n *indexNotifier) wait(ctx context.Context, after uint64, timeout time.Duration) uint64 {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		n.mu.Lock()
		index, ch := n.index, n.ch
		n.mu.Unlock()
		if index > after {
			return index
		}
		select {
		case <-ch:
		case <-timer.C:
			return index
		case <-ctx.Done():
			return index
		}
	}
}
