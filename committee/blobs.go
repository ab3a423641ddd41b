package committee

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// The blob registry's life cycle: registered (charged to a client) →
// certified (availability certificate of the current epoch, before the end
// epoch) → expired at the epoch change that reaches its end epoch. An
// uncertified registration lapses after LapseEpochs. An invalid-blob
// certificate ends it at any point. Every transition is a committed event;
// nodes delete data only after applying it.

// indexKey orders the expiry and pending indexes by epoch, then by the Raft
// index that made the entry, so that new entries append at the end of the
// B+tree instead of landing on random pages as blob IDs would.
func indexKey(epoch, index uint64) []byte { return binary.BigEndian.AppendUint64(u64Key(epoch), index) }

func (f *FSM) registerBlob(tx *bolt.Tx, index uint64, c RegisterBlob, res *Result) ([]Event, *CommandError) {
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if state.Epoch() == 0 {
		return nil, reject(CodeFailedPrecondition, "no committee yet: advance to epoch 1 first")
	}
	if int(c.Shards) != f.cfg.Shards {
		return nil, reject(CodeInvalidArgument, "blob encoded for %d shards, the network has %d", c.Shards, f.cfg.Shards)
	}
	if accepted := coding.Encodings(f.cfg.Shards); !slices.Contains(accepted, coding.Encoding(c.Encoding)) {
		// Storage nodes code the encodings of their network's size only:
		// a blob in another could be paid for but never stored.
		return nil, reject(CodeInvalidArgument, "encoding %d: a network of %d shards stores blobs in %v", c.Encoding, f.cfg.Shards, accepted)
	}
	params, err := coding.NewParams(f.cfg.Shards, coding.WithEncoding(coding.Encoding(c.Encoding)))
	if err != nil {
		return nil, reject(CodeInvalidArgument, "%v", err)
	}
	stored, err := params.EncodedSize(c.Length)
	if err != nil {
		return nil, reject(CodeInvalidArgument, "%v", err)
	}
	if c.EndEpoch <= state.Epoch() {
		return nil, reject(CodeInvalidArgument, "end epoch %d is not after the current epoch %d", c.EndEpoch, state.Epoch())
	}
	if err := control.ValidateAttributes(c.Attributes); err != nil {
		return nil, reject(CodeInvalidArgument, "%v", err)
	}
	id := crypto.DeriveBlobID(c.Encoding, c.Shards, c.Length, c.Root)
	res.BlobID = id
	blobs := tx.Bucket(bucketBlobs)
	var existing BlobRecord
	found, err := getBlob(blobs, id[:], &existing)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "blob %s: %v", id, err)
	}
	if found && existing.Invalid {
		// Invalid is for good: the content is proven inconsistently encoded,
		// and a new registration must not make it certifiable again.
		return nil, reject(CodeFailedPrecondition, "blob %s was marked invalid", id)
	}
	// Every registration is an object of its own, charged to its client,
	// even when the same content is registered already (issue #21).
	client, cerr := f.charge(tx, c.Client, stored, c.EndEpoch-state.Epoch())
	if cerr != nil {
		return nil, cerr
	}
	c.Client = client.ID
	events := []Event{}
	rec := existing
	if !found || !existing.Live() {
		rec = BlobRecord{
			ID: id, Encoding: c.Encoding, Shards: c.Shards, Length: c.Length, Root: c.Root,
			EndEpoch: c.EndEpoch, RegisteredEpoch: state.Epoch(), Client: client.ID,
			RegisteredIndex: index, ExpiryIndex: index,
		}
		if err := tx.Bucket(bucketExpiry).Put(indexKey(rec.EndEpoch, rec.ExpiryIndex), id[:]); err != nil {
			return nil, reject(CodeFailedPrecondition, "%v", err)
		}
		if err := tx.Bucket(bucketPending).Put(indexKey(rec.RegisteredEpoch, rec.RegisteredIndex), id[:]); err != nil {
			return nil, reject(CodeFailedPrecondition, "%v", err)
		}
		events = append(events, Event{Index: index, Kind: control.EventBlobRegistered, Epoch: state.Epoch(), BlobID: id})
	} else if rec.Objects == 0 && !rec.Deleted {
		// Registered before blob objects existed: its end epoch was paid
		// for without an object, and stays promised.
		rec.PermanentEndEpoch = max(rec.PermanentEndEpoch, rec.EndEpoch)
	}
	obj, err := newObject(tx, index, state.Epoch(), c, &rec, stored)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	// A blob whose last object was deleted this epoch ends at the next
	// one's start: a new object keeps it, from then on to its own end.
	if end := max(rec.EndEpoch, obj.EndEpoch); end != rec.EndEpoch {
		if err := setBlobEnd(tx, &rec, index, end); err != nil {
			return nil, reject(CodeFailedPrecondition, "%v", err)
		}
		events = append(events, Event{Index: index, Kind: control.EventBlobExtended, Epoch: rec.EndEpoch, BlobID: id})
	}
	if err := putBlobOver(tx, existing, found, rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.Object = obj.ID
	return append(events, Event{Index: index, Kind: control.EventObjectCreated, Epoch: state.Epoch(), BlobID: id, Object: obj.ID, Client: client.ID}), nil
}

// liveBlob loads a blob that exists and is neither invalid nor expired.
func liveBlob(tx *bolt.Tx, id crypto.BlobID) (BlobRecord, *CommandError) {
	var rec BlobRecord
	if found, err := getBlob(tx.Bucket(bucketBlobs), id[:], &rec); err != nil || !found {
		return rec, reject(CodeNotFound, "blob %s is not registered", id)
	}
	if rec.Invalid {
		return rec, reject(CodeFailedPrecondition, "blob %s is invalid", id)
	}
	if rec.Expired {
		return rec, reject(CodeFailedPrecondition, "blob %s has expired", id)
	}
	return rec, nil
}

// blobCertificate decodes a certificate of the given type for blob id.
func blobCertificate(raw []byte, t crypto.MessageType, id crypto.BlobID) (*crypto.Certificate, *CommandError) {
	var cert crypto.Certificate
	if err := cert.UnmarshalBinary(raw); err != nil {
		return nil, reject(CodeInvalidArgument, "%v", err)
	}
	if cert.BlobID != id || cert.Type != t {
		return nil, reject(CodeInvalidArgument, "certificate is a %s for blob %s, not a %s for %s", cert.Type, cert.BlobID, t, id)
	}
	return &cert, nil
}

func (f *FSM) certifyBlob(tx *bolt.Tx, index uint64, c CertifyBlob, res *Result) ([]Event, *CommandError) {
	cert, cerr := blobCertificate(c.Certificate, crypto.MsgBlobStored, c.BlobID)
	if cerr != nil {
		return nil, cerr
	}
	rec, cerr := liveBlob(tx, c.BlobID)
	if cerr != nil {
		return nil, cerr
	}
	res.BlobID = c.BlobID
	if rec.CertifiedEpoch != 0 {
		res.Epoch = rec.CertifiedEpoch
		return nil, nil // already certified: the first certificate stands
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if cert.Epoch != state.Epoch() {
		return nil, reject(CodeFailedPrecondition, "certificate of epoch %d, the current epoch is %d", cert.Epoch, state.Epoch())
	}
	if state.Epoch() >= rec.EndEpoch {
		return nil, reject(CodeFailedPrecondition, "blob %s expired at the end of epoch %d", c.BlobID, rec.EndEpoch)
	}
	rec.CertifiedEpoch, rec.Certificate = state.Epoch(), c.Certificate
	if err := noteCertified(tx, &rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := putBlob(tx, rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := tx.Bucket(bucketPending).Delete(indexKey(rec.RegisteredEpoch, rec.RegisteredIndex)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.Epoch = state.Epoch()
	return []Event{{Index: index, Kind: control.EventBlobCertified, Epoch: state.Epoch(), BlobID: c.BlobID}}, nil
}

func (f *FSM) markInvalid(tx *bolt.Tx, index uint64, c MarkBlobInvalid, res *Result) ([]Event, *CommandError) {
	cert, cerr := blobCertificate(c.Certificate, crypto.MsgBlobInvalid, c.BlobID)
	if cerr != nil {
		return nil, cerr
	}
	var rec BlobRecord
	if found, err := getBlob(tx.Bucket(bucketBlobs), c.BlobID[:], &rec); err != nil || !found {
		return nil, reject(CodeNotFound, "blob %s is not registered", c.BlobID)
	}
	res.BlobID = c.BlobID
	if rec.Invalid {
		return nil, nil
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if cert.Epoch != state.Epoch() {
		return nil, reject(CodeFailedPrecondition, "invalid-blob certificate of epoch %d, the current epoch is %d", cert.Epoch, state.Epoch())
	}
	rec.Invalid, rec.InvalidProof = true, c.Certificate
	ended, err := dropObjectsOf(tx, index, state.Epoch(), &rec)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if cerr := f.retire(tx, rec); cerr != nil {
		return nil, cerr
	}
	return append([]Event{{Index: index, Kind: control.EventBlobInvalid, Epoch: state.Epoch(), BlobID: c.BlobID}}, ended...), nil
}

func (f *FSM) extendBlob(tx *bolt.Tx, index uint64, c ExtendBlob, res *Result) ([]Event, *CommandError) {
	rec, cerr := liveBlob(tx, c.BlobID)
	if cerr != nil {
		return nil, cerr
	}
	res.BlobID = c.BlobID
	return f.extendObject(tx, index, c, rec, res)
}

// retire stores a blob that is no longer live and drops it from the expiry
// and pending indexes.
func (f *FSM) retire(tx *bolt.Tx, rec BlobRecord) *CommandError {
	if err := forgetCertified(tx, rec); err != nil {
		return reject(CodeFailedPrecondition, "%v", err)
	}
	if err := tx.Bucket(bucketExpiry).Delete(indexKey(rec.EndEpoch, rec.ExpiryIndex)); err != nil {
		return reject(CodeFailedPrecondition, "%v", err)
	}
	if err := tx.Bucket(bucketPending).Delete(indexKey(rec.RegisteredEpoch, rec.RegisteredIndex)); err != nil {
		return reject(CodeFailedPrecondition, "%v", err)
	}
	if err := putBlob(tx, rec); err != nil {
		return reject(CodeFailedPrecondition, "%v", err)
	}
	return nil
}

// expireAt runs at the change to epoch e: blobs whose end epoch is e or
// earlier expire, registrations still uncertified after LapseEpochs lapse.
// Both walk an index, so the cost is the number that end, not the registry.
func (f *FSM) expireAt(tx *bolt.Tx, index, e uint64) ([]Event, error) {
	events, err := f.expireObjects(tx, index, e)
	if err != nil {
		return nil, err
	}
	ended := func(bucket []byte, upTo uint64, kind control.EventKind) error {
		var ids []crypto.BlobID
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k[:8]) <= upTo; k, v = c.Next() {
			ids = append(ids, crypto.BlobID(v))
		}
		for _, id := range ids {
			var rec BlobRecord
			if _, err := getBlob(tx.Bucket(bucketBlobs), id[:], &rec); err != nil {
				return err
			}
			rec.Expired, rec.EndedIndex = true, index
			// What ends with its end epoch has no objects left (theirs
			// ended first); a registration that lapsed takes its own.
			dropped, err := dropObjectsOf(tx, index, e, &rec)
			if err != nil {
				return err
			}
			if cerr := f.retire(tx, rec); cerr != nil {
				return cerr
			}
			// Kept RetainEpochs epochs (its status answers "expired"),
			// then compacted.
			if err := tx.Bucket(bucketEnded).Put(endedKey(e, index, id), nil); err != nil {
				return err
			}
			why := kind
			if kind == control.EventBlobExpired && rec.Deleted {
				why = control.EventBlobDeleted
			}
			events = append(events, Event{Index: index, Kind: why, Epoch: e, BlobID: id})
			events = append(events, dropped...)
		}
		return nil
	}
	if err := ended(bucketExpiry, e, control.EventBlobExpired); err != nil {
		return nil, err
	}
	if e > f.cfg.LapseEpochs {
		if err := ended(bucketPending, e-f.cfg.LapseEpochs, control.EventRegistrationLapsed); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// client loads a client record on the apply path, through the cache.
func (f *FSM) client(tx *bolt.Tx, id string) (ClientRecord, bool) {
	if rec, ok := f.clients[id]; ok {
		return rec, true
	}
	var rec ClientRecord
	if found, err := getJSON(tx.Bucket(bucketClients), []byte(id), &rec); err != nil || !found {
		return rec, false
	}
	f.clients[id] = rec
	return rec, true
}

// putClient stores a new client record and caches it.
func (f *FSM) putClient(tx *bolt.Tx, rec ClientRecord) error {
	if err := putJSON(tx.Bucket(bucketClients), []byte(rec.ID), rec); err != nil {
		return err
	}
	f.clients[rec.ID] = rec
	return nil
}

// updateClient changes a stored client record in the cache and marks it
// to be written once, when the batch's commands are applied
// (flushClients): every registration charges its client, and a batch of a
// hundred registrations by one client wrote its record a hundred times.
// On the apply path the cache is the record (f.client reads it first);
// readers outside see only committed transactions, which have it written.
func (f *FSM) updateClient(rec ClientRecord) {
	f.clients[rec.ID] = rec
	f.dirtyClients[rec.ID] = struct{}{}
}

// flushClients writes the client records the batch changed, in ID order.
func (f *FSM) flushClients(tx *bolt.Tx) error {
	if len(f.dirtyClients) == 0 {
		return nil
	}
	ids := make([]string, 0, len(f.dirtyClients))
	for id := range f.dirtyClients {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	clients := tx.Bucket(bucketClients)
	for _, id := range ids {
		if err := putJSON(clients, []byte(id), f.clients[id]); err != nil {
			return fmt.Errorf("client %s: %w", id, err)
		}
	}
	clear(f.dirtyClients)
	return nil
}

// charge takes bytes × epochs from a client's quota.
func (f *FSM) charge(tx *bolt.Tx, client string, bytes, epochs uint64) (ClientRecord, *CommandError) {
	rec, found := f.client(tx, client)
	if !found {
		return rec, reject(CodePermissionDenied, "unknown client %q", client)
	}
	hi, cost := bits.Mul64(bytes, epochs)
	if hi != 0 || cost > rec.Quota-min(rec.Used, rec.Quota) {
		return rec, reject(CodeResourceExhausted, "client %s: %d bytes × %d epochs exceed the %d left of its quota", client, bytes, epochs, rec.Quota-min(rec.Used, rec.Quota))
	}
	rec.Used += cost
	f.updateClient(rec)
	return rec, nil
}

func (f *FSM) addClient(tx *bolt.Tx, index uint64, c AddClient) ([]Event, *CommandError) {
	if c.Client == "" || len(c.Client) > maxNodeIDLength {
		return nil, reject(CodeInvalidArgument, "client ID of %d bytes (1–%d)", len(c.Client), maxNodeIDLength)
	}
	if c.TokenHash == (crypto.Digest{}) {
		return nil, reject(CodeInvalidArgument, "client %s without a token hash", c.Client)
	}
	tokens := tx.Bucket(bucketTokens)
	// The cache has this batch's changes; the bucket any record at all.
	if _, found := f.client(tx, c.Client); found || tx.Bucket(bucketClients).Get([]byte(c.Client)) != nil {
		return nil, reject(CodeAlreadyExists, "client %s exists", c.Client)
	}
	if tokens.Get(c.TokenHash[:]) != nil {
		return nil, reject(CodeAlreadyExists, "token already issued to another client")
	}
	if err := f.putClient(tx, ClientRecord{ID: c.Client, TokenHash: c.TokenHash, Quota: c.Quota}); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := tokens.Put(c.TokenHash[:], []byte(c.Client)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	f.staged.tokens = append(f.staged.tokens, tokenChange{hash: c.TokenHash, client: c.Client})
	return []Event{{Index: index, Kind: control.EventClientAdded}}, nil
}

func (f *FSM) setQuota(tx *bolt.Tx, index uint64, c SetQuota) ([]Event, *CommandError) {
	rec, found := f.client(tx, c.Client)
	if !found {
		return nil, reject(CodeNotFound, "client %s does not exist", c.Client)
	}
	rec.Quota = c.Quota
	f.updateClient(rec)
	return []Event{{Index: index, Kind: control.EventQuotaSet}}, nil
}
