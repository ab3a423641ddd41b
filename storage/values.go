package storage

// The value log: the bytes of large slivers live outside bbolt, in
// append-only segment files, and bbolt keeps a small pointer (an extent) in
// their place. bbolt copies every value into freshly allocated pages, writes
// them through the page cache and copies them again when it remaps; for
// slivers of megabytes that was most of a node's CPU during a store. Here a
// batch of records is one aligned write with O_DIRECT (where the file
// system takes it), then one fsync per segment written, before the bbolt
// transaction that points at it commits.
//
// Space: records are padded to 4 KiB, so a deleted one is given back to the
// file system by punching a hole. bbolt counts each segment's live bytes in
// the transactions that add and drop pointers, and records every dropped
// extent (the "freed" list) in the dropping transaction; after the commit
// the holes are punched and the list emptied, and a sealed segment with no
// live bytes is removed. A crash between the two steps leaves the list to
// the next open, which punches again (idempotent: extents are never reused,
// nor are segment numbers). A crash after a write and before its commit
// leaves unreferenced bytes in the segment, reclaimed when the segment's
// live bytes reach zero.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

const (
	valueAlign    = 4096 // O_DIRECT alignment and the hole-punching unit
	extentTag     = 0xE5 // first byte of a pointer; an inline sliver starts with its version
	extentLen     = 1 + 4 + 8 + 4 + 4
	segmentSuffix = ".seg"
)

// Variables, not constants, so that the package's tests can send every
// sliver through the value log and roll segments often (TestMain).
var (
	defaultInlineMax   = 32 << 10 // encoded slivers up to this size stay in bbolt
	defaultSegmentSize = int64(1 << 30)
)

var (
	bucketValues = []byte("values") // the value log's accounting
	keyNextSeg   = []byte("next")   // u32: the next segment number
	keyClean     = []byte("clean")  // present: the log was closed with no append in flight
	keyRunFrom   = []byte("run")    // u32: the first segment number of the run since the last open
	subLive      = []byte("live")   // u32 segment → u64 live (padded) bytes
	subFreed     = []byte("freed")  // u32 segment ‖ u64 offset → u64 padded length

	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// errValueGone is a read of an extent whose bytes are no longer there: the
// pointer was dropped while the read was under way.
var errValueGone = errors.New("storage: value deleted during the read")

// errValueCorrupt is a read whose bytes fail their CRC: either the disk
// returned other bytes, or a deletion punched the extent's hole during the
// read — the caller tells the two apart by whether its pointer is still
// there.
var errValueCorrupt = errors.New("storage: value fails its CRC-32C")

// errNoRecord is a pointer that names no record: its segment does not
// exist, or the extent does not lie within the segment file. A pointer is
// committed only after its record is written and synced, so — unless the
// pointer was dropped during the read — the pointer is corrupt (or the
// file lost), and dropping it must free nothing: its extent is not one the
// log counts.
var errNoRecord = errors.New("storage: value pointer names no record")

// extent locates one record in the value log.
type extent struct {
	seg    uint32
	off    int64
	length uint32 // record bytes, without padding
	crc    uint32 // CRC-32C of the record
}

func (e extent) padded() int64 { return padded(int64(e.length)) }

func padded(n int64) int64 { return (n + valueAlign - 1) / valueAlign * valueAlign }

// marshal is the pointer stored in bbolt:
// u8 tag ‖ u32 segment ‖ u64 offset ‖ u32 length ‖ u32 crc, big-endian.
func (e extent) marshal() []byte {
	b := make([]byte, 1, extentLen)
	b[0] = extentTag
	b = binary.BigEndian.AppendUint32(b, e.seg)
	b = binary.BigEndian.AppendUint64(b, uint64(e.off))
	b = binary.BigEndian.AppendUint32(b, e.length)
	return binary.BigEndian.AppendUint32(b, e.crc)
}

// parseExtent reads a pointer; ok is false for an inline value.
func parseExtent(v []byte) (e extent, ok bool, err error) {
	if len(v) == 0 || v[0] != extentTag {
		return extent{}, false, nil
	}
	if len(v) != extentLen {
		return extent{}, true, fmt.Errorf("storage: value pointer of %d bytes, want %d", len(v), extentLen)
	}
	e = extent{
		seg:    binary.BigEndian.Uint32(v[1:5]),
		off:    int64(binary.BigEndian.Uint64(v[5:13])),
		length: binary.BigEndian.Uint32(v[13:17]),
		crc:    binary.BigEndian.Uint32(v[17:21]),
	}
	if e.off%valueAlign != 0 || e.off < 0 {
		return extent{}, true, fmt.Errorf("storage: value pointer at unaligned offset %d", e.off)
	}
	return e, true, nil
}

// valueLog is the set of segment files. Safe for concurrent use.
type valueLog struct {
	dir     string
	db      *bolt.DB
	segSize int64

	mu       sync.Mutex
	direct   bool // open segments with O_DIRECT (false once the file system refused it)
	files    map[uint32]*os.File
	active   uint32 // the segment appends go to; 0: none yet
	tail     int64  // the next free offset of the active segment
	inflight map[uint32]int
	reserved int64 // bytes of reservations not yet released

	// live is the committed live bytes of every segment (the sum of
	// subLive), kept up to date by the transactions that change them.
	live atomic.Int64
	// admit, when set, is asked under mu before an append of size bytes
	// takes its place, with the bytes other appends have reserved: it
	// refuses an append the node has no room for (capacity.go).
	admit func(size, reserved int64) error
}

func openValueLog(dir string, db *bolt.DB, segSize int64) (*valueLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l := &valueLog{dir: dir, db: db, segSize: segSize, direct: directIO != 0,
		files: map[uint32]*os.File{}, inflight: map[uint32]int{}}
	clean, lastRunFrom := false, uint32(0)
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketValues)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{subLive, subFreed} {
			if _, err := b.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		clean = b.Get(keyClean) != nil
		if v := b.Get(keyRunFrom); len(v) == 4 {
			lastRunFrom = binary.BigEndian.Uint32(v)
		}
		next := []byte{0, 0, 0, 1}
		if v := b.Get(keyNextSeg); len(v) == 4 {
			next = v
		}
		if err := b.Put(keyRunFrom, bytes.Clone(next)); err != nil {
			return err
		}
		var live int64
		if err := b.Bucket(subLive).ForEach(func(_, v []byte) error {
			if len(v) == 8 {
				live += int64(binary.BigEndian.Uint64(v))
			}
			return nil
		}); err != nil {
			return err
		}
		l.live.Store(live)
		return b.Delete(keyClean) // until the next clean close
	})
	if err != nil {
		return nil, err
	}
	// What a crash left: holes not yet punched, appends that never
	// committed, then segments nothing points at (no writer is running
	// yet, so none is being filled).
	if err := l.reclaim(); err != nil {
		return nil, err
	}
	if !clean {
		if err := l.trimOrphans(lastRunFrom); err != nil {
			return nil, err
		}
	}
	return l, l.removeDeadSegments()
}

// trimOrphans gives back the bytes of appends a crash left without the
// commit that would have pointed at them. Appends go only to segments
// created since the log was last opened (numbers from runFrom on; all of
// them when unknown), so in those every range no stored pointer covers is
// punched out. Finding the pointers takes one pass over the store, done
// only after an unclean shutdown.
func (l *valueLog) trimOrphans(runFrom uint32) error {
	segs, err := l.segmentNumbers()
	if err != nil || len(segs) == 0 {
		return err
	}
	first, _ := slices.BinarySearch(segs, runFrom)
	recent := segs[first:]
	if len(recent) == 0 {
		return nil
	}
	live := map[uint32][]extent{}
	for _, seg := range recent {
		live[seg] = nil
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		shards := tx.Bucket(bucketShards)
		if shards == nil {
			return nil
		}
		return shards.ForEachBucket(func(k []byte) error {
			for _, name := range [][]byte{subPrimary, subSecondary} {
				b := shards.Bucket(k).Bucket(name)
				if b == nil {
					continue
				}
				if err := b.ForEach(func(_, v []byte) error {
					if e, external, err := parseExtent(v); err == nil && external {
						if exts, ok := live[e.seg]; ok {
							live[e.seg] = append(exts, e)
						}
					}
					return nil
				}); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for seg, exts := range live {
		if err := l.punchGaps(seg, exts); err != nil {
			return err
		}
	}
	return nil
}

// punchGaps punches every range of segment seg that no extent covers.
// Callers hold mu.
func (l *valueLog) punchGaps(seg uint32, exts []extent) error {
	f, err := l.file(seg, false)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		return err
	}
	slices.SortFunc(exts, func(a, b extent) int { return cmp.Compare(a.off, b.off) })
	at := int64(0)
	for _, e := range append(exts, extent{off: info.Size()}) {
		if e.off > at {
			if err := punchHole(f, at, e.off-at); err != nil {
				return fmt.Errorf("storage: freeing orphaned bytes of value segment %d: %w", seg, err)
			}
		}
		at = max(at, e.off+e.padded())
	}
	return nil
}

// segmentNumbers lists the segment files' numbers, in order.
func (l *valueLog) segmentNumbers() ([]uint32, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var segs []uint32
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok {
			continue
		}
		if seg, err := strconv.ParseUint(name, 10, 32); err == nil {
			segs = append(segs, uint32(seg))
		}
	}
	slices.Sort(segs)
	return segs, nil
}

func (l *valueLog) path(seg uint32) string {
	return filepath.Join(l.dir, fmt.Sprintf("%08d%s", seg, segmentSuffix))
}

// close closes the segment files and, when no append is in flight, marks
// the log clean: the next open need not look for orphaned bytes.
func (l *valueLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for seg := range l.files {
		errs = append(errs, l.closeLocked(seg))
	}
	if len(l.inflight) == 0 && errors.Join(errs...) == nil {
		errs = append(errs, l.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketValues).Put(keyClean, []byte{1})
		}))
	}
	return errors.Join(errs...)
}

// file returns an open segment (opening it on first use). Callers hold mu.
func (l *valueLog) file(seg uint32, create bool) (*os.File, error) {
	if f := l.files[seg]; f != nil {
		return f, nil
	}
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := l.openSegment(l.path(seg), flags)
	if err != nil {
		return nil, err
	}
	l.files[seg] = f
	return f, nil
}

// closeLocked closes a segment's file. Callers hold mu.
func (l *valueLog) closeLocked(seg uint32) error {
	f := l.files[seg]
	if f == nil {
		return nil
	}
	delete(l.files, seg)
	return f.Close()
}

// openSegment opens with O_DIRECT when the file system allows it, and
// remembers when it does not (tmpfs, some network file systems).
func (l *valueLog) openSegment(path string, flags int) (*os.File, error) {
	if l.direct {
		f, err := os.OpenFile(path, flags|directIO, 0o600)
		if err == nil || !isInvalidFlag(err) {
			return f, err
		}
		l.direct = false
	}
	return os.OpenFile(path, flags, 0o600)
}

// reservation is space taken in the active segment for one append; release
// it once the transaction that points at it has committed or failed.
type reservation struct {
	log  *valueLog
	seg  uint32
	off  int64
	size int64
	done bool
}

// valueRecord is one record of the log: a header and a body, stored
// together (so a sliver need not be copied into one buffer first). When
// inPlace, body is a record buffer (recordBuffer) the writer owns: the log
// writes the header into its head room and the padding after the body,
// and the disk reads the record from there — no copy.
type valueRecord struct {
	head, body []byte
	inPlace    bool
}

func (r valueRecord) len() int { return len(r.head) + len(r.body) }

// append writes records as one aligned write: exts locate them. They are
// not durable until sync; the caller syncs, commits pointers to them and
// then releases the reservation.
func (l *valueLog) append(records []valueRecord) ([]extent, *reservation, error) {
	var total int64
	for _, r := range records {
		total += padded(int64(r.len()))
	}
	res, f, err := l.reserve(total)
	if err != nil {
		return nil, nil, err
	}
	bufs, spill := frameRecords(records)
	defer putAligned(spill)
	exts := make([]extent, len(records))
	at := res.off
	for i, b := range bufs {
		n := records[i].len()
		exts[i] = extent{seg: res.seg, off: at, length: uint32(n), crc: crc32.Checksum(b[:n], castagnoli)}
		at += int64(len(b))
	}
	if err := writeVectors(f, bufs, res.off); err != nil {
		res.release(false)
		return nil, nil, fmt.Errorf("storage: writing %d bytes to value segment %d: %w", total, res.seg, err)
	}
	return exts, res, nil
}

// frameRecords lays each record out as it goes to disk — header, body,
// zeros to the next valueAlign boundary — in the record's own buffer when
// it is in place, else copied into spill (an aligned buffer the caller
// gives back); one buffer per record, each aligned, in order.
func frameRecords(records []valueRecord) (bufs [][]byte, spill []byte) {
	var copied int64
	for _, r := range records {
		if recordFrame(r) == nil {
			copied += padded(int64(r.len()))
		}
	}
	if copied > 0 {
		spill = alignedBuffer(int(copied))
	}
	bufs = make([][]byte, len(records))
	at := 0
	for i, r := range records {
		if b := recordFrame(r); b != nil {
			copy(b, r.head)
			clear(b[r.len():])
			bufs[i] = b
			continue
		}
		b := spill[at : at+int(padded(int64(r.len())))]
		copy(b, r.head)
		copy(b[len(r.head):], r.body)
		clear(b[r.len():])
		bufs[i], at = b, at+len(b)
	}
	return bufs, spill
}

// recordFrame is the aligned memory an in-place record is written from:
// its body's record buffer from the head room on, padded; nil when the
// record is not in place or its buffer cannot hold it so.
func recordFrame(r valueRecord) []byte {
	base := unsafe.Pointer(unsafe.SliceData(r.body))
	size := int(padded(int64(r.len())))
	if !r.inPlace || len(r.head) != recordHead || uintptr(base)%valueAlign != recordHead || cap(r.body)+recordHead < size {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(base, -recordHead)), size)
}

// sync makes what the reservations' appends wrote durable: one fsync per
// segment they used (fsync, not fdatasync: a segment grows, and its size
// must be durable too).
func (l *valueLog) sync(reservations ...*reservation) error {
	done := map[uint32]bool{}
	for _, r := range reservations {
		if r == nil || done[r.seg] {
			continue
		}
		done[r.seg] = true
		l.mu.Lock()
		f, err := l.file(r.seg, false)
		l.mu.Unlock()
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return fmt.Errorf("storage: syncing value segment %d: %w", r.seg, err)
		}
	}
	return nil
}

// reserve takes size bytes at the tail of the active segment, starting a
// new segment when the active one is full.
func (l *valueLog) reserve(size int64) (*reservation, *os.File, error) {
	for {
		l.mu.Lock()
		if l.admit != nil {
			if err := l.admit(size, l.reserved); err != nil {
				l.mu.Unlock()
				return nil, nil, err
			}
		}
		if l.roomFor(size) {
			f, err := l.file(l.active, false)
			if err != nil {
				l.mu.Unlock()
				return nil, nil, err
			}
			res := &reservation{log: l, seg: l.active, off: l.tail, size: size}
			l.tail += size
			l.reserved += size
			l.inflight[res.seg]++
			l.mu.Unlock()
			return res, f, nil
		}
		l.mu.Unlock()
		// The number comes from bbolt, outside mu (reclaim takes mu inside
		// a write transaction); a number two racing appends both took is
		// simply not used.
		seg, err := l.nextSegment()
		if err != nil {
			return nil, nil, err
		}
		if err := l.startSegment(seg, size); err != nil {
			return nil, nil, err
		}
	}
}

// roomFor reports whether the active segment takes an append of size bytes
// (an empty one takes any). Callers hold mu.
func (l *valueLog) roomFor(size int64) bool {
	return l.active != 0 && (l.tail == 0 || l.tail+size <= l.segSize)
}

// nextSegment takes a segment number; numbers are never reused, so a freed
// extent recorded before a crash can never name another segment's bytes.
func (l *valueLog) nextSegment() (uint32, error) {
	var seg uint32
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketValues)
		seg = 1
		if v := b.Get(keyNextSeg); len(v) == 4 {
			seg = binary.BigEndian.Uint32(v)
		}
		return b.Put(keyNextSeg, binary.BigEndian.AppendUint32(nil, seg+1))
	})
	return seg, err
}

// startSegment creates segment seg and makes it the active one, unless
// another append already started a segment with room for size bytes.
func (l *valueLog) startSegment(seg uint32, size int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.roomFor(size) {
		return nil
	}
	if _, err := l.file(seg, true); err != nil {
		return fmt.Errorf("storage: creating value segment: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	old := l.active
	l.active, l.tail = seg, 0
	if old != 0 && l.inflight[old] == 0 {
		l.removeIfDeadLocked(old)
	}
	return nil
}

// release ends a reservation. Bytes no committed pointer refers to are
// given back at once.
func (r *reservation) release(committed bool) {
	if r == nil || r.done {
		return
	}
	r.done = true
	l := r.log
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved -= r.size
	if !committed {
		if f := l.files[r.seg]; f != nil {
			_ = punchHole(f, r.off, r.size)
		}
	}
	if l.inflight[r.seg]--; l.inflight[r.seg] <= 0 {
		delete(l.inflight, r.seg)
		if r.seg != l.active {
			l.removeIfDeadLocked(r.seg)
		}
	}
}

// added counts new pointers' bytes as live, in the transaction that
// commits the pointers.
func (l *valueLog) added(tx *bolt.Tx, exts []extent) error {
	var total int64
	for _, e := range exts {
		if err := addLive(tx, e.seg, e.padded()); err != nil {
			return err
		}
		total += e.padded()
	}
	tx.OnCommit(func() { l.live.Add(total) })
	return nil
}

// dropped records that a pointer is gone, in the transaction that removes
// it: its bytes stop counting as live and its hole is to be punched.
func (l *valueLog) dropped(tx *bolt.Tx, e extent) error {
	if err := addLive(tx, e.seg, -e.padded()); err != nil {
		return err
	}
	tx.OnCommit(func() { l.live.Add(-e.padded()) })
	key := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, e.seg), uint64(e.off))
	return tx.Bucket(bucketValues).Bucket(subFreed).Put(key, binary.BigEndian.AppendUint64(nil, uint64(e.padded())))
}

func addLive(tx *bolt.Tx, seg uint32, delta int64) error {
	b := tx.Bucket(bucketValues).Bucket(subLive)
	key := binary.BigEndian.AppendUint32(nil, seg)
	var live int64
	if v := b.Get(key); len(v) == 8 {
		live = int64(binary.BigEndian.Uint64(v))
	}
	live += delta
	if live < 0 {
		return fmt.Errorf("storage: value segment %d would hold %d live bytes", seg, live)
	}
	if live == 0 {
		return b.Delete(key)
	}
	return b.Put(key, binary.BigEndian.AppendUint64(nil, uint64(live)))
}

// reclaim punches the holes of dropped extents and empties the freed list
// (a bounded number per transaction, so writers are not held up), then
// removes sealed segments left without live bytes.
func (l *valueLog) reclaim() error {
	touched := map[uint32]bool{}
	for more := true; more; {
		err := l.db.Update(func(tx *bolt.Tx) error {
			var err error
			more, err = l.reclaimSome(tx, 1024, touched)
			return err
		})
		if err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for seg := range touched {
		if seg != l.active && l.inflight[seg] == 0 {
			l.removeIfDeadLocked(seg)
		}
	}
	return nil
}

// reclaimSome punches up to limit holes of the freed list and removes them
// from it; more reports that entries are left.
func (l *valueLog) reclaimSome(tx *bolt.Tx, limit int, touched map[uint32]bool) (more bool, err error) {
	c := tx.Bucket(bucketValues).Bucket(subFreed).Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if limit--; limit < 0 {
			return true, nil
		}
		if len(k) == 12 && len(v) == 8 {
			seg := binary.BigEndian.Uint32(k[:4])
			l.mu.Lock()
			f, err := l.file(seg, false)
			l.mu.Unlock()
			switch {
			case errors.Is(err, os.ErrNotExist): // the whole segment is gone already
			case err != nil:
				return false, err
			default:
				if err := punchHole(f, int64(binary.BigEndian.Uint64(k[4:])), int64(binary.BigEndian.Uint64(v))); err != nil {
					return false, fmt.Errorf("storage: freeing space in value segment %d: %w", seg, err)
				}
			}
			touched[seg] = true
		}
		if err := c.Delete(); err != nil {
			return false, err
		}
	}
	return false, nil
}

// removeIfDeadLocked removes a sealed segment that holds no live bytes.
// Callers hold mu and have checked that no append is filling it, so its
// live count can only stay zero.
func (l *valueLog) removeIfDeadLocked(seg uint32) {
	live := false
	_ = l.db.View(func(tx *bolt.Tx) error {
		live = tx.Bucket(bucketValues).Bucket(subLive).Get(binary.BigEndian.AppendUint32(nil, seg)) != nil
		return nil
	})
	if live {
		return
	}
	_ = l.closeLocked(seg)
	_ = os.Remove(l.path(seg))
}

// removeDeadSegments removes, at open, every segment file without live
// bytes: appends that crashed before their commit, or segments emptied
// just before a crash.
func (l *valueLog) removeDeadSegments() error {
	segs, err := l.segmentNumbers()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, seg := range segs {
		l.removeIfDeadLocked(seg)
	}
	return nil
}

// read returns the record an extent locates, checked against its CRC. An
// extent that does not lie within its segment is refused (errNoRecord)
// before any buffer is allocated: a rotten length must not ask for
// gigabytes.
func (l *valueLog) read(e extent) ([]byte, error) {
	// Reads bypass the page cache too: a node reads back little of what
	// it writes, soon after; filling the cache costs more than the disk
	// read (BenchmarkStoreRead's fetch stage: 88 ms direct, 140 ms
	// through the cache, for 34 slivers of 2 MiB).
	l.mu.Lock()
	f, err := l.file(e.seg, false)
	l.mu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (%w): segment %d does not exist", errValueGone, errNoRecord, e.seg)
	}
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if errors.Is(err, os.ErrClosed) {
		return nil, errValueGone
	}
	if err != nil {
		return nil, fmt.Errorf("storage: value segment %d: %w", e.seg, err)
	}
	if size := info.Size(); e.off > size || int64(e.length) > size-e.off {
		return nil, fmt.Errorf("%w: segment %d holds %d bytes, the extent is %d at %d", errNoRecord, e.seg, size, e.length, e.off)
	}
	buf := alignedBuffer(int(e.padded()))
	n, err := f.ReadAt(buf, e.off)
	if n < int(e.length) {
		if errors.Is(err, os.ErrClosed) {
			return nil, errValueGone
		}
		if errors.Is(err, io.EOF) { // the file shrank under the read
			return nil, fmt.Errorf("%w: segment %d ends within the extent of %d bytes at %d", errNoRecord, e.seg, e.length, e.off)
		}
		return nil, fmt.Errorf("storage: reading value segment %d at %d: %w", e.seg, e.off, err)
	}
	rec := buf[:e.length]
	if crc32.Checksum(rec, castagnoli) != e.crc {
		return nil, fmt.Errorf("%w: segment %d, offset %d, %d bytes", errValueCorrupt, e.seg, e.off, e.length)
	}
	return rec, nil
}

// Aligned buffers for O_DIRECT, pooled by power-of-two size: a store moves
// hundreds of megabytes through them, and fresh memory costs page faults.
var alignedPools [40]sync.Pool

// sizeClass is the power of two a buffer of n bytes is pooled at, 4 KiB
// at least (as coding's scratch buffers, with the alignment floor).
func sizeClass(n int) int { return max(12, bits.Len(uint(max(n, 1)-1))) }

// alignedBuffer returns a buffer of n bytes starting on a valueAlign
// boundary. Its contents are undefined.
func alignedBuffer(n int) []byte {
	c := sizeClass(n)
	if p, ok := alignedPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	raw := make([]byte, 1<<c+valueAlign)
	skip := (valueAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%valueAlign)) % valueAlign
	return raw[skip : skip+n : skip+1<<c]
}

// recordHead is the head room a record buffer keeps before its data: a
// sliver's header (coding's encoding), which the value log writes there.
const recordHead = 8

// recordBuffer returns a buffer of n bytes for a sliver's data that the
// value log can write in place (valueRecord.inPlace): it starts recordHead
// bytes after a valueAlign boundary, and its capacity reaches the record's
// padded end. Its contents are undefined; putAligned takes it back.
func recordBuffer(n int) []byte {
	b := alignedBuffer(int(padded(int64(recordHead + n))))
	return b[recordHead : recordHead+n : cap(b)]
}

// putAligned gives a buffer from alignedBuffer or recordBuffer back to its
// pool. Only those: a record buffer is recognised by its offset from the
// alignment, and the head room before it is taken back with it.
func putAligned(b []byte) {
	if base := unsafe.Pointer(unsafe.SliceData(b)); uintptr(base)%valueAlign == recordHead {
		b = unsafe.Slice((*byte)(unsafe.Add(base, -recordHead)), cap(b)+recordHead)
	}
	c := sizeClass(cap(b))
	if 1<<c != cap(b) || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%valueAlign != 0 {
		return // not one of ours
	}
	b = b[:cap(b)]
	alignedPools[c].Put(&b)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// skipWritten drops the first n bytes written from bufs (a short
// vectored write).
func skipWritten(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
	}
	return bufs
}
