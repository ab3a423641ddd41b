package storage

// Space: what a node offers (its declared capacity, --capacity), what its
// store uses, and what it refuses when it has no room left.
//
// Used is what the store counts: the bbolt file's size (metadata, small
// slivers, pointers: everything up to its high-water page) plus the value
// log's live bytes (padded records a committed pointer refers to) plus the
// appends in flight (reserved, not yet committed or given back). Free is
// the room for new writes: capacity − used when a capacity is declared,
// and never more than the file system has free, less a headroom kept so
// that bbolt can still commit on a full disk (deleting needs pages too).
//
// A write that does not fit is refused before a byte of it is written
// (ErrNoSpace, ResourceExhausted on the wire): the value log asks before
// each append, under its lock, so concurrent appends cannot all take the
// last bytes; a write that still hits ENOSPC or EDQUOT from the file
// system (another process filled the disk) fails the same way, with its
// reservation punched out and no pointer committed. Nothing is confirmed
// or signed for a refused write. Reads never ask.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// ErrNoSpace is a write refused because the node has no room for it: its
// declared capacity is used up, or its file system is full.
var ErrNoSpace = errors.New("storage: no space left for the write")

// NoSpaceError is a write refused for space. errors.Is(err, ErrNoSpace)
// holds.
type NoSpaceError struct {
	Node     string // the node's ID, when the store knows it
	Asked    int64  // bytes the write needed
	Free     int64  // bytes the node could still take
	Capacity int64  // the declared capacity; 0: none (the disk is the limit)
	Used     int64
	Cause    error // the file system's error (ENOSPC, EDQUOT); nil: refused before writing
}

func (e *NoSpaceError) Error() string {
	node := ""
	if e.Node != "" {
		node = " on node " + e.Node
	}
	limit := "no capacity declared: the disk is the limit"
	if e.Capacity > 0 {
		limit = fmt.Sprintf("capacity %d bytes (--capacity)", e.Capacity)
	}
	if e.Cause != nil {
		return fmt.Sprintf("storage: the disk is full%s: a write of %d bytes failed (%v); %d bytes used, %s; nothing of it was kept — retry on another node or once space is freed",
			node, e.Asked, e.Cause, e.Used, limit)
	}
	return fmt.Sprintf("storage: no room%s for a write of %d bytes: %d bytes free, %d used, %s; nothing of it was kept — retry on another node or once space is freed",
		node, e.Asked, e.Free, e.Used, limit)
}

func (e *NoSpaceError) Unwrap() []error {
	if e.Cause != nil {
		return []error{ErrNoSpace, e.Cause}
	}
	return []error{ErrNoSpace}
}

// diskHeadroom is file-system space a store leaves free: bbolt needs
// pages to commit the deletions that give space back. A variable for the
// tests that fill a small file system.
var diskHeadroom int64 = 8 << 20

// Usage is a store's space, in bytes.
type Usage struct {
	Capacity int64 // declared; 0: none (the file system is the limit)
	Used     int64 // bbolt's file plus the value log's live and in-flight bytes
	Free     int64 // room for new writes (≥ 0)
	DiskFree int64 // the file system's free bytes for the node; -1: unknown
}

// space is a Store's capacity and its refusal counters.
type space struct {
	node     string
	capacity atomic.Int64
	// diskCheck: ask the file system's free space before a write (off
	// only in the test that makes writes hit ENOSPC for real).
	diskCheck   atomic.Bool
	dbBytes     atomic.Int64 // bbolt's pages in use, as last measured
	dbFree      atomic.Int64 // bbolt's free pages: reused before the file grows
	refusals    atomic.Int64 // writes refused for space, since open
	lastRefused atomic.Int64 // unix nanoseconds of the last refusal
	lastAsked   atomic.Int64 // bytes the last refused write asked for
}

// SetCapacity declares the most the store keeps (0: no limit but the
// disk's) and the node ID its refusals name.
func (s *Store) SetCapacity(node string, capacity int64) error {
	if capacity < 0 {
		return fmt.Errorf("storage: capacity %d bytes: want 0 (the disk's free space) or more", capacity)
	}
	s.space.node = node
	s.space.capacity.Store(capacity)
	return nil
}

// initSpace hooks the space check into the value log; openWith calls it.
func (s *Store) initSpace() {
	s.space.diskCheck.Store(true)
	s.values.admit = func(size, reserved int64) error {
		return s.admit(size, reserved)
	}
}

// measureDB records bbolt's use: its pages up to the high-water mark (what
// it occupies on disk; the file may be longer, but sparse) less its free
// pages, which it reuses before it grows — a deletion gives space back to
// bbolt, not to the file system.
func (s *Store) measureDB() {
	var size, pageSize int64
	_ = s.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		// Info reads the mmap's address: only under a transaction, which
		// holds off a remap (DB.Info alone races with one).
		pageSize = int64(tx.DB().Info().PageSize)
		return nil
	})
	free := min(int64(s.db.Stats().FreePageN)*pageSize, size)
	s.space.dbBytes.Store(size - free)
	s.space.dbFree.Store(free)
}

// Usage reports the store's space.
func (s *Store) Usage() Usage {
	s.measureDB()
	s.values.mu.Lock()
	reserved := s.values.reserved
	s.values.mu.Unlock()
	return s.usage(reserved)
}

// usage computes Usage from the last bbolt measure and the reserved bytes.
func (s *Store) usage(reserved int64) Usage {
	u := Usage{Capacity: s.space.capacity.Load(), DiskFree: -1}
	u.Used = s.space.dbBytes.Load() + s.values.live.Load() + reserved
	u.Free = int64(1<<62 - 1)
	if u.Capacity > 0 {
		u.Free = u.Capacity - u.Used
	}
	if free, ok := diskFree(s.values.dir); ok {
		u.DiskFree = free
		if s.space.diskCheck.Load() {
			u.Free = min(u.Free, free-diskHeadroom+s.space.dbFree.Load())
		}
	}
	u.Free = max(u.Free, 0)
	if u.Capacity == 0 && u.DiskFree < 0 {
		u.Free = 0 // unknown: report none rather than a made-up figure (writes are not refused for it)
	}
	return u
}

// admit refuses a write of size bytes the node has no room for; reserved
// is what other writes in flight hold. Called with the value log's lock
// held (for appends) or before inline writes.
func (s *Store) admit(size, reserved int64) error {
	u := s.usage(reserved)
	if u.Capacity == 0 && u.DiskFree < 0 {
		return nil // nothing to measure against
	}
	if size <= u.Free {
		return nil
	}
	return s.refuse(&NoSpaceError{Asked: size, Free: u.Free, Capacity: u.Capacity, Used: u.Used})
}

func (s *Store) refuse(e *NoSpaceError) error {
	e.Node = s.space.node
	s.space.refusals.Add(1)
	s.space.lastAsked.Store(e.Asked)
	s.space.lastRefused.Store(time.Now().UnixNano())
	return e
}

// CheckRoom refuses (ErrNoSpace) a write of size bytes the store has no
// room for now, before anything is received or fetched for it: a writer's
// metadata announcing its pairs, a recovery about to fetch symbols. The
// write itself is checked again when its bytes go to disk.
func (s *Store) CheckRoom(size int64) error {
	s.measureDB()
	s.values.mu.Lock()
	defer s.values.mu.Unlock()
	return s.admit(size, s.values.reserved)
}

// noSpace turns a file system's "no space" (ENOSPC, EDQUOT) into a
// NoSpaceError; any other error is returned as it is.
func (s *Store) noSpace(err error, asked int64) error {
	if err == nil || errors.Is(err, ErrNoSpace) || !isNoSpace(err) {
		return err
	}
	u := s.Usage()
	return s.refuse(&NoSpaceError{Asked: asked, Free: u.Free, Capacity: u.Capacity, Used: u.Used, Cause: err})
}

// SpaceRefusals is how many writes the store refused for space since it
// opened, and when the last one was (zero: never).
func (s *Store) SpaceRefusals() (int64, time.Time) {
	n, at := s.space.refusals.Load(), s.space.lastRefused.Load()
	if at == 0 {
		return n, time.Time{}
	}
	return n, time.Unix(0, at)
}

// pairDiskBytes is about what one sliver pair of a blob of the given
// length takes in the store: both slivers, each a padded value-log record
// with its header.
func pairDiskBytes(p coding.Params, length uint64) int64 {
	symbol, err := p.SymbolSize(length)
	if err != nil {
		return 0
	}
	var total int64
	for _, axis := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
		total += padded(int64(p.SliverSymbols(axis))*int64(symbol) + 64)
	}
	return total
}

// roomForBlob refuses, before anything is received, a writer whose blob
// the node cannot take: its metadata (unless already stored) and pairs
// on the given number of shards.
func (s *Store) roomForBlob(meta *crypto.Metadata, pairs int) error {
	codec, err := s.codecs.ForMetadata(meta)
	if err != nil {
		return nil // refused as invalid elsewhere
	}
	need := int64(pairs)*pairDiskBytes(codec.Params(), meta.Length) + 64*int64(meta.Shards)
	return s.CheckRoom(need)
}

// appendChecked appends records to the value log once the space check
// admits them and extra bytes more (the batch's inline slivers).
func (s *Store) appendChecked(records []valueRecord, extra int64) ([]extent, *reservation, error) {
	if extra == 0 {
		return s.values.append(records)
	}
	s.values.mu.Lock()
	s.values.reserved += extra // counted with the batch while the log's check runs
	s.values.mu.Unlock()
	defer func() {
		s.values.mu.Lock()
		s.values.reserved -= extra
		s.values.mu.Unlock()
	}()
	return s.values.append(records)
}

// noSpaceRetry is how long recovery and handover wait after a write was
// refused for space before trying again: space comes back with deletions
// and compaction (epochs), or an operator, not within seconds — and each
// attempt costs peers their symbols or the holder its slivers.
var noSpaceRetry = 15 * time.Second

// retryWait is how long a background writer waits after err before
// trying again: noSpaceRetry for a refusal for space, usual otherwise.
func retryWait(err error, usual time.Duration) time.Duration {
	if errors.Is(err, ErrNoSpace) {
		return max(usual, noSpaceRetry)
	}
	return usual
}

// registerSpaceMetrics exports the store's space: capacity, used and free
// bytes (read at each scrape) and the writes refused for space.
func (n *Node) registerSpaceMetrics() {
	st := n.store
	n.metrics.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_storage_capacity_bytes", Help: "The capacity the node declares (--capacity); 0: none, the disk's free space is the limit."},
			func() float64 { return float64(st.space.capacity.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_storage_used_bytes", Help: "Bytes the node's store uses: its bbolt file and the value log's live and in-flight records."},
			func() float64 { return float64(st.Usage().Used) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_storage_free_bytes", Help: "Bytes the node can still take: what its capacity leaves, at most the disk's free space less a headroom."},
			func() float64 { return float64(st.Usage().Free) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_storage_writes_refused_no_space_total", Help: "Writes (client pairs and metadata, recovery, handover) refused because the node had no room: capacity used up or disk full."},
			func() float64 { n, _ := st.SpaceRefusals(); return float64(n) }),
	)
}

// watchSpace logs when the node starts refusing writes for space and when
// it has room again, once each — not once per refused write.
func (n *Node) watchSpace(ctx context.Context) {
	const every = 5 * time.Second
	t := time.NewTicker(every)
	defer t.Stop()
	full := false
	var seen int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		refused, _ := n.store.SpaceRefusals()
		u := n.store.Usage()
		switch {
		case refused > seen && !full:
			full = true
			n.log.Warn("storage: OUT OF SPACE — refusing writes (clients store on the other nodes; recovery and handover wait); delete blobs, free the disk or restart with a larger --capacity",
				"capacity", u.Capacity, "used", u.Used, "free", u.Free, "disk_free", u.DiskFree, "refused", refused-seen)
		case refused == seen && full && u.Free >= n.store.space.lastAsked.Load():
			full = false
			n.log.Info("storage: space available again; taking writes", "capacity", u.Capacity, "used", u.Used, "free", u.Free)
			n.recovery.wake()
		}
		seen = refused
	}
}

// recordBytes is what records take in the value log, padded.
func recordBytes(records []valueRecord) int64 {
	var total int64
	for _, r := range records {
		total += padded(int64(r.len()))
	}
	return total
}
