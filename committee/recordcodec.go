package committee

import (
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/crypto"
)

// Blob and object records are written for every registration — and a blob
// record again whenever it changes — so, like results and events
// (records.go), they have a compact binary form (#24: JSON encoding and
// the pages its larger records fill were a good part of a registration's
// cost in the FSM). A binary record starts with a version byte below
// 0x20; a record written before it is JSON, which starts with '{': the
// readers accept both, and a JSON record is rewritten in binary only
// when it changes.
const (
	blobRecordBinary   = 1 // blobRecordBinary ‖ the fields of encodeBlobRecord
	objectRecordBinary = 1 // objectRecordBinary ‖ the fields of encodeObjectRecord
)

// Blob record flags.
const (
	blobInvalid = 1 << iota
	blobExpired
	blobDeleted
)

// encodeBlobRecord: version ‖ ID ‖ encoding u8 ‖ shards u32 ‖ length ‖
// root ‖ end epoch ‖ registered epoch ‖ certified epoch ‖ certificate
// (u32 length ‖ bytes) ‖ client ‖ flags u8 ‖ invalid proof (u32 length ‖
// bytes) ‖ registered index ‖ expiry index ‖ cert seq ‖ ended index ‖
// objects ‖ permanent end epoch (integers u64 unless noted).
func encodeBlobRecord(rec BlobRecord) []byte {
	w := recordWriter{b: make([]byte, 0, 160+len(rec.Certificate)+len(rec.InvalidProof)+len(rec.Client))}
	w.u8(blobRecordBinary)
	w.id(rec.ID)
	w.u8(rec.Encoding)
	w.u32(rec.Shards)
	w.u64(rec.Length)
	w.id(crypto.BlobID(rec.Root))
	w.u64(rec.EndEpoch)
	w.u64(rec.RegisteredEpoch)
	w.u64(rec.CertifiedEpoch)
	w.bytes(rec.Certificate)
	w.str(rec.Client)
	var flags uint8
	if rec.Invalid {
		flags |= blobInvalid
	}
	if rec.Expired {
		flags |= blobExpired
	}
	if rec.Deleted {
		flags |= blobDeleted
	}
	w.u8(flags)
	w.bytes(rec.InvalidProof)
	w.u64(rec.RegisteredIndex)
	w.u64(rec.ExpiryIndex)
	w.u64(rec.CertSeq)
	w.u64(rec.EndedIndex)
	w.u64(uint64(max(rec.Objects, 0)))
	w.u64(rec.PermanentEndEpoch)
	return w.b
}

// decodeBlobRecord reads a blob record in either form.
func decodeBlobRecord(raw []byte, rec *BlobRecord) error {
	if len(raw) > 0 && raw[0] == '{' {
		*rec = BlobRecord{}
		return json.Unmarshal(raw, rec)
	}
	r := recordReader{b: raw}
	if v := r.u8(); v != blobRecordBinary {
		return fmt.Errorf("%w: blob record version %d", errRecord, v)
	}
	*rec = BlobRecord{
		ID: r.id(), Encoding: r.u8(), Shards: r.u32(), Length: r.u64(), Root: crypto.Digest(r.id()),
		EndEpoch: r.u64(), RegisteredEpoch: r.u64(), CertifiedEpoch: r.u64(), Certificate: r.bytes(), Client: r.str(),
	}
	flags := r.u8()
	rec.Invalid, rec.Expired, rec.Deleted = flags&blobInvalid != 0, flags&blobExpired != 0, flags&blobDeleted != 0
	rec.InvalidProof = r.bytes()
	rec.RegisteredIndex, rec.ExpiryIndex, rec.CertSeq, rec.EndedIndex = r.u64(), r.u64(), r.u64(), r.u64()
	objects := r.u64()
	rec.PermanentEndEpoch = r.u64()
	if objects > 1<<62 {
		return fmt.Errorf("%w: blob record with %d objects", errRecord, objects)
	}
	rec.Objects = int(objects)
	if flags&^(blobInvalid|blobExpired|blobDeleted) != 0 {
		return fmt.Errorf("%w: blob record flags %#x", errRecord, flags)
	}
	return r.done()
}

// encodeObjectRecord: version ‖ ID ‖ owner ‖ blob ID ‖ end epoch ‖
// deletable u8 ‖ attribute count u32 ‖ attributes in key order (key ‖
// value, each u32 length ‖ bytes) ‖ created epoch ‖ stored.
func encodeObjectRecord(obj ObjectRecord) []byte {
	w := recordWriter{b: make([]byte, 0, 96+len(obj.Owner))}
	w.u8(objectRecordBinary)
	w.u64(obj.ID)
	w.str(obj.Owner)
	w.id(obj.BlobID)
	w.u64(obj.EndEpoch)
	if obj.Deletable {
		w.u8(1)
	} else {
		w.u8(0)
	}
	w.u32(uint32(len(obj.Attributes)))
	if len(obj.Attributes) > 0 {
		keys := make([]string, 0, len(obj.Attributes))
		for k := range obj.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the same bytes on every replica
		for _, k := range keys {
			w.bytes([]byte(k))
			w.bytes([]byte(obj.Attributes[k]))
		}
	}
	w.u64(obj.CreatedEpoch)
	w.u64(obj.Stored)
	return w.b
}

// decodeObjectRecord reads an object record in either form.
func decodeObjectRecord(raw []byte, obj *ObjectRecord) error {
	if len(raw) > 0 && raw[0] == '{' {
		*obj = ObjectRecord{}
		return json.Unmarshal(raw, obj)
	}
	r := recordReader{b: raw}
	if v := r.u8(); v != objectRecordBinary {
		return fmt.Errorf("%w: object record version %d", errRecord, v)
	}
	*obj = ObjectRecord{ID: r.u64(), Owner: r.str(), BlobID: r.id(), EndEpoch: r.u64()}
	switch r.u8() {
	case 0:
	case 1:
		obj.Deletable = true
	default:
		return fmt.Errorf("%w: object record deletable flag", errRecord)
	}
	n := r.u32()
	if uint64(n) > uint64(len(r.b))/8 { // each attribute takes at least its two lengths
		return fmt.Errorf("%w: %d attributes", errRecord, n)
	}
	if n > 0 {
		obj.Attributes = make(map[string]string, n)
		for range n {
			k := string(r.bytes())
			obj.Attributes[k] = string(r.bytes())
		}
	}
	obj.CreatedEpoch, obj.Stored = r.u64(), r.u64()
	return r.done()
}

// getBlob loads a blob record; found is false when there is none.
func getBlob(b *bolt.Bucket, id []byte, rec *BlobRecord) (found bool, err error) {
	raw := b.Get(id)
	if raw == nil {
		return false, nil
	}
	return true, decodeBlobRecord(raw, rec)
}

// getObject loads an object record; found is false when there is none.
func getObject(b *bolt.Bucket, id []byte, obj *ObjectRecord) (found bool, err error) {
	raw := b.Get(id)
	if raw == nil {
		return false, nil
	}
	return true, decodeObjectRecord(raw, obj)
}

// storeObject writes an object record (no index entries: putObject).
func storeObject(b *bolt.Bucket, obj ObjectRecord) error {
	return b.Put(u64Key(obj.ID), encodeObjectRecord(obj))
}
