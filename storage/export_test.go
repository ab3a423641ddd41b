package storage

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

// ValueLocation says where a stored sliver's bytes sit in the value log:
// the segment file and the record's offset (tests corrupt them there).
func (s *Store) ValueLocation(shard uint32, id crypto.BlobID, axis crypto.Axis) (string, int64, error) {
	var raw []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b, _ := shardBucket(tx, shard, sliverBucket(axis), false); b != nil {
			raw = append([]byte(nil), b.Get(id[:])...)
		}
		return nil
	}); err != nil {
		return "", 0, err
	}
	e, external, err := parseExtent(raw)
	if err != nil || !external {
		return "", 0, fmt.Errorf("%s sliver of %s on shard %d is not in the value log (%d bytes, %v)", axis, id, shard, len(raw), err)
	}
	return s.values.path(e.seg), e.off, nil
}
