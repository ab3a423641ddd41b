package committee

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/epoch"
	"github.com/weftstore/weft/shardmap"
)

// What a status page shows of the control plane (issue #22): the registry
// by state and the current epoch's handover, kept as the commands apply so
// that reading them costs the same whatever the registry's size.
var (
	// keyRegistryCounts holds registryCounts (binary): every write of a
	// blob record or an object goes through putBlob, deleteBlob,
	// putObject or dropObject, which keep it in step.
	keyRegistryCounts = []byte("registry-counts")
	// keyHandover holds the HandoverRecord of the epoch change that
	// started the current epoch.
	keyHandover = []byte("handover")
)

// RegistryCounts is the blob registry by state: blobs and their unencoded
// bytes, and the live blob objects.
type RegistryCounts struct {
	Registered, Certified, Invalid, Ended uint64
	RegisteredBytes, CertifiedBytes       uint64
	Objects                               uint64
}

const registryCountsSize = 7 * 8

func (c RegistryCounts) encode() []byte {
	b := make([]byte, 0, registryCountsSize)
	for _, v := range []uint64{c.Registered, c.Certified, c.Invalid, c.Ended, c.RegisteredBytes, c.CertifiedBytes, c.Objects} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func decodeRegistryCounts(b []byte) (c RegistryCounts, ok bool) {
	if len(b) != registryCountsSize {
		return c, false
	}
	for i, p := range []*uint64{&c.Registered, &c.Certified, &c.Invalid, &c.Ended, &c.RegisteredBytes, &c.CertifiedBytes, &c.Objects} {
		*p = binary.BigEndian.Uint64(b[8*i:])
	}
	return c, true
}

// blobClass is the state a blob record is counted under.
type blobClass int

const (
	classRegistered blobClass = iota
	classCertified
	classInvalid
	classEnded
)

func classOf(rec BlobRecord) blobClass {
	switch {
	case rec.Invalid:
		return classInvalid
	case rec.Expired:
		return classEnded
	case rec.CertifiedEpoch > 0:
		return classCertified
	}
	return classRegistered
}

// count adds sign (+1 or -1) times one blob record to the counts. A
// decrement below zero would mean the counts and the registry disagree;
// it stops at zero rather than wrap.
func (c *RegistryCounts) count(rec BlobRecord, sign int) {
	add := func(p *uint64, v uint64) {
		if sign > 0 {
			*p += v
		} else {
			*p -= min(*p, v)
		}
	}
	switch classOf(rec) {
	case classRegistered:
		add(&c.Registered, 1)
		add(&c.RegisteredBytes, rec.Length)
	case classCertified:
		add(&c.Certified, 1)
		add(&c.CertifiedBytes, rec.Length)
	case classInvalid:
		add(&c.Invalid, 1)
	case classEnded:
		add(&c.Ended, 1)
	}
}

func readRegistryCounts(tx *bolt.Tx) (RegistryCounts, bool) {
	return decodeRegistryCounts(tx.Bucket(bucketMeta).Get(keyRegistryCounts))
}

func updateRegistryCounts(tx *bolt.Tx, change func(*RegistryCounts)) error {
	c, _ := readRegistryCounts(tx)
	change(&c)
	return tx.Bucket(bucketMeta).Put(keyRegistryCounts, c.encode())
}

// putBlob stores a blob record, counting it under its new state instead
// of its old one.
func putBlob(tx *bolt.Tx, rec BlobRecord) error {
	var old BlobRecord
	had, err := getBlob(tx.Bucket(bucketBlobs), rec.ID[:], &old)
	if err != nil {
		return fmt.Errorf("blob %s: %w", rec.ID, err)
	}
	return putBlobOver(tx, old, had, rec)
}

// putBlobOver is putBlob for a caller that has the stored record (had:
// there is one) already: the registration path, which read it to decide.
func putBlobOver(tx *bolt.Tx, old BlobRecord, had bool, rec BlobRecord) error {
	if err := tx.Bucket(bucketBlobs).Put(rec.ID[:], encodeBlobRecord(rec)); err != nil {
		return err
	}
	if had && classOf(old) == classOf(rec) && old.Length == rec.Length {
		return nil
	}
	return updateRegistryCounts(tx, func(c *RegistryCounts) {
		if had {
			c.count(old, -1)
		}
		c.count(rec, +1)
	})
}

// deleteBlob removes a blob record (compaction) from the registry and its
// counts.
func deleteBlob(tx *bolt.Tx, rec BlobRecord) error {
	if err := tx.Bucket(bucketBlobs).Delete(rec.ID[:]); err != nil {
		return err
	}
	return updateRegistryCounts(tx, func(c *RegistryCounts) { c.count(rec, -1) })
}

// countRegistry counts a state file written before the counts were kept,
// once, when it is opened: a pass over the registry and the objects.
func countRegistry(tx *bolt.Tx) error {
	if _, ok := readRegistryCounts(tx); ok {
		return nil
	}
	c, err := scanRegistry(tx)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyRegistryCounts, c.encode())
}

// scanRegistry counts the registry record by record.
func scanRegistry(tx *bolt.Tx) (c RegistryCounts, err error) {
	err = tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
		var rec BlobRecord
		if err := decodeBlobRecord(v, &rec); err != nil {
			return fmt.Errorf("blob %x: %w", k, err)
		}
		c.count(rec, +1)
		return nil
	})
	c.Objects = uint64(tx.Bucket(bucketObjects).Stats().KeyN)
	return c, err
}

// HandoverRecord is the handover an epoch change started: each moved
// shard with the node it is synced from, and, after a forced change, the
// shards the previous epoch left unsynced.
type HandoverRecord struct {
	Epoch   uint64          `json:"epoch"`
	Index   uint64          `json:"index"` // the Raft index of the change
	Forced  bool            `json:"forced,omitempty"`
	Moves   []shardmap.Move `json:"moves,omitempty"`
	Carried []int           `json:"carried,omitempty"`
}

func writeHandover(tx *bolt.Tx, index uint64, events []epoch.Event) error {
	for _, e := range events {
		if started, ok := e.(epoch.EpochStarted); ok {
			rec := HandoverRecord{Epoch: started.Epoch, Index: index, Forced: started.Forced, Moves: started.Handover, Carried: started.Carried}
			return putJSON(tx.Bucket(bucketMeta), keyHandover, rec)
		}
	}
	return nil
}

// readHandover returns the current epoch's handover. A state file whose
// epoch began before the record was kept gets the moves still pending
// (from their holders), and no index.
func readHandover(tx *bolt.Tx, st epoch.State) (HandoverRecord, error) {
	var rec HandoverRecord
	found, err := getJSON(tx.Bucket(bucketMeta), keyHandover, &rec)
	if err != nil {
		return rec, err
	}
	if found && rec.Epoch == st.Epoch() {
		return rec, nil
	}
	rec = HandoverRecord{Epoch: st.Epoch()}
	for _, shard := range st.Pending() {
		rec.Moves = append(rec.Moves, shardmap.Move{Shard: shard, From: st.Holder(shard), To: st.Owner(shard)})
	}
	return rec, nil
}

// Overview is the control plane's state as a status page shows it, read
// in one transaction.
type Overview struct {
	Index    uint64
	State    epoch.State
	Nodes    []NodeRecord
	Handover HandoverRecord
	Counts   RegistryCounts
}

// Overview reads the status page's view of the state.
func (f *FSM) Overview() (o Overview, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		o.Index = readApplied(tx)
		if o.State, err = readEpoch(tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			var rec NodeRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("node %q: %w", k, err)
			}
			o.Nodes = append(o.Nodes, rec)
			return nil
		}); err != nil {
			return err
		}
		if o.Handover, err = readHandover(tx, o.State); err != nil {
			return err
		}
		o.Counts, _ = readRegistryCounts(tx)
		return nil
	})
	return o, err
}

// RegistryCounts returns the registry's counts.
func (f *FSM) RegistryCounts() (c RegistryCounts, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		c, _ = readRegistryCounts(tx)
		return nil
	})
	return c, err
}
