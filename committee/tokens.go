package committee

import (
	"bytes"
	"sync/atomic"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
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
// it) is refused from then on. The table is an immutable radix tree,
// replaced, never changed in place: readers take no lock, and a batch's
// changes cost what they change (a copied path per token), not a copy of
// every client's token — onboarding many clients one by one stays linear.
type tokenTable struct {
	t atomic.Pointer[iradix.Tree[string]]
}

// tokenChange is one staged change of the tokens bucket: a hash issued
// to a client, or (client empty) withdrawn.
type tokenChange struct {
	hash   crypto.Digest
	client string
}

// load replaces the table with the tokens bucket as of tx.
func (t *tokenTable) load(tx *bolt.Tx) error {
	txn := iradix.New[string]().Txn()
	err := tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		if len(k) == crypto.DigestSize {
			// The tree keeps the key slice it is given: k is bbolt's
			// memory, valid only until the transaction ends.
			txn.Insert(bytes.Clone(k), string(v))
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.t.Store(txn.Commit())
	return nil
}

// lookup returns the client a token hash was issued to.
func (t *tokenTable) lookup(hash crypto.Digest) (string, bool) {
	tree := t.t.Load()
	if tree == nil {
		return "", false
	}
	return tree.Get(hash[:])
}

// publish applies a committed batch's token changes.
func (t *tokenTable) publish(changes []tokenChange) {
	if len(changes) == 0 {
		return
	}
	tree := t.t.Load()
	if tree == nil {
		tree = iradix.New[string]()
	}
	txn := tree.Txn()
	for _, c := range changes {
		if c.client == "" {
			txn.Delete(c.hash[:])
		} else {
			txn.Insert(bytes.Clone(c.hash[:]), c.client) // the tree keeps the key
		}
	}
	t.t.Store(txn.Commit())
}
