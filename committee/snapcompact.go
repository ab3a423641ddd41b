package committee

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// A bbolt file never shrinks: after compaction deletes history its pages
// are free and reused, but the file keeps its high-water mark, and
// tx.WriteTo copies the file up to that mark, free pages included. So a
// snapshot of a file that is mostly free is written compacted: the read
// transaction's buckets are copied, in key order, into a fresh file beside
// the state, and that file is streamed. The copy is of the same read
// transaction, so the snapshot is still the state as of its index.

const (
	// compactFreeRatio: a snapshot is compacted when the free pages are
	// at least this share of the file, and compactMinFree bytes.
	compactFreeRatio = 4
	compactMinFree   = 4 << 20
	// compactTxBytes bounds one transaction of the copy (its dirty pages
	// are held in memory until commit).
	compactTxBytes = 64 << 20
)

// worthCompacting reports whether db's free pages are a large enough share
// of a snapshot of size bytes to copy it instead of streaming it.
func worthCompacting(db *bolt.DB, size int64) bool {
	st := db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(db.Info().PageSize)
	return free >= compactMinFree && free*compactFreeRatio >= size
}

// writeSnapshot streams tx to w: as the file is, or compacted when most
// of it is free pages. dir is where the compacted copy is written.
func writeSnapshot(db *bolt.DB, tx *bolt.Tx, dir string, w io.Writer) error {
	if !worthCompacting(db, tx.Size()) {
		_, err := tx.WriteTo(w)
		return err
	}
	return writeCompacted(tx, dir, w)
}

// writeCompacted copies tx into a fresh bbolt file in dir and streams it.
func writeCompacted(tx *bolt.Tx, dir string, w io.Writer) error {
	tmp, err := os.CreateTemp(dir, ".snapshot-compact-*")
	if err != nil {
		return err
	}
	path := tmp.Name()
	tmp.Close()
	defer os.Remove(path)
	dst, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := copyBuckets(tx, dst); err != nil {
		return fmt.Errorf("committee: compacting the snapshot into %s: %w", filepath.Base(path), err)
	}
	return dst.View(func(out *bolt.Tx) error {
		_, err := out.WriteTo(w)
		return err
	})
}

// copyBuckets copies every bucket of src (nested ones included) into dst,
// committing every compactTxBytes.
func copyBuckets(src *bolt.Tx, dst *bolt.DB) error {
	out, err := dst.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = out.Rollback() }() // after Commit, a no-op
	written := 0
	// path is the chain of bucket names from the root to the current one.
	var copyBucket func(path [][]byte, b *bolt.Bucket) error
	copyBucket = func(path [][]byte, b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil { // a nested bucket
				nested := append(path[:len(path):len(path)], k)
				if _, err := createPath(out, nested); err != nil {
					return err
				}
				return copyBucket(nested, b.Bucket(k))
			}
			if written >= compactTxBytes {
				if err := out.Commit(); err != nil {
					return err
				}
				if out, err = dst.Begin(true); err != nil {
					return err
				}
				written = 0
			}
			ob, err := createPath(out, path)
			if err != nil {
				return err
			}
			ob.FillPercent = 1 // keys arrive in order: full pages
			written += len(k) + len(v)
			return ob.Put(k, v)
		})
	}
	err = src.ForEach(func(name []byte, b *bolt.Bucket) error {
		if _, err := createPath(out, [][]byte{name}); err != nil { // empty buckets too
			return err
		}
		return copyBucket([][]byte{name}, b)
	})
	if err != nil {
		return err
	}
	return out.Commit()
}

// createPath returns the bucket at path in tx, creating what is missing.
func createPath(tx *bolt.Tx, path [][]byte) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(path[0])
	for _, name := range path[1:] {
		if err != nil {
			return nil, err
		}
		b, err = b.CreateBucketIfNotExists(name)
	}
	return b, err
}
