package client

import (
	"sync"
	"time"
)

// StoreStats breaks a store down by stage. Durations are wall-clock time
// on the caller's goroutine: the per-node work inside Transfer and Confirm
// runs in parallel.
type StoreStats struct {
	Encode   time.Duration // Red Stuff encoding and commitments
	Register time.Duration // RegisterBlob and the status check after it
	// Transfer runs until the last node that succeeded had verified and
	// stored its pairs (metadata and pairs on the wire, node-side checks).
	Transfer time.Duration
	// Confirm runs from then until the certificate was built: the last
	// confirmations, their signature checks and the aggregation.
	Confirm time.Duration
	Certify time.Duration // CertifyBlob
	Total   time.Duration

	Length    uint64 // blob bytes
	SentBytes int64  // sliver bytes sent to nodes, retries included
	Epoch     uint64 // the epoch the certificate is for
	Rounds    int    // committees written to (more than 1 after an epoch change)
	Signers   int    // nodes in the certificate
	Confirmed uint64 // shards in the certificate
	// Grace is how long the store would wait for the remaining nodes once
	// a write quorum had signed (0: none remained, or StragglerWait < 0),
	// Waited how long it did: until they all answered, the grace ran out,
	// or every node still working was far behind (it had not taken the
	// metadata yet). CutOff are the nodes still working then (they
	// rebuild their pairs from their peers).
	Grace  time.Duration
	Waited time.Duration
	CutOff []string
	// AlreadyCertified is set when the blob was certified before this
	// store began: nothing was sent, the existing certificate returned.
	AlreadyCertified bool
	// Object is the client's blob object of the blob: the one this store
	// created, or the one it owned already and reused.
	Object uint64
}

// ReadStats breaks a read down by stage, as StoreStats does.
type ReadStats struct {
	Lookup   time.Duration // blob status, committee and shard holders
	Metadata time.Duration // fetching metadata until one matched the ID
	Fetch    time.Duration // fetching primary slivers
	// Verify is time spent checking slivers one by one (summed over the
	// goroutines that check slivers as they arrive). The optimistic path
	// decodes unverified slivers and lets the consistent-read check vouch
	// for them, so it is zero unless a node sent a bad sliver.
	Verify time.Duration
	// Decode includes the consistent-read check (re-encoding the bytes and
	// matching every pair hash): coding.Decode never returns bytes without
	// it, so the two cannot be timed apart here.
	Decode time.Duration
	Total  time.Duration

	Length        uint64
	ReceivedBytes int64 // sliver bytes received, bad ones included
	Slivers       int   // primary slivers fetched (good or bad)
	BadSlivers    int   // slivers that failed verification
	Decodes       int   // decode attempts (1 when every node told the truth)
	// Hedged is how many slivers beyond nP the read allowed itself
	// because fetches stalled (at most f; 0: none stalled), and
	// StalledNodes the nodes whose fetches were in flight when they did,
	// in the order first seen (DESIGN.md, Hedging and deadlines).
	Hedged       int
	StalledNodes []string
	// RangeFallback is why a range read read the whole blob: a sliver
	// that holds part of the range could not be had (nil: only those
	// slivers were fetched).
	RangeFallback error
}

// progress reports bytes done out of a total to a caller's callback; it
// serializes calls, which arrive from many node goroutines.
type progress struct {
	mu          sync.Mutex
	fn          func(done, total int64)
	done, total int64
}

func newProgress(fn func(done, total int64)) *progress { return &progress{fn: fn} }

// grow adds to the total: more bytes that will be sent or received.
func (p *progress) grow(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

func (p *progress) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// stop ends the reports: work still finishing after the operation has
// returned must not call back into a caller that has moved on.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fn = nil
}

func (p *progress) bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}
