package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/storage"
)

// writer drives the storage API by hand (the client package builds on the
// same calls): it is what these tests use to put exact bytes on nodes.
type writer struct {
	t     *testing.T
	net   *devnet.Network
	conn  *grpc.ClientConn // control plane
	codec *coding.Codec
}

func startNet(t *testing.T, cfg devnet.Config) *writer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg.Dir = t.TempDir()
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	net, err := devnet.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	conn := dial(t, net.ControlAddr)
	codec, err := coding.New(cfg.Shards)
	if err != nil {
		t.Fatal(err)
	}
	return &writer{t: t, net: net, conn: conn, codec: codec}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20), grpc.MaxCallSendMsgSize(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (w *writer) clientCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+w.net.ClientToken)
}

// register encodes and registers a blob.
func (w *writer) register(blob []byte) *coding.Encoded {
	w.t.Helper()
	enc, err := w.codec.Encode(blob)
	if err != nil {
		w.t.Fatal(err)
	}
	w.registerEncoded(enc)
	return enc
}

func (w *writer) registerEncoded(enc *coding.Encoded) { w.registerUntil(enc, 10) }

func (w *writer) registerUntil(enc *coding.Encoded, endEpoch uint64) {
	w.t.Helper()
	resp, err := weftv1.NewClientClient(w.conn).RegisterBlob(w.clientCtx(), &weftv1.RegisterBlobRequest{
		Encoding: uint32(enc.Metadata.Encoding), Shards: enc.Metadata.Shards, Length: enc.Metadata.Length,
		Root: pairsRoot(enc.Metadata), EndEpoch: endEpoch,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if crypto.BlobID(resp.BlobId) != enc.ID {
		w.t.Fatalf("control plane derived %x, encoder %s", resp.BlobId, enc.ID)
	}
}

func pairsRoot(m *crypto.Metadata) []byte { r := m.PairsRoot(); return r[:] }

// storeOn sends metadata and the pairs of the node's shards to node i.
func (w *writer) storeOn(i int, enc *coding.Encoded) error {
	conn := dial(w.t, w.net.NodeAddr(i))
	st := weftv1.NewStorageClient(conn)
	raw, _ := enc.Metadata.MarshalBinary()
	ctx := context.Background()
	if _, err := st.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: raw}); err != nil {
		return err
	}
	stream, err := st.StorePairs(ctx)
	if err != nil {
		return err
	}
	for _, shard := range w.net.Owned(i) {
		pair := enc.PairOnShard(w.codec.Params(), int(shard))
		for _, sl := range []coding.Sliver{pair.Primary, pair.Secondary} {
			if err := sendSliver(stream, enc.ID, sl); err != nil {
				return err
			}
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func sendSliver(stream weftv1.Storage_StorePairsClient, id crypto.BlobID, sl coding.Sliver) error {
	const chunk = 64 << 10
	for off := 0; off == 0 || off < len(sl.Data); off += chunk {
		end := min(off+chunk, len(sl.Data))
		err := stream.Send(&weftv1.SliverChunk{BlobId: id[:], Axis: uint32(sl.Axis), Index: sl.Index,
			SymbolSize: uint32(sl.SymbolSize), Offset: uint64(off), Data: sl.Data[off:end]})
		if err != nil {
			return err
		}
		if end == len(sl.Data) {
			break
		}
	}
	return nil
}

// certify collects confirmations from the given nodes and certifies.
func (w *writer) certify(id crypto.BlobID, nodes []int) (*crypto.Certificate, error) {
	ctx := context.Background()
	committee, err := control.NewClient(w.conn, "", nil).Committee(ctx, 0)
	if err != nil {
		return nil, err
	}
	view := committee.View()
	var sigs []crypto.MemberSignature
	for _, i := range nodes {
		resp, err := weftv1.NewStorageClient(dial(w.t, w.net.NodeAddr(i))).GetConfirmation(ctx,
			&weftv1.GetConfirmationRequest{BlobId: id[:], Epoch: committee.Epoch})
		if err != nil {
			return nil, err
		}
		pk, _ := crypto.PublicKeyFromBytes(resp.PublicKey)
		sig, _ := crypto.SignatureFromBytes(resp.Signature)
		sigs = append(sigs, crypto.MemberSignature{Key: pk, Signature: sig})
	}
	cert, err := crypto.BuildCertificate(view, crypto.BlobStored{BlobID: id}, sigs)
	if err != nil {
		return nil, err
	}
	raw, _ := cert.MarshalBinary()
	_, err = weftv1.NewClientClient(w.conn).CertifyBlob(w.clientCtx(), &weftv1.CertifyBlobRequest{BlobId: id[:], Certificate: raw})
	return cert, err
}

func randomBlob(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func allNodes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Slivers written to every node verify, confirmations aggregate into a
// certificate the control plane accepts, and every sliver reads back.
func TestStoreConfirmCertifyRead(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	blob := randomBlob(t, 300_000)
	enc := w.register(blob)
	for i := range 7 {
		if err := w.storeOn(i, enc); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	cert, err := w.certify(enc.ID, allNodes(7))
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.SignerIndices()) != 7 {
		t.Fatalf("%d signers", len(cert.SignerIndices()))
	}
	// Every primary sliver reads back as written, from the node holding it.
	p := w.codec.Params()
	var slivers []coding.Sliver
	for i := range 7 {
		st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(i)))
		for _, shard := range w.net.Owned(i) {
			pair := enc.PairOnShard(p, int(shard))
			sl := readSliver(t, st, enc.ID, pair.Primary.SliverRef)
			if string(sl.Data) != string(pair.Primary.Data) {
				t.Fatalf("node %d shard %d: sliver differs", i, shard)
			}
			slivers = append(slivers, sl)
		}
	}
	got, err := w.codec.Decode(enc.Metadata, slivers[:p.NP])
	if err != nil || string(got) != string(blob) {
		t.Fatalf("decode: %v", err)
	}
}

func readSliver(t *testing.T, st weftv1.StorageClient, id crypto.BlobID, ref coding.SliverRef) coding.Sliver {
	t.Helper()
	stream, err := st.GetSliver(context.Background(), &weftv1.GetSliverRequest{BlobId: id[:], Axis: uint32(ref.Axis), Index: ref.Index})
	if err != nil {
		t.Fatal(err)
	}
	sl := coding.Sliver{SliverRef: ref}
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return sl
		}
		if err != nil {
			t.Fatal(err)
		}
		sl.SymbolSize = int(c.SymbolSize)
		sl.Data = append(sl.Data, c.Data...)
	}
}

// A node stopped during a write recovers its missing pairs after it
// restarts, fetching about the size of its slivers, not the blob.
func TestRestartedNodeRecoversMissedSlivers(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	if err := w.net.StopNode(6); err != nil {
		t.Fatal(err)
	}
	blob := randomBlob(t, 2<<20)
	enc := w.register(blob)
	for i := range 6 {
		if err := w.storeOn(i, enc); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := w.certify(enc.ID, allNodes(6)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.net.StartNode(ctx, 6); err != nil {
		t.Fatal(err)
	}
	owned := w.net.Owned(6)
	node := w.net.Node(6)
	eventually(t, 30*time.Second, "recovery of node 6's pairs", func() bool {
		for _, shard := range owned {
			if has, _ := node.Store().HasPair(shard, enc.ID); !has {
				return false
			}
		}
		return true
	})
	st := node.Stats()
	sliverBytes := int64(0)
	for _, shard := range owned {
		pair := enc.PairOnShard(w.codec.Params(), int(shard))
		sliverBytes += int64(len(pair.Primary.Data) + len(pair.Secondary.Data))
	}
	ratio := float64(st.RecoveryBytesFetched) / float64(sliverBytes)
	t.Logf("recovered %d pairs: fetched %d bytes for %d bytes of slivers (%.2fx; blob %d bytes)", len(owned), st.RecoveryBytesFetched, sliverBytes, ratio, len(blob))
	if ratio < 0.8 || ratio > 1.3 { // below 1: its other shards supply symbols locally
		t.Fatalf("recovery fetched %.2fx its slivers' size", ratio)
	}
	// Now it confirms like the others.
	if _, err := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(6))).GetConfirmation(context.Background(),
		&weftv1.GetConfirmationRequest{BlobId: enc.ID[:], Epoch: node.Assignment().Epoch}); err != nil {
		t.Fatal(err)
	}
}

// Bad input gets the right code and changes nothing.
func TestStorageRejectsBadInput(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 8})
	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))
	ctx := context.Background()
	enc, err := w.codec.Encode(randomBlob(t, 5000))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := enc.Metadata.MarshalBinary()
	code := func(err error) codes.Code { return status.Code(err) }

	_, err = st.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: raw})
	if code(err) != codes.NotFound {
		t.Fatalf("unregistered blob: %v", err)
	}
	w.registerEncoded(enc)
	_, err = st.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:5], Metadata: raw})
	if code(err) != codes.InvalidArgument {
		t.Fatalf("short ID: %v", err)
	}
	_, err = st.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: raw[:len(raw)-1]})
	if code(err) != codes.InvalidArgument {
		t.Fatalf("truncated metadata: %v", err)
	}
	other, _ := w.codec.Encode([]byte("other"))
	otherRaw, _ := other.Metadata.MarshalBinary()
	_, err = st.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: otherRaw})
	if code(err) != codes.InvalidArgument {
		t.Fatalf("metadata of another blob: %v", err)
	}
	// Pairs before metadata.
	stream, _ := st.StorePairs(ctx)
	shard := w.net.Owned(0)[0]
	pair := enc.PairOnShard(w.codec.Params(), int(shard))
	_ = sendSliver(stream, enc.ID, pair.Primary)
	if _, err := stream.CloseAndRecv(); code(err) != codes.FailedPrecondition {
		t.Fatalf("pairs before metadata: %v", err)
	}
	if _, err := st.StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: raw}); err != nil {
		t.Fatal(err)
	}
	// A corrupted sliver is rejected, and nothing of the pair is stored.
	bad := pair.Primary
	bad.Data = append([]byte(nil), bad.Data...)
	bad.Data[3] ^= 1
	stream, _ = st.StorePairs(ctx)
	_ = sendSliver(stream, enc.ID, bad)
	_ = sendSliver(stream, enc.ID, pair.Secondary)
	if _, err := stream.CloseAndRecv(); code(err) != codes.InvalidArgument {
		t.Fatalf("corrupted sliver: %v", err)
	}
	if has, _ := w.net.Node(0).Store().HasPair(shard, enc.ID); has {
		t.Fatal("a rejected pair was stored")
	}
	// A pair of a shard the node does not own.
	var foreign uint32
	for s := range uint32(8) {
		if !contains(w.net.Owned(0), s) {
			foreign = s
		}
	}
	fp := enc.PairOnShard(w.codec.Params(), int(foreign))
	stream, _ = st.StorePairs(ctx)
	_ = sendSliver(stream, enc.ID, fp.Primary)
	if _, err := stream.CloseAndRecv(); code(err) != codes.FailedPrecondition {
		t.Fatalf("foreign shard: %v", err)
	}
	// No confirmation before the pairs, none for another epoch.
	_, err = st.GetConfirmation(ctx, &weftv1.GetConfirmationRequest{BlobId: enc.ID[:], Epoch: 1})
	if code(err) != codes.FailedPrecondition {
		t.Fatalf("confirmation without pairs: %v", err)
	}
	if err := w.storeOn(0, enc); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetConfirmation(ctx, &weftv1.GetConfirmationRequest{BlobId: enc.ID[:], Epoch: 2}); code(err) != codes.FailedPrecondition {
		t.Fatalf("confirmation for another epoch: %v", err)
	}
	if _, err := st.GetConfirmation(ctx, &weftv1.GetConfirmationRequest{BlobId: enc.ID[:], Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	// Reads of unknown things.
	var unknown crypto.BlobID
	unknown[0] = 7
	if _, err := st.GetMetadata(ctx, &weftv1.GetMetadataRequest{BlobId: unknown[:]}); code(err) != codes.NotFound {
		t.Fatalf("unknown metadata: %v", err)
	}
	rs, _ := st.GetSliver(ctx, &weftv1.GetSliverRequest{BlobId: unknown[:], Axis: 0, Index: 0})
	if _, err := rs.Recv(); code(err) != codes.NotFound {
		t.Fatalf("unknown sliver: %v", err)
	}
	if _, err := st.SignInvalid(ctx, &weftv1.SignInvalidRequest{Proof: []byte("nonsense")}); code(err) != codes.InvalidArgument {
		t.Fatalf("malformed proof: %v", err)
	}
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// mixedEncoding builds what a malicious writer could publish: pairs taken
// from the encodings of two different blobs of one length. Every sliver
// matches its own hash in the metadata, but together they are no codeword.
func mixedEncoding(t *testing.T, codec *coding.Codec, length int) *coding.Encoded {
	a, err := codec.Encode(randomBlob(t, length))
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.Encode(randomBlob(t, length))
	if err != nil {
		t.Fatal(err)
	}
	meta := *a.Metadata
	meta.Pairs = append([]crypto.PairHashes(nil), a.Metadata.Pairs...)
	mixed := &coding.Encoded{Metadata: &meta, SymbolSize: a.SymbolSize, Pairs: append([]coding.SliverPair(nil), a.Pairs...)}
	for p := range len(meta.Pairs) {
		if p%2 == 1 {
			meta.Pairs[p] = b.Metadata.Pairs[p]
			mixed.Pairs[p] = b.Pairs[p]
		}
	}
	mixed.ID = meta.BlobID()
	return mixed
}

// certifyInconsistentWithoutNode6 stops node 6 of a 7-node network and
// stores and certifies on the other six an inconsistently encoded blob of
// length bytes: node 6, started again, recovers its slivers and finds the
// inconsistency.
func (w *writer) certifyInconsistentWithoutNode6(t *testing.T, length int) *coding.Encoded {
	t.Helper()
	if err := w.net.StopNode(6); err != nil {
		t.Fatal(err)
	}
	enc := mixedEncoding(t, w.codec, length)
	w.registerEncoded(enc)
	for i := range 6 {
		if err := w.storeOn(i, enc); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := w.certify(enc.ID, allNodes(6)); err != nil {
		t.Fatal(err)
	}
	return enc
}

// A node that recovers a sliver of an inconsistently encoded blob proves
// it, the committee checks the proof and signs, the control plane marks
// the blob invalid, and every node drops its data.
func TestInconsistentBlobEndsInvalid(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	enc := w.certifyInconsistentWithoutNode6(t, 100_000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Before anyone proves it, two readers decoding from disjoint sets of
	// slivers get the same answer: not bytes, but "inconsistent".
	reader, err := client.New(client.Config{Control: []string{w.net.ControlAddr}, NodeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for _, down := range [][]int{{0, 1, 2}, {3, 4, 5}} {
		for _, i := range down {
			if err := w.net.StopNode(i); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := reader.Read(ctx, enc.ID, client.ReadOptions{}); !errors.Is(err, client.ErrInconsistentBlob) {
			t.Fatalf("nodes %v down: read returned %d bytes, err %v", down, len(got), err)
		}
		for _, i := range down {
			if err := w.net.StartNode(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.net.StartNode(ctx, 6); err != nil {
		t.Fatal(err)
	}
	control := weftv1.NewClientClient(w.conn)
	eventually(t, 30*time.Second, "the blob marked invalid", func() bool {
		st, err := control.BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: enc.ID[:]})
		return err == nil && st.Status == "invalid"
	})
	if _, err := reader.Read(ctx, enc.ID, client.ReadOptions{}); !errors.Is(err, client.ErrInvalidBlob) {
		t.Fatalf("reading the invalid blob: %v", err)
	}
	for i := range 7 {
		node := w.net.Node(i)
		eventually(t, 10*time.Second, "node dropping the invalid blob", func() bool {
			invalid, _ := node.Store().IsInvalid(enc.ID)
			_, err := node.Store().AnyMetadata(enc.ID)
			return invalid && errors.Is(err, storage.ErrNotFound)
		})
	}
	// And it takes no new data for it.
	raw, _ := enc.Metadata.MarshalBinary()
	_, err = weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0))).StoreMetadata(ctx, &weftv1.StoreMetadataRequest{BlobId: enc.ID[:], Metadata: raw})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("metadata of an invalid blob: %v", err)
	}
}

// A range read of an inconsistently encoded blob keeps the promise of
// client/DESIGN.md ("What a range read promises, and what it does not").
// Before anyone proves the blob inconsistent, Read fails with
// ErrInconsistentBlob, while a range read whose covering slivers' owners
// answer returns the bytes the writer committed to there: the mixed
// encoding's systematic primaries cut by SystematicSpans, not anything a
// decode makes of the blob. With any of those owners down it falls back
// to a whole read and fails as Read does: success with those bytes, or
// that error, are the only answers. Once the blob is marked invalid,
// ranges fail with ErrInvalidBlob.
func TestReadRangeOfInconsistentBlob(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	const size = 100_000
	enc := w.certifyInconsistentWithoutNode6(t, size) // node 6 stays down until the blob is proved
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p := w.codec.Params()
	row, _ := p.SystematicLayout(enc.SymbolSize)

	// committed is what the writer committed to at [off, off+n): primary
	// sliver i < nP is row i of the blob, and its hash is in the metadata.
	committed := func(off, n int) []byte {
		spans, err := p.SystematicSpans(size, uint64(off), uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		for _, sp := range spans {
			sl := enc.Pairs[sp.Sliver].Primary
			if sl.Axis != crypto.Primary || sl.Index != sp.Sliver {
				t.Fatalf("pair %d holds %s, not primary sliver %d", sp.Sliver, sl.SliverRef, sp.Sliver)
			}
			out = append(out, sl.Data[sp.Start:sp.End]...)
		}
		return out
	}
	// ownerOf[i] is the node that owns the shard of row i's pair.
	shardOwner := make(map[uint32]int)
	for i := range 7 {
		for _, shard := range w.net.Owned(i) {
			shardOwner[shard] = i
		}
	}
	ownerOf := make([]int, p.NP)
	for i := range p.NP {
		node, ok := shardOwner[uint32(p.ShardForPair(i, enc.ID))]
		if !ok {
			t.Fatalf("no node owns the shard of pair %d", i)
		}
		ownerOf[i] = node
	}
	// mixedEncoding took the odd pairs from a second blob: rows 1, 3, 5, 7
	// are its rows, the others the first blob's. The ranges avoid rows on
	// node 6 (it holds 3 of the 21 shards, so such rows exist), which the
	// six others serve without a fallback: one byte of the first blob's,
	// a range across a boundary (a row of each blob; if there is one,
	// rows on two nodes, so that each can be down alone), and half of a
	// row the mix replaced.
	up := func(i int) bool { return ownerOf[i] != 6 }
	var used []int // rows the ranges picked so far, to spread them
	pick := func(conds ...func(i int) bool) int {
		for _, fresh := range []bool{true, false} {
			for _, ok := range conds {
				for i := range p.NP {
					if ok(i) && !(fresh && slices.Contains(used, i)) {
						used = append(used, i)
						return i
					}
				}
			}
		}
		t.Fatalf("no row fits (owners %v)", ownerOf)
		return -1
	}
	boundary := pick( // the row after the boundary
		func(i int) bool { return i > 0 && up(i-1) && up(i) && ownerOf[i-1] != ownerOf[i] },
		func(i int) bool { return i > 0 && up(i-1) && up(i) })
	used = append(used, boundary-1)
	one := pick(func(i int) bool { return i%2 == 0 && up(i) })
	changed := pick(func(i int) bool { return i%2 == 1 && up(i) })
	ranges := []struct {
		name   string
		off, n int
	}{
		{"one byte", one*row + row/3, 1},
		{"across a sliver boundary", boundary*row - 10, 20},
		{"in a row the mix replaced", changed*row + row/4, row / 2},
	}

	// (Short backoffs: a read gives up on a stopped node sooner.)
	reader, err := client.New(client.Config{Control: []string{w.net.ControlAddr}, NodeTimeout: 5 * time.Second,
		Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	setDown := func(nodes []int, down bool) {
		for _, i := range nodes {
			var err error
			if down {
				err = w.net.StopNode(i)
			} else {
				err = w.net.StartNode(ctx, i)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, r := range ranges {
		want := committed(r.off, r.n)
		spans, _ := p.SystematicSpans(size, uint64(r.off), uint64(r.n))
		var rows, owners []int
		for _, sp := range spans {
			rows = append(rows, int(sp.Sliver))
			if !slices.Contains(owners, ownerOf[sp.Sliver]) {
				owners = append(owners, ownerOf[sp.Sliver])
			}
		}
		// Read it with no covering owner down (and with two other nodes
		// down too), then with each covering owner down, then with all
		// of them (at most 2 nodes: with node 6, 9 of the 21 shards down,
		// so a whole read still finds its 9 primaries).
		var others []int
		for i := range 6 {
			if !slices.Contains(owners, i) {
				others = append(others, i)
			}
		}
		downSets := [][]int{nil, others[:2]}
		for _, o := range owners {
			downSets = append(downSets, []int{o})
		}
		if len(owners) > 1 {
			downSets = append(downSets, owners)
		}
		for _, down := range downSets {
			setDown(down, true)
			var st client.ReadStats
			b, err := reader.ReadRange(ctx, enc.ID, int64(r.off), int64(r.n), client.ReadOptions{Stats: &st})
			setDown(down, false)
			what := fmt.Sprintf("%s (%d bytes at %d, rows %v on nodes %v), nodes %v and 6 down", r.name, r.n, r.off, rows, owners, down)
			t.Logf("%s: %v; stats %+v", what, err, st)
			if !slices.ContainsFunc(down, func(i int) bool { return slices.Contains(owners, i) }) {
				// Every covering sliver's owner answers: no fallback,
				// and the bytes committed there, whoever else is down.
				if err != nil || st.RangeFallback != nil || !bytes.Equal(b, want) {
					t.Fatalf("%s: %d bytes (the committed ones: %t), err %v, fallback %v", what, len(b), bytes.Equal(b, want), err, st.RangeFallback)
				}
				continue
			}
			// A covering sliver cannot be had: the read falls back to a
			// whole read, whose decode fails the consistent-read check.
			var se *client.SliverError
			if !errors.As(st.RangeFallback, &se) || !slices.Contains(rows, int(se.Index)) {
				t.Fatalf("%s: fallback %v, want a covering sliver's failure", what, st.RangeFallback)
			}
			if !errors.Is(err, client.ErrInconsistentBlob) || b != nil || st.Decodes == 0 {
				t.Fatalf("%s: fell back (%v), then %d bytes (the committed ones: %t), err %v, %d decodes; want ErrInconsistentBlob after a decode",
					what, st.RangeFallback, len(b), b != nil && bytes.Equal(b, want), err, st.Decodes)
			}
		}
	}

	// Read, which checks consistency, refuses the blob.
	if got, err := reader.Read(ctx, enc.ID, client.ReadOptions{}); !errors.Is(err, client.ErrInconsistentBlob) {
		t.Fatalf("whole read: %d bytes, err %v; want ErrInconsistentBlob", len(got), err)
	}

	// Node 6 recovers its slivers, proves the blob inconsistent, and the
	// committee has it marked invalid: the status is checked first.
	setDown([]int{6}, false)
	control := weftv1.NewClientClient(w.conn)
	eventually(t, 30*time.Second, "the blob marked invalid", func() bool {
		st, err := control.BlobStatus(ctx, &weftv1.BlobStatusRequest{BlobId: enc.ID[:]})
		return err == nil && st.Status == "invalid"
	})
	for _, r := range ranges {
		if b, err := reader.ReadRange(ctx, enc.ID, int64(r.off), int64(r.n), client.ReadOptions{}); !errors.Is(err, client.ErrInvalidBlob) || b != nil {
			t.Fatalf("%s of the invalid blob: %d bytes, err %v; want ErrInvalidBlob", r.name, len(b), err)
		}
	}
	if _, err := reader.Read(ctx, enc.ID, client.ReadOptions{}); !errors.Is(err, client.ErrInvalidBlob) {
		t.Fatalf("reading the invalid blob: %v", err)
	}
}

// Recovery with a lying peer (it spoils every symbol it serves) still
// rebuilds the right slivers: the optimistic attempt fails its check, the
// proofs expose the liar's symbols, and the rest suffice.
func TestRecoveryDespiteLyingPeer(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21, Faults: map[int]storage.Faults{0: {BadSymbols: true, CorruptSlivers: true}}})
	if err := w.net.StopNode(6); err != nil {
		t.Fatal(err)
	}
	enc := w.register(randomBlob(t, 500_000))
	for i := range 6 {
		if err := w.storeOn(i, enc); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := w.certify(enc.ID, allNodes(6)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.net.StartNode(ctx, 6); err != nil {
		t.Fatal(err)
	}
	node := w.net.Node(6)
	owned := w.net.Owned(6)
	eventually(t, 30*time.Second, "recovery despite the liar", func() bool {
		for _, shard := range owned {
			if has, _ := node.Store().HasPair(shard, enc.ID); !has {
				return false
			}
		}
		return true
	})
	for _, shard := range owned {
		want := enc.PairOnShard(w.codec.Params(), int(shard))
		got, err := node.Store().Sliver(shard, enc.ID, crypto.Primary)
		if err != nil || string(got.Data) != string(want.Primary.Data) {
			t.Fatalf("shard %d: recovered primary differs (%v)", shard, err)
		}
	}
	if st := node.Stats(); st.Rejected == 0 {
		t.Fatal("the liar's symbols were not counted as rejected")
	}
}

// Expiry is a committed event: once the control plane expires a blob,
// every node deletes its data, and not before.
func TestExpiredBlobsAreCollected(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 8})
	short, err := w.codec.Encode(randomBlob(t, 10_000))
	if err != nil {
		t.Fatal(err)
	}
	w.registerUntil(short, 2)
	w.storeRegistered(short)
	long := w.storeEverywhere(randomBlob(t, 10_000))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	w.awaitCollected(short.ID)
	for i := range 4 {
		store := w.net.Node(i).Store()
		for _, shard := range w.net.Owned(i) {
			if has, _ := store.HasPair(shard, long.ID); !has {
				t.Fatalf("node %d lost the live blob's pair on shard %d", i, shard)
			}
			if has, _ := store.HasPair(shard, short.ID); has {
				t.Fatalf("node %d kept the expired blob's pair on shard %d", i, shard)
			}
		}
	}
}

// A sliver whose bytes rot on disk is caught by its CRC when it is read:
// the node refuses it (DataLoss, never the bytes), drops it, rebuilds the
// pair from its peers — fetching about the pair's size, not the blob's —
// and serves it again. Reads of the blob go on meanwhile.
func TestCorruptSliverIsRebuilt(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21})
	blob := randomBlob(t, 2<<20)
	enc := w.storeEverywhere(blob)
	node := w.net.Node(0)
	shard := w.net.Owned(0)[0]
	pair := enc.PairOnShard(w.codec.Params(), int(shard))
	rot(t, node.Store(), shard, enc.ID, crypto.Primary, 200)
	before := node.Stats()

	st := weftv1.NewStorageClient(dial(t, w.net.NodeAddr(0)))
	stream, err := st.GetSliver(context.Background(), &weftv1.GetSliverRequest{BlobId: enc.ID[:], Axis: uint32(crypto.Primary), Index: pair.Primary.Index})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("reading the rotten sliver: %v, want DataLoss", err)
	}
	reader, err := client.New(client.Config{Control: []string{w.net.ControlAddr}, NodeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if got, err := reader.Read(context.Background(), enc.ID, client.ReadOptions{}); err != nil || string(got) != string(blob) {
		t.Fatalf("reading the blob meanwhile: %v", err)
	}

	eventually(t, 30*time.Second, "the pair rebuilt", func() bool {
		has, _ := node.Store().HasPair(shard, enc.ID)
		return has
	})
	if got := readSliver(t, st, enc.ID, pair.Primary.SliverRef); string(got.Data) != string(pair.Primary.Data) {
		t.Fatal("the rebuilt sliver differs")
	}
	after := node.Stats()
	if n := after.CorruptSlivers - before.CorruptSlivers; n != 1 {
		t.Fatalf("%d corrupt slivers counted, want 1", n)
	}
	fetched := after.RecoveryBytesFetched - before.RecoveryBytesFetched
	pairBytes := int64(len(pair.Primary.Data) + len(pair.Secondary.Data))
	t.Logf("rebuilt the pair of shard %d: fetched %d bytes for a pair of %d (blob %d)", shard, fetched, pairBytes, len(blob))
	if fetched <= 0 || fetched > pairBytes*13/10 {
		t.Fatalf("fetched %d bytes to rebuild a pair of %d", fetched, pairBytes)
	}
}

// The scrub finds rot in data nobody reads: a node whose stored sliver
// changed on disk finds it in its next pass and rebuilds it from peers.
func TestScrubRebuildsRotInColdData(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 7, Shards: 21, ScrubInterval: 200 * time.Millisecond})
	enc := w.storeEverywhere(randomBlob(t, 1<<20))
	node := w.net.Node(3)
	owned := w.net.Owned(3)
	shard := owned[len(owned)-1]
	pair := enc.PairOnShard(w.codec.Params(), int(shard))
	rot(t, node.Store(), shard, enc.ID, crypto.Secondary, 100)
	eventually(t, 30*time.Second, "the scrub to find and rebuild the sliver", func() bool {
		// The counter first: it rises after the drop, so a pair seen
		// after it is the rebuilt one (read the other way round, HasPair
		// could see the rotten pair just before the scrub dropped it).
		if node.Stats().CorruptSlivers != 1 {
			return false
		}
		has, _ := node.Store().HasPair(shard, enc.ID)
		return has
	})
	// And its secondary reads back (a rebuild may land a pair's two
	// slivers in turn): wait for it, then compare.
	var got coding.Sliver
	var err error
	eventually(t, 10*time.Second, "the rebuilt secondary sliver readable", func() bool {
		got, err = node.Store().Sliver(shard, enc.ID, crypto.Secondary)
		return err == nil
	})
	if string(got.Data) != string(pair.Secondary.Data) {
		t.Fatal("the rebuilt sliver differs")
	}
	st := node.Stats()
	if st.ScrubbedBytes == 0 {
		t.Fatal("no scrubbed bytes counted")
	}
	// The other nodes' scrubs pass clean.
	for i := range 7 {
		if i != 3 && w.net.Node(i).Stats().CorruptSlivers != 0 {
			t.Fatalf("node %d counted corrupt slivers", i)
		}
	}
}

// storeEverywhere registers a blob, stores it on every node and certifies
// it with all their signatures.
func (w *writer) storeEverywhere(blob []byte) *coding.Encoded {
	w.t.Helper()
	enc := w.register(blob)
	w.storeRegistered(enc)
	return enc
}

// storeRegistered stores a registered blob on every node and certifies it.
func (w *writer) storeRegistered(enc *coding.Encoded) {
	w.t.Helper()
	nodes := w.net.Nodes()
	for i := range nodes {
		if err := w.storeOn(i, enc); err != nil {
			w.t.Fatalf("node %d: %v", i, err)
		}
	}
	if _, err := w.certify(enc.ID, allNodes(nodes)); err != nil {
		w.t.Fatal(err)
	}
}

// awaitCollected waits until no node holds anything of the blob.
func (w *writer) awaitCollected(id crypto.BlobID) {
	w.t.Helper()
	for i := range w.net.Nodes() {
		store := w.net.Node(i).Store()
		eventually(w.t, 10*time.Second, "ended blob collected", func() bool {
			_, err := store.AnyMetadata(id)
			return errors.Is(err, storage.ErrNotFound)
		})
	}
}

// rot overwrites bytes of a stored sliver's value-log record, as a disk
// returning other bytes would.
func rot(t *testing.T, st *storage.Store, shard uint32, id crypto.BlobID, axis crypto.Axis, at int64) {
	t.Helper()
	path, off, err := st.ValueLocation(shard, id, axis)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("rot"), off+at); err != nil {
		t.Fatal(err)
	}
}

// A write that arrives after the node applied a blob's expiry — a store
// still in flight at the epoch change, or a writer that ignores the
// registry — is refused, and leaves nothing behind: the node must not
// keep data that no later event would ever delete.
func TestLateWritesOfEndedBlobsAreRefused(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 8})
	short, err := w.codec.Encode(randomBlob(t, 10_000))
	if err != nil {
		t.Fatal(err)
	}
	w.registerUntil(short, 2)
	w.storeRegistered(short)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.net.AdvanceEpoch(ctx, false); err != nil {
		t.Fatal(err)
	}
	w.awaitCollected(short.ID)
	for i := range 4 {
		err := w.storeOn(i, short)
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("node %d: a write of the expired blob answered %v, want FailedPrecondition", i, err)
		}
		if _, err := w.net.Node(i).Store().AnyMetadata(short.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("node %d kept metadata of the expired blob written late (%v)", i, err)
		}
	}

	// The same content registered again lives again: its writes are
	// taken (the node learns of the new registration from the events).
	w.registerUntil(short, 10)
	for i := range 4 {
		eventually(t, 10*time.Second, "the registered-again blob written", func() bool {
			return w.storeOn(i, short) == nil
		})
		for _, shard := range w.net.Owned(i) {
			if has, _ := w.net.Node(i).Store().HasPair(shard, short.ID); !has {
				t.Fatalf("node %d: no pair on shard %d after storing the registered-again blob", i, shard)
			}
		}
	}
}

// A node takes a blob's writes only once it has applied the control
// plane's events up to the blob's registration: an older event it has yet
// to apply — the end of an earlier registration of the same content, for
// a node catching up after a restart — would otherwise delete what it
// took. Here node 0 is made to look behind (its applied index set back
// below the registration while its follower waits for the next event): a
// write waits, and goes through once the next event arrives.
func TestWritesWaitForTheRegistrationEvent(t *testing.T) {
	w := startNet(t, devnet.Config{Nodes: 4, Shards: 8})
	// No event may arrive while the write should wait: the nodes' syncs
	// of epoch 1 (shard-synced, epoch-stable) come first.
	eventually(t, 10*time.Second, "epoch 1 stable", func() bool {
		_, phase, err := w.net.Phase(context.Background())
		return err == nil && phase == "stable"
	})
	enc, err := w.codec.Encode(randomBlob(t, 10_000))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := weftv1.NewClientClient(w.conn).RegisterBlob(w.clientCtx(), &weftv1.RegisterBlobRequest{
		Encoding: uint32(enc.Metadata.Encoding), Shards: enc.Metadata.Shards, Length: enc.Metadata.Length,
		Root: pairsRoot(enc.Metadata), EndEpoch: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	store := w.net.Node(0).Store()
	eventually(t, 10*time.Second, "registration applied", func() bool {
		applied, err := store.AppliedEvent()
		return err == nil && applied >= resp.Index
	})
	// Wind the node's record back once its follower is idle in a fresh
	// watch (5 s): a follower still finishing the page would write its
	// index over ours (seen on a loaded machine).
	eventually(t, 10*time.Second, "the record wound back and kept", func() bool {
		if err := store.SetAppliedEvent(resp.Index - 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		applied, err := store.AppliedEvent()
		return err == nil && applied == resp.Index-1
	})

	done := make(chan error, 1)
	go func() { done <- w.storeOn(0, enc) }()
	select {
	case err := <-done:
		t.Fatalf("the write went through (%v) before the node applied the registration", err)
	case <-time.After(500 * time.Millisecond):
	}
	w.register(randomBlob(t, 1000)) // the next event
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the write after the node caught up: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write still waits after the node caught up")
	}
	for _, shard := range w.net.Owned(0) {
		if has, _ := store.HasPair(shard, enc.ID); !has {
			t.Fatalf("no pair on shard %d", shard)
		}
	}
}
