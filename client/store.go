package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// DefaultEpochs is a stored blob's lifetime when StoreOptions.Epochs is 0.
const DefaultEpochs = 5

// maxRounds bounds how many committees one store writes to: an epoch
// change mid-write means collecting again, but epochs last far longer than
// a write, so needing a third committee means something else is wrong.
const maxRounds = 3

// StoreOptions configures one store.
type StoreOptions struct {
	// Epochs is the lifetime: the blob lives until the current epoch +
	// Epochs (the registration's end epoch). Default DefaultEpochs.
	Epochs uint64
	// Progress, if set, is called as sliver bytes go out to the nodes:
	// done of total (the total grows if a node needs a resend).
	Progress func(done, total int64)
	// Stats, if set, receives the store's per-stage timings and the
	// object it made.
	Stats *StoreStats
	// Permanent makes the client's object of the blob permanent: it
	// cannot be deleted before its end epoch. By default it is deletable
	// (Delete; the unused epochs are refunded).
	Permanent bool
	// Attributes are the object's attributes (keys lower-cased; bounded
	// by control.ValidateAttributes): "content-type" is what the gateway
	// answers as the bytes' Content-Type.
	Attributes map[string]string
}

// Store stores a blob (DESIGN §8): encode, register (the control plane
// derives the blob ID from the encoding, n, length and root, and charges
// the client's quota), send every shard owner its metadata and sliver
// pairs, collect signed confirmations from owners of a write quorum of
// shards, aggregate them into an availability certificate, and certify it
// at the control plane. It succeeds with up to f shards' owners down or
// lying. If the epoch changes mid-write, it collects again from the new
// committee. The client gets a blob object of its own (deletable unless
// opts.Permanent; StoreStats.Object), charged to its quota — unless it
// owns one of the same kind lasting as long already, which is reused:
// storing the same bytes again pays nothing twice. Storing content that is
// already certified returns the existing certificate without sending
// anything.
func (c *Client) Store(ctx context.Context, r io.Reader, opts StoreOptions) (crypto.BlobID, *crypto.Certificate, error) {
	if err := c.requireToken(ctx, "store"); err != nil {
		return crypto.BlobID{}, nil, err
	}
	blob, err := readBlob(r, c.cfg.MaxBlobLength)
	if err != nil {
		return crypto.BlobID{}, nil, err
	}
	return c.storeBlob(ctx, blob, opts, 0)
}

// storeBlob stores blob, which it must not modify (the encoding shares
// its memory). endEpoch, if not 0, is the registration's end epoch, fixed
// by the caller (a file's parts all end together); else it is the current
// epoch + opts.Epochs.
func (c *Client) storeBlob(ctx context.Context, blob []byte, opts StoreOptions, endEpoch uint64) (crypto.BlobID, *crypto.Certificate, error) {
	start := time.Now()
	var stats StoreStats
	defer func() {
		stats.Total = time.Since(start)
		if opts.Stats != nil {
			*opts.Stats = stats
		}
	}()
	epochs := opts.Epochs
	if epochs == 0 {
		epochs = DefaultEpochs
	}
	com, codec, enc, err := c.encodeForCurrent(ctx, blob, &stats)
	if err != nil {
		return crypto.BlobID{}, nil, err
	}
	// The slivers go back to the codec's pool once this store is done
	// with them and gRPC has let go of every chunk it sent without
	// copying (sliverRefs).
	refs := newSliverRefs(enc)
	defer refs.drop()
	id := enc.ID
	end := func(com *Committee) uint64 {
		if endEpoch != 0 {
			return endEpoch
		}
		return com.Epoch + epochs
	}

	t := time.Now()
	kind := objectKind{deletable: !opts.Permanent, attrs: NormalizeAttributes(opts.Attributes)}
	existing, object, err := c.register(ctx, enc, end(com), kind)
	stats.Register, stats.Object = time.Since(t), object
	if err != nil {
		return id, nil, err
	}
	if existing != nil {
		stats.AlreadyCertified, stats.Epoch = true, existing.CertifiedEpoch
		c.log.Info("blob already certified; returning its certificate", "blob", id, "epoch", existing.CertifiedEpoch)
		return id, existing.Certificate, nil
	}

	metaBytes, err := enc.Metadata.MarshalBinary()
	if err != nil {
		return id, nil, err
	}
	w := &write{
		c: c, enc: enc, refs: refs, params: codec.Params(), meta: metaBytes, kind: kind,
		prog: newProgress(opts.Progress), stats: &stats, endEpoch: end,
		stored: make(map[shardmap.NodeID]map[uint32]bool),
	}
	defer w.prog.stop()
	cert, err := w.rounds(ctx, com)
	return id, cert, err
}

// encodeForCurrent encodes the blob for the current committee, whose
// shard count the encoding depends on; the committee is returned too, as
// the first round's.
func (c *Client) encodeForCurrent(ctx context.Context, blob []byte, stats *StoreStats) (*Committee, *coding.Codec, *coding.Encoded, error) {
	com, err := c.currentCommittee(ctx, false)
	if err != nil {
		return nil, nil, nil, err
	}
	codec, err := c.storeCodec(len(com.Owners))
	if err != nil {
		return nil, nil, nil, err
	}
	t := time.Now()
	enc, err := codec.Encode(blob)
	stats.Encode, stats.Length = time.Since(t), uint64(len(blob))
	if err != nil {
		return nil, nil, nil, err
	}
	return com, codec, enc, nil
}

// rounds collects confirmations from com and certifies them. When that
// fails because the epoch moved under the write, it goes again with the
// new committee (up to maxRounds); any other failure ends the store.
func (w *write) rounds(ctx context.Context, com *Committee) (*crypto.Certificate, error) {
	c, id, stats := w.c, w.enc.ID, w.stats
	for round := 1; ; round++ {
		stats.Rounds = round
		cert, err := w.collect(ctx, com)
		if err == nil {
			t := time.Now()
			err = c.certify(ctx, cert)
			stats.Certify += time.Since(t)
			if err == nil {
				stats.SentBytes, stats.Epoch = w.prog.bytes(), cert.Epoch
				stats.Signers = len(cert.SignerIndices())
				stats.Confirmed = SignedWeight(cert, com.View())
				return cert, nil
			}
		}
		stats.SentBytes = w.prog.bytes()
		if round == maxRounds || ctx.Err() != nil {
			return nil, err
		}
		// Nodes refusing for the epoch, or the control plane refusing the
		// certificate's epoch, both show as failures here; whether the
		// epoch moved is the control plane's to say. The certificate was
		// refused by the leader (a follower forwards it), which may have
		// applied the epoch change before the voter asked here: a stale
		// answer would end the store instead of collecting again.
		next, nerr := c.currentCommittee(ctx, true)
		if nerr != nil || next.Epoch == com.Epoch {
			return nil, err
		}
		c.log.Info("epoch changed during the write; collecting again from the new committee",
			"blob", id, "from", com.Epoch, "to", next.Epoch, "cause", err)
		com = next
		if cert, done, err := w.registerAgainIfLapsed(ctx, w.endEpoch(com)); done {
			return cert, err
		}
	}
}

// registerAgainIfLapsed registers the blob again if its registration
// lapsed during the write (uncertified registrations lapse after a few
// epochs). done means the store ends here: registering failed, or the
// same content was certified meanwhile (cert is then its certificate).
func (w *write) registerAgainIfLapsed(ctx context.Context, endEpoch uint64) (cert *crypto.Certificate, done bool, err error) {
	c, id := w.c, w.enc.ID
	if st, serr := c.Status(ctx, id); serr != nil || st.Status != StatusExpired {
		return nil, false, nil
	}
	c.log.Info("the registration lapsed during the write; registering again", "blob", id)
	existing, object, err := c.register(ctx, w.enc, endEpoch, w.kind)
	w.stats.Object = object
	if err != nil {
		return nil, true, err
	}
	if existing != nil {
		return existing.Certificate, true, nil
	}
	// The nodes dropped the lapsed blob's data: send everything again.
	w.stored = make(map[shardmap.NodeID]map[uint32]bool)
	return nil, false, nil
}

// readBlob reads the whole blob, refusing one over max bytes without
// reading more than max+1.
func readBlob(r io.Reader, max uint64) ([]byte, error) {
	// A reader that knows its length (bytes.Reader, strings.Reader, a
	// file) is read into one buffer of that size: growing one from nothing
	// copies a large blob several times over.
	var size int64 = -1
	switch r := r.(type) {
	case interface{ Len() int }:
		size = int64(r.Len())
	case *os.File:
		if st, err := r.Stat(); err == nil && st.Mode().IsRegular() {
			if off, err := r.Seek(0, io.SeekCurrent); err == nil {
				size = st.Size() - off
			}
		}
	}
	buf := bytes.NewBuffer(nil)
	if size >= 0 && uint64(size) <= max {
		buf = bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead)) // room to see EOF without growing
	}
	_, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1))
	blob := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("client: reading the blob: %w", err)
	}
	if uint64(len(blob)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBlobTooLarge, max)
	}
	return blob, nil
}

// objectKind is what a store asks of the client's object of the blob.
type objectKind struct {
	deletable bool
	attrs     map[string]string
}

// register makes sure the client owns an object of the blob lasting to
// endEpoch — one it owns already (storing the same bytes again, or a
// store resumed after a stop, pays nothing twice), else a new
// registration's — and returns the object's ID, and the registry entry
// when the blob is certified already (the same content stored before).
func (c *Client) register(ctx context.Context, enc *coding.Encoded, endEpoch uint64, kind objectKind) (*BlobStatus, uint64, error) {
	object, err := c.reusableObject(ctx, enc.ID, endEpoch, kind)
	if err != nil {
		return nil, 0, err
	}
	if object == 0 {
		if object, err = c.registerObject(ctx, enc, endEpoch, kind); err != nil {
			return nil, 0, err
		}
	}
	st, err := c.Status(ctx, enc.ID)
	if err != nil {
		return nil, object, err
	}
	switch st.Status {
	case StatusCertified:
	case StatusRegistered:
		return nil, object, nil
	default:
		return nil, object, st.Err()
	}
	if st.Certificate == nil {
		return nil, object, fmt.Errorf("client: blob %s is certified but the registry holds no certificate", enc.ID)
	}
	return st, object, nil
}

// reusableObject returns the ID of a live object the client owns of the
// blob that is what a store with kind would create (0: none), moved to
// endEpoch first if it ends sooner: a store resumed in a later epoch pays
// for the epochs added, not for a second object.
func (c *Client) reusableObject(ctx context.Context, id crypto.BlobID, endEpoch uint64, kind objectKind) (uint64, error) {
	mine, err := c.ObjectsOf(ctx, id)
	if err != nil {
		return 0, err
	}
	var best *Object
	for _, o := range mine {
		if sameObjectKind(o, kind.deletable, kind.attrs) && (best == nil || o.EndEpoch > best.EndEpoch) {
			best = o
		}
	}
	if best == nil {
		return 0, nil
	}
	if best.EndEpoch < endEpoch {
		if err := c.extendTo(ctx, id, best.ID, endEpoch, newRequestID()); err != nil {
			return 0, objectError(err)
		}
	}
	return best.ID, nil
}

// registerObject registers the blob, creating the client's object of it,
// and checks that the control plane derived the same ID.
func (c *Client) registerObject(ctx context.Context, enc *coding.Encoded, endEpoch uint64, kind objectKind) (uint64, error) {
	root := enc.Metadata.PairsRoot()
	req := &weftv1.RegisterBlobRequest{
		Encoding: uint32(enc.Metadata.Encoding), Shards: enc.Metadata.Shards, Length: enc.Metadata.Length,
		Root: root[:], EndEpoch: endEpoch, Deletable: kind.deletable, Attributes: kind.attrs,
	}
	var resp *weftv1.RegisterBlobResponse
	reqID := newRequestID()
	err := c.controlCall(ctx, "RegisterBlob", func(ctx context.Context, conn *grpc.ClientConn) error {
		wctx, err := c.writeContext(ctx, reqID)
		if err != nil {
			return err
		}
		resp, err = weftv1.NewClientClient(conn).RegisterBlob(wctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	if crypto.BlobID(resp.BlobId) != enc.ID || len(resp.BlobId) != crypto.DigestSize {
		return 0, fmt.Errorf("client: the control plane derived blob ID %x from our registration, we computed %s", resp.BlobId, enc.ID)
	}
	c.wrote(resp.Index)
	return resp.ObjectId, nil
}

// certify submits the certificate. The control plane verifies it and
// accepts it only in its epoch (FailedPrecondition otherwise).
func (c *Client) certify(ctx context.Context, cert *crypto.Certificate) error {
	raw, err := cert.MarshalBinary()
	if err != nil {
		return err
	}
	reqID := newRequestID()
	return c.controlCall(ctx, "CertifyBlob", func(ctx context.Context, conn *grpc.ClientConn) error {
		wctx, err := c.writeContext(ctx, reqID)
		if err != nil {
			return err
		}
		var resp *weftv1.CertifyBlobResponse
		resp, err = weftv1.NewClientClient(conn).CertifyBlob(wctx, &weftv1.CertifyBlobRequest{BlobId: cert.BlobID[:], Certificate: raw})
		if err == nil {
			c.wrote(resp.Index)
		}
		return err
	})
}

// write is one store's distribution state, kept across rounds (epochs).
type write struct {
	c      *Client
	enc    *coding.Encoded
	refs   *sliverRefs // the readers of enc's slivers
	params coding.Params
	meta   []byte
	prog   *progress
	stats  *StoreStats
	// endEpoch is the registration's end epoch when writing to com.
	endEpoch func(com *Committee) uint64
	kind     objectKind // the client's object of the blob
	// stored records, per node, the shards whose pairs it acknowledged in
	// any round: after an epoch change a node that kept its shards only
	// needs to confirm again.
	stored map[shardmap.NodeID]map[uint32]bool
}

// nodeOutcome is what one node did in one round.
type nodeOutcome struct {
	member  Member
	sig     *crypto.Signature
	weight  uint64
	stored  []uint32  // shards whose pairs it acknowledged this round
	pairsAt time.Time // when they were acknowledged (zero if none sent)
	err     *NodeError
}

// collect sends every owner of the committee's epoch its pairs and gathers
// confirmations until owners of a write quorum of shards have signed (and
// a grace period more, for the rest), and aggregates them.
func (w *write) collect(ctx context.Context, com *Committee) (*crypto.Certificate, error) {
	start := time.Now()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan nodeOutcome, len(com.Members))
	jobs := w.jobs(com)
	w.start(cctx, com.Epoch, jobs, results)
	got := w.gather(com, start, results, jobs, cancel)
	if !got.lastPairs.IsZero() {
		w.stats.Transfer += got.lastPairs.Sub(start)
	}
	defer func() {
		elapsed := time.Since(start)
		if !got.lastPairs.IsZero() {
			elapsed -= got.lastPairs.Sub(start)
		}
		w.stats.Confirm += elapsed
	}()

	if got.weight < com.View().WriteQuorum() {
		return nil, w.quorumError(com, got.weight, got.failures)
	}
	cert, dropped, err := w.aggregate(com, got.signed)
	got.failures = append(got.failures, dropped...)
	if err != nil {
		var te *crypto.ThresholdError
		if errors.As(err, &te) {
			return nil, w.quorumError(com, te.Weight, got.failures)
		}
		return nil, fmt.Errorf("client: aggregating confirmations for %s: %w", w.enc.ID, err)
	}
	return cert, nil
}

// storeJob is one owner's part of a round: every shard it owns, to sign
// for, and those whose pairs it is sent (it acknowledged the others in an
// earlier round).
type storeJob struct {
	m            Member
	shards, send []uint32
	// accepted is set once the node took the blob's metadata (at once if
	// it is sent no pairs): a node still without it when a quorum has
	// signed is far behind the others (hedge.go).
	accepted *atomic.Bool
}

// jobs lists the owners of com's shards and what each is sent. The bytes
// to send join the progress total before any goes out.
func (w *write) jobs(com *Committee) []storeJob {
	var jobs []storeJob
	var bytes int64
	for _, m := range com.Members {
		shards := com.OwnedBy(m.Node)
		if len(shards) == 0 {
			continue
		}
		j := storeJob{m: m, shards: shards, accepted: new(atomic.Bool)}
		for _, s := range shards {
			if !w.stored[m.Node][s] {
				j.send = append(j.send, s)
				bytes += w.pairBytes()
			}
		}
		jobs = append(jobs, j)
	}
	w.prog.grow(bytes)
	return jobs
}

// start runs each job in its own goroutine, at most MaxParallel at once.
// Every job sends exactly one outcome, even one cancelled while it waits
// for a slot, so that gather can count them all in.
func (w *write) start(ctx context.Context, epoch uint64, jobs []storeJob, results chan<- nodeOutcome) {
	sem := make(chan struct{}, w.c.cfg.MaxParallel)
	for _, j := range jobs {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results <- nodeOutcome{member: j.m, err: &NodeError{Node: string(j.m.Node), Address: j.m.Address, Shards: j.shards, Op: "waiting for a slot", Err: ctx.Err()}}
				return
			}
			defer func() { <-sem }()
			results <- w.storeOn(ctx, epoch, j.m, j.shards, j.send, j.accepted)
		}()
	}
}

// confirmations is what one round gathered from the owners.
type confirmations struct {
	signed    []nodeOutcome
	weight    uint64 // shards the signers own
	failures  []*NodeError
	lastPairs time.Time // when the last pairs were acknowledged
}

// gather takes in all launched outcomes. Once owners of a write quorum of
// shards have signed, the others get a grace period, then cancel cuts them
// off — at once when every one of them is far behind (farBehind); what
// fails after the cut-off is not reported as a failure.
func (w *write) gather(com *Committee, start time.Time, results <-chan nodeOutcome, jobs []storeJob, cancel context.CancelFunc) confirmations {
	c := w.c
	quorum := com.View().WriteQuorum()
	launched := len(jobs)
	answered := make(map[shardmap.NodeID]bool, launched)
	var got confirmations
	var grace <-chan time.Time
	var quorumAt time.Time
	cutOff := false
	cut := func() {
		// The quorum is in; nodes still working will recover their
		// slivers from their peers once the blob is certified.
		cutOff, grace = true, nil
		cancel()
		w.stats.Waited = time.Since(quorumAt)
	}
	for received := 0; received < launched; {
		select {
		case o := <-results:
			received++
			answered[o.member.Node] = true
			w.noteStored(o)
			switch {
			case o.err != nil && cutOff:
				w.stats.CutOff = append(w.stats.CutOff, string(o.member.Node))
				continue
			case o.err != nil:
				got.failures = append(got.failures, o.err)
				c.log.Warn("storage node did not confirm", "blob", w.enc.ID, "epoch", com.Epoch, "node", o.member.Node, "op", o.err.Op, "err", o.err.Err)
			default:
				if o.pairsAt.After(got.lastPairs) {
					got.lastPairs = o.pairsAt
				}
				got.signed = append(got.signed, o)
				got.weight += o.weight
			}
			if got.weight < quorum || cutOff || received == launched {
				continue
			}
			if quorumAt.IsZero() && !w.checkSigned(com, &got) {
				continue // a bad signature fell out: the quorum is not in yet
			}
			if quorumAt.IsZero() {
				quorumAt = time.Now()
				if c.cfg.StragglerWait >= 0 {
					// Waiting a little costs less than what a node cut off
					// must do later: rebuild its pairs from its peers.
					w.stats.Grace = stragglerGrace(c.cfg.StragglerWait, quorumAt.Sub(start))
					grace = time.After(w.stats.Grace)
				}
			}
			if c.cfg.StragglerWait < 0 || farBehind(jobs, answered) {
				cut()
			}
		case <-grace:
			cut()
		}
	}
	if !quorumAt.IsZero() && !cutOff {
		w.stats.Waited = time.Since(quorumAt)
	}
	return got
}

// checkSigned verifies the confirmations gathered so far at once — one
// aggregate check, two pairings, however many signed — and drops any bad
// signer from got (as a failure). Confirmations are not checked one by one
// as they arrive: with a hundred owners that would be a hundred pairing
// checks per store, paid by every client for every blob. It reports
// whether what is left still verifies and carries a write quorum.
func (w *write) checkSigned(com *Committee, got *confirmations) bool {
	_, dropped, err := w.aggregate(com, got.signed)
	if len(dropped) > 0 {
		bad := make(map[string]bool, len(dropped))
		for _, d := range dropped {
			bad[d.Node] = true
		}
		got.failures = append(got.failures, dropped...)
		got.signed = slices.DeleteFunc(got.signed, func(o nodeOutcome) bool {
			if bad[string(o.member.Node)] {
				got.weight -= o.weight
				return true
			}
			return false
		})
	}
	return err == nil
}

// noteStored records the shards a node acknowledged, whether or not it
// went on to sign: a later round does not send them again.
func (w *write) noteStored(o nodeOutcome) {
	for _, s := range o.stored {
		if w.stored[o.member.Node] == nil {
			w.stored[o.member.Node] = make(map[uint32]bool)
		}
		w.stored[o.member.Node][s] = true
	}
}

func (w *write) quorumError(com *Committee, weight uint64, failures []*NodeError) error {
	// Committee order, not arrival order: the same outage reads the same.
	slices.SortFunc(failures, func(a, b *NodeError) int {
		i, _ := com.Index(shardmap.NodeID(a.Node))
		j, _ := com.Index(shardmap.NodeID(b.Node))
		return i - j
	})
	return &QuorumError{
		BlobID: w.enc.ID, Epoch: com.Epoch, Confirmed: weight, Needed: com.View().WriteQuorum(),
		Shards: com.View().Shards(), Failures: failures,
	}
}

// pairBytes is the size of one sliver pair of the blob.
func (w *write) pairBytes() int64 {
	return int64(w.params.NP+w.params.NS) * int64(w.enc.SymbolSize)
}

// aggregate builds the certificate, verifying the signatures with one
// aggregate check; should it fail, BuildCertificate checks them one by one
// and names a bad one, whose signer is dropped and logged rather than
// failing the write.
func (w *write) aggregate(com *Committee, signed []nodeOutcome) (*crypto.Certificate, []*NodeError, error) {
	sigs := make([]crypto.MemberSignature, len(signed))
	for i, o := range signed {
		sigs[i] = crypto.MemberSignature{Key: o.member.PublicKey, Signature: o.sig}
	}
	var dropped []*NodeError
	for {
		cert, err := crypto.BuildCertificate(com.View(), crypto.BlobStored{BlobID: w.enc.ID}, sigs)
		var se *crypto.SignerError
		if err == nil || !errors.As(err, &se) || se.Position < 0 || se.Position >= len(sigs) {
			return cert, dropped, err
		}
		m := signed[se.Position].member
		w.c.log.Warn("dropping a bad confirmation", "blob", w.enc.ID, "node", m.Node, "err", se.Err)
		dropped = append(dropped, &NodeError{Node: string(m.Node), Address: m.Address, Shards: com.OwnedBy(m.Node), Op: "aggregation", Err: se})
		sigs = append(sigs[:se.Position:se.Position], sigs[se.Position+1:]...)
		signed = append(signed[:se.Position:se.Position], signed[se.Position+1:]...)
	}
}

// maxChunk is the largest sliver chunk sent in one message (storage.proto):
// half the nodes' 16 MiB message cap. A sliver that fits is sent whole,
// and the node keeps the message's buffer instead of copying it.
const maxChunk = 8 << 20

// confirmAttempts is how often a confirmation is asked for while the node
// answers FailedPrecondition: it may still be writing the pairs it just
// acknowledged to disk, or learning the epoch from the control plane.
const confirmAttempts = 5

// nodeLagging are answers that mean the node has not caught up with the
// control plane yet (the blob's registration, the epoch): worth a few
// retries, as they pass once its watch delivers the change.
func nodeLagging(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition:
		return true
	}
	return false
}

// storeOn writes to one node: metadata and the pairs it still lacks, then
// asks for its signed confirmation (checked later, with the others: see
// checkSigned).
func (w *write) storeOn(ctx context.Context, epoch uint64, m Member, shards, send []uint32, accepted *atomic.Bool) nodeOutcome {
	c := w.c
	out := nodeOutcome{member: m}
	fail := func(op string, err error) nodeOutcome {
		out.err = &NodeError{Node: string(m.Node), Address: m.Address, Shards: shards, Op: op, Err: err}
		return out
	}
	if m.Address == "" {
		return fail("dial", errors.New("the node registered no address"))
	}
	conn, err := c.conn(ctx, m.Address)
	if err != nil {
		return fail("dial", err)
	}
	sc := weftv1.NewStorageClient(conn)
	id := w.enc.ID
	start := time.Now()
	if len(send) > 0 {
		err := c.retry(ctx, c.cfg.NodeTimeout, c.policy(nodeLagging), func(ctx context.Context) error {
			_, err := sc.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: id[:], Metadata: w.meta})
			return err
		})
		if err != nil {
			return fail("StoreMetadata", err)
		}
		accepted.Store(true)
		if err := w.sendAll(ctx, sc, send); err != nil {
			return fail("StorePairs", err)
		}
		out.stored, out.pairsAt = send, time.Now()
		c.log.Debug("pairs stored", "blob", id, "node", m.Node, "pairs", len(send), "took", out.pairsAt.Sub(start))
	}

	accepted.Store(true)
	var resp *weftv1.GetConfirmationResponse
	err = c.retry(ctx, c.cfg.NodeTimeout, retryPolicy{attempts: max(confirmAttempts, 1+c.cfg.Retries), also: nodeLagging}, func(ctx context.Context) error {
		var err error
		resp, err = sc.GetConfirmation(ctx, &weftv1.GetConfirmationRequest{BlobId: id[:], Epoch: epoch})
		return err
	})
	if err != nil {
		return fail("GetConfirmation", err)
	}
	if resp.Epoch != epoch {
		return fail("GetConfirmation", fmt.Errorf("confirmation for epoch %d, asked for epoch %d", resp.Epoch, epoch))
	}
	sig, err := crypto.SignatureFromBytes(resp.Signature)
	if err != nil {
		return fail("GetConfirmation", err)
	}
	// Not verified here: gather checks the signatures together, under the
	// committee's keys for the members (not the keys nodes claim), once
	// owners of a quorum have answered (checkSigned).
	out.sig, out.weight = sig, uint64(m.Weight)
	c.log.Debug("confirmed", "blob", id, "node", m.Node, "took", time.Since(start))
	return out
}

// sendAll sends a node its pairs over up to StreamsPerNode concurrent
// streams. A node verifies and stores the pairs of one stream one after
// the other; several streams let it check them on all its cores.
func (w *write) sendAll(ctx context.Context, sc weftv1.StorageClient, shards []uint32) error {
	c := w.c
	k := min(c.cfg.StreamsPerNode, len(shards))
	per := (len(shards) + k - 1) / k
	errs := make([]error, k)
	var wg sync.WaitGroup
	for g := range k {
		group := shards[min(g*per, len(shards)):min((g+1)*per, len(shards))]
		if len(group) == 0 {
			continue
		}
		wg.Go(func() {
			attempt := 0
			errs[g] = c.retry(ctx, c.cfg.NodeTimeout, c.policy(nodeLagging), func(ctx context.Context) error {
				if attempt++; attempt > 1 {
					w.prog.grow(int64(len(group)) * w.pairBytes()) // sent again
				}
				return w.sendPairs(ctx, sc, group)
			})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendPairs streams the pairs of the given shards, each pair's primary
// then its secondary, in chunks, and checks that the node acknowledged
// every one.
func (w *write) sendPairs(ctx context.Context, sc weftv1.StorageClient, shards []uint32) error {
	id := w.enc.ID
	stream, err := sc.StorePairs(ctx, grpc.ForceCodecV2(sendCodec))
	if err != nil {
		return err
	}
	for _, shard := range shards {
		pair := w.enc.PairOnShard(w.params, int(shard))
		for _, sl := range []coding.Sliver{pair.Primary, pair.Secondary} {
			for off := 0; off < len(sl.Data); off += maxChunk {
				end := min(off+maxChunk, len(sl.Data))
				w.refs.hold() // let go by the codec, once gRPC no longer reads the data
				err := stream.SendMsg(&wire.TrackedChunk{SliverChunk: &weftv1.SliverChunk{
					BlobId: id[:], Axis: uint32(sl.Axis), Index: sl.Index, SymbolSize: uint32(sl.SymbolSize),
					Offset: uint64(off), Data: sl.Data[off:end],
				}, Done: w.refs})
				if err != nil {
					// Send reports io.EOF when the server ended the
					// stream; its reason comes with CloseAndRecv.
					if errors.Is(err, io.EOF) {
						_, err = stream.CloseAndRecv()
					}
					return err
				}
				w.prog.add(int64(end - off))
			}
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	acked := make(map[uint32]bool, len(resp.Pairs))
	for _, p := range resp.Pairs {
		acked[p] = true
	}
	var missing []uint32
	for _, shard := range shards {
		if p := uint32(w.params.PairForShard(int(shard), id)); !acked[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the node acknowledged pairs %v but not %v", resp.Pairs, missing)
	}
	return nil
}

// sendCodec sends a store's chunks without copying their data: slivers
// are not modified while gRPC holds them (sliverRefs).
var sendCodec = wire.NewChunkCodec(wire.WithZeroCopySend(64 << 10))

// sliverRefs counts what may still read an encode's slivers: the store
// itself, and every chunk sent (wire.TrackedChunk) until gRPC lets go of
// it — written out, or dropped with a cancelled stream; a cut-off
// straggler's stream may still be queued in the transport after its
// goroutine returned. The last to let go releases the encode to its
// codec's pool (coding.Encoded.Release). A chunk gRPC never marshalled
// keeps its hold, and the encode is then left to the garbage collector.
type sliverRefs struct {
	n   atomic.Int64
	enc *coding.Encoded
}

func newSliverRefs(enc *coding.Encoded) *sliverRefs {
	r := &sliverRefs{enc: enc}
	r.n.Store(1)
	return r
}

func (r *sliverRefs) hold() { r.n.Add(1) }

func (r *sliverRefs) drop() {
	if r.n.Add(-1) == 0 {
		r.enc.Release()
	}
}

// Get is never called (wire.TrackedChunk).
func (r *sliverRefs) Get(int) *[]byte { panic("client: sliverRefs lends no buffers") }

// Put is gRPC letting go of a chunk's data.
func (r *sliverRefs) Put(*[]byte) { r.drop() }
