package committee

import (
	"maps"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

// tokenTable mirrors the tokens bucket (token hash → client ID) in memory
// for the authorization check of every Client call: before it, each call
// opened a bbolt read transaction, and on the leader hundreds of them
// queued on bbolt's lock with the FSM's writer (#24).
//
// The FSM keeps it exact: open (start and every restore) loads the whole
// bucket, and a batch's token changes are staged with the batch and
// published once its transaction commits — before the applied index
// moves, so a caller that waited for a change's index sees the table with
// it, and a token the state no longer holds (a restore to a state without
// it) is refused from then on. The table is replaced, never changed in
// place: readers take no lock.
type tokenTable struct {
	m atomic.Pointer[map[crypto.Digest]string]
}

// tokenChange is one staged change of the tokens bucket: a hash issued
// to a client, or (client empty) withdrawn.
type tokenChange struct {
	hash   crypto.Digest
	client string
}

// load replaces the table with the tokens bucket as of tx.
func (t *tokenTable) load(tx *bolt.Tx) error {
	m := map[crypto.Digest]string{}
	err := tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		if len(k) == crypto.DigestSize {
			m[crypto.Digest(k)] = string(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.m.Store(&m)
	return nil
}

// lookup returns the client a token hash was issued to.
func (t *tokenTable) lookup(hash crypto.Digest) (string, bool) {
	m := t.m.Load()
	if m == nil {
		return "", false
	}
	id, ok := (*m)[hash]
	return id, ok
}

// publish applies a committed batch's token changes.
func (t *tokenTable) publish(changes []tokenChange) {
	if len(changes) == 0 {
		return
	}
	var m map[crypto.Digest]string
	if old := t.m.Load(); old != nil {
		m = maps.Clone(*old)
	}
	if m == nil {
		m = map[crypto.Digest]string{}
	}
	for _, c := range changes {
		if c.client == "" {
			delete(m, c.hash)
		} else {
			m[c.hash] = c.client
		}
	}
	t.m.Store(&m)
}
