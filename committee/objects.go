package committee

import (
	"cmp"
	"encoding/binary"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
)

// Blob objects (issue #21; DESIGN.md "Blob objects"). The registry is keyed
// by content, so clients who store the same bytes share one BlobRecord;
// each registration also creates an object of its own — owner, end epoch,
// deletable or permanent, attributes — and is charged for it. A blob is
// kept while any live object references it: its EndEpoch is the latest of
// their end epochs and of its PermanentEndEpoch. When the last object is
// deleted in epoch e, the blob ends at the start of e+1 (the expiry path,
// as EventBlobDeleted), unless a new registration references it first.
var (
	bucketObjects      = []byte("objects")       // u64 object ID → ObjectRecord
	bucketObjectExpiry = []byte("object-expiry") // u64 end epoch ‖ u64 object ID → nothing
	bucketBlobObjects  = []byte("blob-objects")  // blob ID ‖ u64 object ID → nothing; not for a blob's first object (objectsOfBlobAfter)
	bucketOwnerObjects = []byte("owner-objects") // u8 length ‖ owner ‖ u64 object ID → nothing
)

func blobObjectKey(blob crypto.BlobID, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), blob[:]...), id)
}

func ownerPrefix(owner string) []byte { return append([]byte{byte(len(owner))}, owner...) }

func ownerObjectKey(owner string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(ownerPrefix(owner), id)
}

// object loads a live object.
func object(tx *bolt.Tx, id uint64) (ObjectRecord, *CommandError) {
	var obj ObjectRecord
	if found, err := getObject(tx.Bucket(bucketObjects), u64Key(id), &obj); err != nil || !found {
		return obj, reject(CodeNotFound, "object %d does not exist (never created, deleted or ended)", id)
	}
	return obj, nil
}

// ownedObject loads a live object the client owns: anyone else is refused.
func ownedObject(tx *bolt.Tx, client string, id uint64) (ObjectRecord, *CommandError) {
	obj, cerr := object(tx, id)
	if cerr != nil {
		return obj, cerr
	}
	if obj.Owner != client {
		return obj, reject(CodePermissionDenied, "object %d belongs to another client", id)
	}
	return obj, nil
}

// putObject stores an object with its expiry and owner index entries, and
// with byBlob its blob-objects entry: a new object that is not its blob's
// first (objectsOfBlobAfter finds that one through the blob record). An
// object changed in place keeps the entry it has (its blob never changes).
func putObject(tx *bolt.Tx, obj ObjectRecord, byBlob bool) error {
	if err := storeObject(tx.Bucket(bucketObjects), obj); err != nil {
		return err
	}
	if err := tx.Bucket(bucketObjectExpiry).Put(indexKey(obj.EndEpoch, obj.ID), nil); err != nil {
		return err
	}
	if byBlob {
		if err := tx.Bucket(bucketBlobObjects).Put(blobObjectKey(obj.BlobID, obj.ID), nil); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketOwnerObjects).Put(ownerObjectKey(obj.Owner, obj.ID), nil)
}

// dropObject removes an object and its index entries.
func dropObject(tx *bolt.Tx, obj ObjectRecord) error {
	if err := tx.Bucket(bucketObjects).Delete(u64Key(obj.ID)); err != nil {
		return err
	}
	if err := updateRegistryCounts(tx, func(c *RegistryCounts) { c.Objects -= min(c.Objects, 1) }); err != nil {
		return err
	}
	if err := tx.Bucket(bucketObjectExpiry).Delete(indexKey(obj.EndEpoch, obj.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketBlobObjects).Delete(blobObjectKey(obj.BlobID, obj.ID)); err != nil {
		return err
	}
	return tx.Bucket(bucketOwnerObjects).Delete(ownerObjectKey(obj.Owner, obj.ID))
}

// objectsOfBlob loads every live object of a blob: the cost is that
// blob's objects, not the registry's.
func objectsOfBlob(tx *bolt.Tx, blob crypto.BlobID) ([]ObjectRecord, error) {
	return objectsOfBlobAfter(tx, blob, 0, -1)
}

// objectsOfBlobAfter loads up to limit (< 0: all) live objects of a blob
// in ID order after an ID.
//
// A blob's first object — the one made by the registration that created
// the blob record, so its ID is the record's RegisteredIndex — has no
// blob-objects entry since #24 (a random-keyed insert per registration,
// for the object nearly every blob has): it is found by that ID, and it
// comes first, every other live object of the blob having been
// registered after it (a blob that ended had all its objects dropped
// before a registration could make it anew). A state file written before
// has an entry for it too, skipped.
func objectsOfBlobAfter(tx *bolt.Tx, blob crypto.BlobID, after uint64, limit int) ([]ObjectRecord, error) {
	var out []ObjectRecord
	var first uint64
	var rec BlobRecord
	if found, err := getBlob(tx.Bucket(bucketBlobs), blob[:], &rec); err != nil {
		return nil, err
	} else if found {
		first = rec.RegisteredIndex
	}
	if first > after && limit != 0 {
		var obj ObjectRecord
		found, err := getObject(tx.Bucket(bucketObjects), u64Key(first), &obj)
		if err != nil {
			return nil, err
		}
		if found && obj.BlobID == blob {
			out = append(out, obj)
		}
	}
	c := tx.Bucket(bucketBlobObjects).Cursor()
	for k, _ := c.Seek(blobObjectKey(blob, after+1)); k != nil && len(out) != limit && len(k) == crypto.DigestSize+8 && crypto.BlobID(k[:crypto.DigestSize]) == blob; k, _ = c.Next() {
		if binary.BigEndian.Uint64(k[crypto.DigestSize:]) == first {
			continue // found above
		}
		var obj ObjectRecord
		if _, err := getObject(tx.Bucket(bucketObjects), k[crypto.DigestSize:], &obj); err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	return out, nil
}

// newObject creates the object a registration makes and references it
// from its blob record (not stored here).
func newObject(tx *bolt.Tx, index, epoch uint64, c RegisterBlob, blob *BlobRecord, stored uint64) (ObjectRecord, error) {
	obj := ObjectRecord{
		ID: index, Owner: c.Client, BlobID: blob.ID, EndEpoch: c.EndEpoch, Deletable: c.Deletable,
		Attributes: c.Attributes, CreatedEpoch: epoch, Stored: stored,
	}
	// The registration that creates the blob record creates its first
	// object: no blob-objects entry for it (objectsOfBlobAfter).
	if err := putObject(tx, obj, obj.ID != blob.RegisteredIndex); err != nil {
		return obj, err
	}
	if err := updateRegistryCounts(tx, func(c *RegistryCounts) { c.Objects++ }); err != nil {
		return obj, err
	}
	blob.Objects++
	blob.Deleted = false
	if !obj.Deletable {
		blob.PermanentEndEpoch = max(blob.PermanentEndEpoch, obj.EndEpoch)
	}
	return obj, nil
}

// setBlobEnd moves a live blob's end epoch, and its expiry entry with it.
func setBlobEnd(tx *bolt.Tx, rec *BlobRecord, index, end uint64) error {
	if end == rec.EndEpoch {
		return nil
	}
	expiry := tx.Bucket(bucketExpiry)
	if err := expiry.Delete(indexKey(rec.EndEpoch, rec.ExpiryIndex)); err != nil {
		return err
	}
	rec.EndEpoch, rec.ExpiryIndex = end, index
	return expiry.Put(indexKey(rec.EndEpoch, rec.ExpiryIndex), rec.ID[:])
}

// latestEnd is the end epoch a blob's references need: its permanent end
// epoch and every live object's.
func latestEnd(rec BlobRecord, objects []ObjectRecord) uint64 {
	end := rec.PermanentEndEpoch
	for _, o := range objects {
		end = max(end, o.EndEpoch)
	}
	return end
}

func (f *FSM) deleteObject(tx *bolt.Tx, index uint64, c DeleteObject, res *Result) ([]Event, *CommandError) {
	obj, cerr := ownedObject(tx, c.Client, c.Object)
	if cerr != nil {
		return nil, cerr
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	e := state.Epoch()
	if !obj.Deletable {
		return nil, reject(CodeFailedPrecondition, "object %d is permanent: it cannot be deleted before its end epoch %d (the current epoch is %d)", obj.ID, obj.EndEpoch, e)
	}
	rec, cerr := liveBlob(tx, obj.BlobID)
	if cerr != nil {
		return nil, cerr
	}
	// The current epoch is used (the bytes stay until it ends); the
	// epochs after it, up to the end epoch, are given back.
	refund := obj.Stored * (obj.EndEpoch - e - 1)
	client, found := f.client(tx, c.Client)
	if !found {
		return nil, reject(CodePermissionDenied, "unknown client %q", c.Client)
	}
	client.Used -= min(client.Used, refund)
	f.updateClient(client)
	if err := dropObject(tx, obj); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	rest, err := objectsOfBlob(tx, rec.ID)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	rec.Objects = len(rest)
	end := latestEnd(rec, rest)
	if end <= e { // nothing references the bytes after this epoch
		end, rec.Deleted = e+1, true
	}
	if err := setBlobEnd(tx, &rec, index, end); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := putBlob(tx, rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.BlobID, res.Object, res.Refund = rec.ID, obj.ID, refund
	if rec.Deleted {
		res.Epoch = rec.EndEpoch
	}
	return []Event{{Index: index, Kind: control.EventObjectDeleted, Epoch: e, BlobID: rec.ID, Object: obj.ID, Client: c.Client}}, nil
}

func (f *FSM) transferObject(tx *bolt.Tx, index uint64, c TransferObject, res *Result) ([]Event, *CommandError) {
	obj, cerr := ownedObject(tx, c.Client, c.Object)
	if cerr != nil {
		return nil, cerr
	}
	if _, found := f.client(tx, c.To); !found {
		return nil, reject(CodeNotFound, "no client %q to transfer object %d to", c.To, obj.ID)
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.BlobID, res.Object = obj.BlobID, obj.ID
	if c.To == obj.Owner {
		return nil, nil
	}
	if err := tx.Bucket(bucketOwnerObjects).Delete(ownerObjectKey(obj.Owner, obj.ID)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	obj.Owner = c.To
	if err := putObject(tx, obj, false); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return []Event{{Index: index, Kind: control.EventObjectTransferred, Epoch: state.Epoch(), BlobID: obj.BlobID, Object: obj.ID, Client: c.Client, To: c.To}}, nil
}

func (f *FSM) setAttributes(tx *bolt.Tx, index uint64, c SetAttributes, res *Result) ([]Event, *CommandError) {
	obj, cerr := ownedObject(tx, c.Client, c.Object)
	if cerr != nil {
		return nil, cerr
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	attrs := maps.Clone(obj.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	maps.Copy(attrs, c.Set)
	for _, k := range c.Remove {
		delete(attrs, k)
	}
	// Each change was checked before it was proposed; the merged set is
	// checked here, against the object as it is now.
	if err := control.ValidateAttributes(attrs); err != nil {
		return nil, reject(CodeInvalidArgument, "object %d: %v", obj.ID, err)
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	obj.Attributes = attrs
	if err := storeObject(tx.Bucket(bucketObjects), obj); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.BlobID, res.Object = obj.BlobID, obj.ID
	return []Event{{Index: index, Kind: control.EventAttributesSet, Epoch: state.Epoch(), BlobID: obj.BlobID, Object: obj.ID, Client: c.Client}}, nil
}

// extendObject moves one of the client's objects of a blob to a later end
// epoch, charged to the client, and the blob's end epoch with it.
func (f *FSM) extendObject(tx *bolt.Tx, index uint64, c ExtendBlob, rec BlobRecord, res *Result) ([]Event, *CommandError) {
	obj, cerr := f.objectToExtend(tx, c)
	if cerr != nil {
		return nil, cerr
	}
	if c.EndEpoch <= obj.EndEpoch {
		return nil, reject(CodeInvalidArgument, "end epoch %d is not after object %d's end epoch %d", c.EndEpoch, obj.ID, obj.EndEpoch)
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if _, cerr := f.charge(tx, c.Client, obj.Stored, c.EndEpoch-obj.EndEpoch); cerr != nil {
		return nil, cerr
	}
	if err := tx.Bucket(bucketObjectExpiry).Delete(indexKey(obj.EndEpoch, obj.ID)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	obj.EndEpoch = c.EndEpoch
	if err := putObject(tx, obj, false); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if !obj.Deletable {
		rec.PermanentEndEpoch = max(rec.PermanentEndEpoch, obj.EndEpoch)
	}
	events := []Event{{Index: index, Kind: control.EventObjectExtended, Epoch: state.Epoch(), BlobID: rec.ID, Object: obj.ID, Client: c.Client}}
	if end := max(rec.EndEpoch, obj.EndEpoch); end != rec.EndEpoch {
		if err := setBlobEnd(tx, &rec, index, end); err != nil {
			return nil, reject(CodeFailedPrecondition, "%v", err)
		}
		events = append(events, Event{Index: index, Kind: control.EventBlobExtended, Epoch: rec.EndEpoch, BlobID: rec.ID})
	}
	if err := putBlob(tx, rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.BlobID, res.Object, res.Epoch = rec.ID, obj.ID, obj.EndEpoch
	return events, nil
}

// objectToExtend picks the object an ExtendBlob names, or with none the
// client's object of the blob that ends last.
func (f *FSM) objectToExtend(tx *bolt.Tx, c ExtendBlob) (ObjectRecord, *CommandError) {
	if c.Object != 0 {
		obj, cerr := ownedObject(tx, c.Client, c.Object)
		if cerr == nil && obj.BlobID != c.BlobID {
			cerr = reject(CodeInvalidArgument, "object %d is an object of blob %s, not %s", obj.ID, obj.BlobID, c.BlobID)
		}
		return obj, cerr
	}
	objects, err := objectsOfBlob(tx, c.BlobID)
	if err != nil {
		return ObjectRecord{}, reject(CodeFailedPrecondition, "%v", err)
	}
	mine := slices.DeleteFunc(objects, func(o ObjectRecord) bool { return o.Owner != c.Client })
	if len(mine) == 0 {
		return ObjectRecord{}, reject(CodeNotFound, "client %s has no object of blob %s to extend (storing the blob creates one)", c.Client, c.BlobID)
	}
	return slices.MaxFunc(mine, func(a, b ObjectRecord) int { return cmp.Compare(a.EndEpoch, b.EndEpoch) }), nil
}

// expireObjects runs at the change to epoch e, before the blobs expire:
// objects whose end epoch is e or earlier end, and their blobs count one
// fewer reference (a blob whose last object this was ends in the same
// change, its end epoch being the latest of theirs).
func (f *FSM) expireObjects(tx *bolt.Tx, index, e uint64) ([]Event, error) {
	var ended []uint64
	c := tx.Bucket(bucketObjectExpiry).Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k[:8]) <= e; k, _ = c.Next() {
		ended = append(ended, binary.BigEndian.Uint64(k[8:16]))
	}
	var events []Event
	for _, id := range ended {
		obj, cerr := object(tx, id)
		if cerr != nil {
			return nil, cerr
		}
		if err := dropObject(tx, obj); err != nil {
			return nil, err
		}
		var rec BlobRecord
		if found, err := getBlob(tx.Bucket(bucketBlobs), obj.BlobID[:], &rec); err != nil {
			return nil, err
		} else if found {
			rec.Objects = max(rec.Objects-1, 0)
			if err := putBlob(tx, rec); err != nil {
				return nil, err
			}
		}
		events = append(events, Event{Index: index, Kind: control.EventObjectExpired, Epoch: e, BlobID: obj.BlobID, Object: obj.ID, Client: obj.Owner})
	}
	return events, nil
}

// dropObjectsOf ends every object of a blob that ended otherwise than by
// its objects' end epochs (invalid, or a registration that lapsed).
func dropObjectsOf(tx *bolt.Tx, index, e uint64, rec *BlobRecord) ([]Event, error) {
	objects, err := objectsOfBlob(tx, rec.ID)
	if err != nil {
		return nil, err
	}
	var events []Event
	for _, obj := range objects {
		if err := dropObject(tx, obj); err != nil {
			return nil, err
		}
		events = append(events, Event{Index: index, Kind: control.EventObjectExpired, Epoch: e, BlobID: obj.BlobID, Object: obj.ID, Client: obj.Owner})
	}
	rec.Objects = 0
	return events, nil
}

// ObjectByID returns a live object.
func (f *FSM) ObjectByID(id uint64) (ObjectRecord, bool, error) {
	var obj ObjectRecord
	var found bool
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		found, err = getObject(tx.Bucket(bucketObjects), u64Key(id), &obj)
		return err
	})
	return obj, found, err
}

// ObjectsOf pages a client's live objects in ID order after an ID; with a
// blob, only its objects of that blob (walking the blob's objects, not the
// client's).
func (f *FSM) ObjectsOf(owner string, blob crypto.BlobID, after uint64, limit int) (objects []ObjectRecord, more bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		if blob != (crypto.BlobID{}) {
			all, err := objectsOfBlobAfter(tx, blob, after, -1)
			mine := slices.DeleteFunc(all, func(o ObjectRecord) bool { return o.Owner != owner })
			objects, more = mine[:min(len(mine), limit)], len(mine) > limit
			return err
		}
		prefix := ownerPrefix(owner)
		c := tx.Bucket(bucketOwnerObjects).Cursor()
		for k, _ := c.Seek(ownerObjectKey(owner, after+1)); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
			if len(objects) == limit {
				more = true
				return nil
			}
			var obj ObjectRecord
			if _, err := getObject(tx.Bucket(bucketObjects), k[len(prefix):], &obj); err != nil {
				return err
			}
			objects = append(objects, obj)
		}
		return nil
	})
	return objects, more, err
}

// BlobObjects returns up to limit live objects of a blob.
func (f *FSM) BlobObjects(blob crypto.BlobID, limit int) ([]ObjectRecord, error) {
	var out []ObjectRecord
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		out, err = objectsOfBlobAfter(tx, blob, 0, limit)
		return err
	})
	return out, err
}
