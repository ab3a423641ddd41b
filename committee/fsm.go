package committee

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/epoch"
	"github.com/weftstore/weft/internal/atomicfile"
	"github.com/weftstore/weft/shardmap"
)

// FSM is the control plane's replicated state machine. Its state lives in
// a bbolt file; Apply writes each command's effects, its result and the
// Raft index in one transaction, so the file is always the state as of some
// index and a restart replays only what came after it.
type FSM struct {
	mu   sync.RWMutex // write-held only while Restore swaps the file
	path string
	cfg  Config
	db   *bolt.DB

	// applied wakes watchers when a command has been applied.
	applied *indexNotifier
	metrics *fsmMetrics

	// epoch caches the epoch state for the apply path (the FSM goroutine
	// is its only user), so that commands do not decode the owners and
	// holders of every shard each time; nil until first read.
	epoch *epoch.State
	// clients caches client records for the apply path likewise: every
	// registration charges its client.
	clients map[string]ClientRecord
	// dirtyClients are the cached client records the batch changed, to
	// be written when its commands are applied (flushClients).
	dirtyClients map[string]struct{}
	// generation counts the state files opened: a restore opens another,
	// and caches outside the FSM keyed by epoch must be dropped.
	generation atomic.Uint64

	// tracker serves watchers the epoch state and which shards changed
	// when (watch.go); staged holds the batch's changes until it commits.
	tracker *stateTracker
	staged  stagedChanges
	// tokens mirrors the tokens bucket for the authorization check
	// (tokens.go).
	tokens tokenTable
	// commandRetention is how many indices a command record outlives its
	// command (the constant; tests shorten it).
	commandRetention uint64
}

// Generation changes whenever a restore replaced the state file.
func (f *FSM) Generation() uint64 { return f.generation.Load() }

// currentEpoch returns the epoch state as of tx, on the apply path.
func (f *FSM) currentEpoch(tx *bolt.Tx) (epoch.State, error) {
	if f.epoch != nil {
		return *f.epoch, nil
	}
	s, err := readEpoch(tx)
	if err != nil {
		return s, err
	}
	f.epoch = &s
	return s, nil
}

// storeEpoch writes the epoch state in tx and the cache, and stages for
// watchers the shards the command at index changed.
func (f *FSM) storeEpoch(tx *bolt.Tx, index uint64, s epoch.State) error {
	before, err := f.currentEpoch(tx)
	if err != nil {
		return err
	}
	if err := writeEpoch(tx, s); err != nil {
		return err
	}
	f.epoch = &s
	for _, shard := range changedShards(before, s) {
		f.staged.marks = append(f.staged.marks, shardMark{shard: shard, index: index})
	}
	f.staged.state = &s
	return nil
}

// OpenFSM opens (or creates) the state file. A file created for another
// configuration is refused: the shard count is fixed at genesis.
func OpenFSM(path string, cfg Config) (*FSM, error) {
	if cfg.Shards < coding.MinShards {
		return nil, fmt.Errorf("committee: %d shards", cfg.Shards)
	}
	if cfg.RetainEpochs != 0 && cfg.RetainEpochs < MinRetainEpochs {
		return nil, fmt.Errorf("committee: retaining %d epochs of history, at least %d are needed", cfg.RetainEpochs, MinRetainEpochs)
	}
	f := &FSM{path: path, cfg: cfg.withDefaults(), metrics: newFSMMetrics(), tracker: newStateTracker(cfg.Shards), commandRetention: commandRetention}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FSM) open() error {
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: initialMmapSize()})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range append(allBuckets, laterBuckets...) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := countRegistry(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		var stored Config
		found, err := getJSON(meta, keyConfig, &stored)
		if err != nil {
			return err
		}
		if !found {
			return putJSON(meta, keyConfig, f.cfg)
		}
		if stored.withDefaults() != f.cfg {
			return fmt.Errorf("committee: state file %s was created for %+v, not %+v", f.path, stored, f.cfg)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return err
	}
	f.db = db
	f.epoch, f.clients, f.dirtyClients = nil, map[string]ClientRecord{}, map[string]struct{}{} // a restored file brings its own
	f.generation.Add(1)
	var index uint64
	var state epoch.State
	if err := db.View(func(tx *bolt.Tx) (err error) {
		index = readApplied(tx)
		if state, err = readEpoch(tx); err != nil {
			return err
		}
		return f.tokens.load(tx)
	}); err != nil {
		db.Close()
		return fmt.Errorf("committee: reading the epoch state of %s: %w", f.path, err)
	}
	f.tracker.reset(index, state)
	if f.applied == nil {
		f.applied = newIndexNotifier(index)
	} else {
		f.applied.set(index)
	}
	return nil
}

// initialMmapSize maps the state file with room to grow: growing past the
// mapping remaps it, which waits for every open read transaction — a
// snapshot being persisted, a page of events being read — so Apply would
// stall behind them. On Windows the mapping sets the file's size, so
// there it grows as bbolt decides.
func initialMmapSize() int {
	if runtime.GOOS == "windows" {
		return 0
	}
	return 1 << 30
}

// WaitApplied blocks until the state index is above after, the timeout
// passes or ctx ends, and returns the state index.
func (f *FSM) WaitApplied(ctx context.Context, after uint64, timeout time.Duration) uint64 {
	return f.applied.wait(ctx, after, timeout)
}

// Close closes the state file.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

// view runs a read transaction.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(fn)
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: a batch of committed entries is
// applied in one bbolt transaction — one fsync, however many commands —
// which is what lets concurrent writers go faster than the disk syncs.
//
// A command that cannot be applied — its handler panicked, or a write of
// it failed (a key bbolt refuses) — must not stop the voter, nor every
// voter at every restart as the entry replays: the batch is rolled back
// and applied again with that command recorded as failed. The code is
// deterministic, so every replica fails the same command alike.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	start := time.Now()
	failed := map[uint64]error{}
	for {
		f.staged = stagedChanges{}
		out, last, poison, err := f.applyBatch(logs, failed)
		if poison != nil {
			failed[poison.index] = poison.err
			f.epoch, f.clients, f.dirtyClients = nil, map[string]ClientRecord{}, map[string]struct{}{} // they saw the rolled-back writes
			continue
		}
		if err != nil {
			// A storage failure cannot be decided alike on every replica:
			// stop rather than diverge.
			panic(fmt.Sprintf("committee: applying indices %d–%d: %v", logs[0].Index, logs[len(logs)-1].Index, err))
		}
		if last > 0 {
			// The tracker first: a watcher the notifier wakes finds it
			// at the new index.
			f.tracker.publish(last, f.staged)
			f.tokens.publish(f.staged.tokens)
			f.applied.set(last)
		}
		f.staged = stagedChanges{}
		f.metrics.observe(start, len(logs))
		return out
	}
}

// poisonedCommand is a command that could not be applied.
type poisonedCommand struct {
	index uint64
	err   error
}

func (p *poisonedCommand) Error() string { return fmt.Sprintf("index %d: %v", p.index, p.err) }

// applyBatch applies logs in one transaction; a command listed in failed
// is recorded as failed instead. It returns the poisoned command that
// rolled the transaction back, or the storage error that did.
func (f *FSM) applyBatch(logs []*raft.Log, failed map[uint64]error) (out []any, last uint64, poison *poisonedCommand, err error) {
	out = make([]any, len(logs))
	f.mu.RLock()
	defer f.mu.RUnlock()
	err = f.db.Update(func(tx *bolt.Tx) error {
		fillAppendBuckets(tx)
		for i, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			var res *Result
			if cause, ok := failed[l.Index]; ok {
				res = recordFailed(tx, l, cause)
			} else if res, err = f.applyLogSafely(tx, l); err != nil {
				poison = &poisonedCommand{index: l.Index, err: err}
				return poison
			}
			out[i], last = res, l.Index
		}
		if err := f.flushClients(tx); err != nil {
			return err
		}
		if last > readApplied(tx) {
			return tx.Bucket(bucketMeta).Put(keyApplied, u64Key(last))
		}
		return nil
	})
	if poison != nil {
		return nil, 0, poison, nil
	}
	return out, last, nil, err
}

// appendBuckets are keyed by Raft index, or by an epoch and then an index:
// a batch's new keys land together at the end of a key range, where
// bbolt's default split (at half a page) leaves each page it fills half
// empty. Filling them to appendFill, a batch's commit writes fewer pages
// (each dirty page is a write before the fsync) and splits fewer nodes.
// The page layout is not part of the state: replicas need not share it.
var appendBuckets = [][]byte{bucketEvents, bucketObjects, bucketObjectExpiry, bucketOwnerObjects, bucketCommandIndex, bucketExpiry, bucketPending}

const appendFill = 0.9

// fillAppendBuckets sets appendFill on tx's append-ordered buckets (bbolt
// keeps the setting per transaction).
func fillAppendBuckets(tx *bolt.Tx) {
	for _, name := range appendBuckets {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = appendFill
		}
	}
}

// applyLogSafely is applyLog with a handler's panic turned into an error.
func (f *FSM) applyLogSafely(tx *bolt.Tx, l *raft.Log) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return f.applyLog(tx, l)
}

// recordFailed records a command that could not be applied: its result
// (under its ID, when the ID itself is not what failed) is an error.
func recordFailed(tx *bolt.Tx, l *raft.Log, cause error) *Result {
	res := &Result{Index: l.Index, Error: reject(CodeInvalidArgument, "command at index %d could not be applied: %v", l.Index, cause)}
	var cmd Command
	if json.Unmarshal(l.Data, &cmd) == nil && validCommandID(cmd.ID) == nil {
		_ = recordCommand(tx, l.Index, cmd.ID, res) // the record may be what failed
	}
	return res
}

// applyLog applies one command entry inside the batch's transaction.
func (f *FSM) applyLog(tx *bolt.Tx, l *raft.Log) (*Result, error) {
	var cmd Command
	if fast, body, ok := decodeFastCommand(l.Data); ok {
		cmd, cmd.decoded = fast, body
	} else if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return &Result{Index: l.Index, Error: reject(CodeInvalidArgument, "undecodable command at index %d", l.Index)}, nil
	}
	if err := validCommandID(cmd.ID); err != nil {
		// Never proposed by this version; an older one's entry replays.
		return &Result{Index: l.Index, Error: reject(CodeInvalidArgument, "command at index %d: %v", l.Index, err)}, nil
	}
	commands := tx.Bucket(bucketCommands)
	if prev := commands.Get([]byte(cmd.ID)); prev != nil {
		// Proposed again, or replayed after a restart: the first outcome
		// stands, while its record is kept.
		res, err := decodeResult(prev)
		if err != nil || !f.commandExpired(tx, res, l.Index) {
			return res, err
		}
	}
	if l.Index <= readApplied(tx) {
		// Every applied command is recorded under its ID (for
		// commandRetention entries), so this is a replayed index.
		return &Result{Index: l.Index}, nil
	}
	res := &Result{Index: l.Index}
	events, cerr := f.apply(tx, l.Index, cmd, res)
	if cerr != nil {
		res.Error = cerr
	}
	f.metrics.command(cmd.Kind, res)
	if err := appendEvents(tx, l.Index, events); err != nil {
		return nil, err
	}
	if err := recordCommand(tx, l.Index, cmd.ID, res); err != nil {
		return nil, err
	}
	budget := compactBudget
	if cmd.Kind == KindCompact {
		budget = catchUpBudget
	}
	return res, f.compactStep(tx, l.Index, budget)
}

// commandRetention is how many Raft indices a command's record outlives
// it at most (the event horizon may end it sooner: commandExpiry): a
// proposal retried within that window (a lost leadership, a client's
// retry) gets the first outcome; older records are deleted, so the
// records grow with the recent load, not with history. At the
// registration benchmark's 8k commands a second that is two minutes.
const commandRetention = 1 << 20

// recordCommand keeps a command's result under its ID, and the ID under
// its index for pruneCommands (compact.go).
func recordCommand(tx *bolt.Tx, index uint64, id string, res *Result) error {
	if err := tx.Bucket(bucketCommands).Put([]byte(id), encodeResult(res)); err != nil {
		return err
	}
	return tx.Bucket(bucketCommandIndex).Put(append(u64Key(index), id...), nil)
}

// apply runs one command. Handlers validate everything before writing, so a
// rejection leaves the transaction untouched (but for a signed request's
// nonce, which is spent either way).
func (f *FSM) apply(tx *bolt.Tx, index uint64, cmd Command, res *Result) ([]Event, *CommandError) {
	if cmd.Node != "" && cmd.Kind != KindRegisterNode {
		if cerr := f.spendNonce(tx, cmd.Node, cmd.Nonce); cerr != nil {
			return nil, cerr
		}
	}
	h, ok := commandHandlers[cmd.Kind]
	if !ok {
		return nil, reject(CodeInvalidArgument, "unknown command kind %q", cmd.Kind)
	}
	return h(f, applied{tx: tx, index: index, cmd: cmd, res: res})
}

// applied is one command being applied: its transaction, log index and
// result; a handler decodes the command's body into its own type.
type applied struct {
	tx    *bolt.Tx
	index uint64
	cmd   Command
	res   *Result
}

type commandHandler func(f *FSM, a applied) ([]Event, *CommandError)

// handle makes a handler of a function of the command's typed body: the
// body is decoded strictly (unknown fields refused) before it runs.
func handle[C any](run func(f *FSM, a applied, c C) ([]Event, *CommandError)) commandHandler {
	return func(f *FSM, a applied) ([]Event, *CommandError) {
		if c, ok := a.cmd.decoded.(C); ok { // decodeFastCommand read it
			return run(f, a, c)
		}
		var c C
		dec := json.NewDecoder(bytes.NewReader(a.cmd.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, reject(CodeInvalidArgument, "%s body: %v", a.cmd.Kind, err)
		}
		return run(f, a, c)
	}
}

// commandHandlers maps every command kind to its handler.
var commandHandlers = map[Kind]commandHandler{
	KindRegisterNode: handle(func(f *FSM, a applied, c RegisterNode) ([]Event, *CommandError) {
		return f.registerNode(a.tx, a.index, a.cmd, c)
	}),
	KindUpdateAddress: handle(func(f *FSM, a applied, c UpdateAddress) ([]Event, *CommandError) {
		return f.updateAddress(a.tx, a.index, c)
	}),
	KindSetStake: handle(func(f *FSM, a applied, c SetStake) ([]Event, *CommandError) {
		return f.setStake(a.tx, a.index, c)
	}),
	KindRemoveNode: handle(func(f *FSM, a applied, c RemoveNode) ([]Event, *CommandError) {
		return f.removeNode(a.tx, a.index, c)
	}),
	KindAdvanceEpoch: handle(func(f *FSM, a applied, c AdvanceEpoch) ([]Event, *CommandError) {
		return f.advanceEpoch(a.tx, a.index, c, a.res)
	}),
	KindShardSynced: handle(func(f *FSM, a applied, c ShardSynced) ([]Event, *CommandError) {
		if a.cmd.Node != "" && a.cmd.Node != c.Node {
			return nil, reject(CodePermissionDenied, "node %s cannot report shard %d for node %s", a.cmd.Node, c.Shard, c.Node)
		}
		return f.shardSynced(a.tx, a.index, c)
	}),
	KindRegisterBlob: handle(func(f *FSM, a applied, c RegisterBlob) ([]Event, *CommandError) {
		return f.registerBlob(a.tx, a.index, c, a.res)
	}),
	KindCertifyBlob: handle(func(f *FSM, a applied, c CertifyBlob) ([]Event, *CommandError) {
		return f.certifyBlob(a.tx, a.index, c, a.res)
	}),
	KindMarkInvalid: handle(func(f *FSM, a applied, c MarkBlobInvalid) ([]Event, *CommandError) {
		return f.markInvalid(a.tx, a.index, c, a.res)
	}),
	KindExtendBlob: handle(func(f *FSM, a applied, c ExtendBlob) ([]Event, *CommandError) {
		return f.extendBlob(a.tx, a.index, c, a.res)
	}),
	KindDeleteObject: handle(func(f *FSM, a applied, c DeleteObject) ([]Event, *CommandError) {
		return f.deleteObject(a.tx, a.index, c, a.res)
	}),
	KindTransferObject: handle(func(f *FSM, a applied, c TransferObject) ([]Event, *CommandError) {
		return f.transferObject(a.tx, a.index, c, a.res)
	}),
	KindSetAttributes: handle(func(f *FSM, a applied, c SetAttributes) ([]Event, *CommandError) {
		return f.setAttributes(a.tx, a.index, c, a.res)
	}),
	KindAddClient: handle(func(f *FSM, a applied, c AddClient) ([]Event, *CommandError) {
		return f.addClient(a.tx, a.index, c)
	}),
	KindSetQuota: handle(func(f *FSM, a applied, c SetQuota) ([]Event, *CommandError) {
		return f.setQuota(a.tx, a.index, c)
	}),
	KindStartChallenge: handle(func(f *FSM, a applied, c StartChallenge) ([]Event, *CommandError) {
		return f.startChallenge(a.tx, a.index, c, a.res)
	}),
	KindCloseChallenge: handle(func(f *FSM, a applied, c CloseChallenge) ([]Event, *CommandError) {
		if c.Round == 0 {
			return f.closeOpenRound(a.tx, a.index)
		}
		return f.closeRound(a.tx, a.index, c.Round)
	}),
	KindReportChallenge: handle(func(f *FSM, a applied, c ReportChallenge) ([]Event, *CommandError) {
		if a.cmd.Node == "" || a.cmd.Node != c.Reporter {
			return nil, reject(CodePermissionDenied, "challenge verdicts must be signed by their reporter %s", c.Reporter)
		}
		return f.reportChallenge(a.tx, a.index, c)
	}),
	KindSetPeer: handle(func(f *FSM, a applied, c SetPeer) ([]Event, *CommandError) {
		return f.setPeer(a.tx, c)
	}),
	// The step itself runs after every command (Apply), with a larger
	// budget for this one.
	KindCompact: handle(func(*FSM, applied, Compact) ([]Event, *CommandError) { return nil, nil }),
}

func (f *FSM) updateAddress(tx *bolt.Tx, index uint64, c UpdateAddress) ([]Event, *CommandError) {
	return f.updateNode(tx, index, c.Node, control.EventAddressUpdated, func(n *NodeRecord) *CommandError {
		if c.Address == "" {
			return reject(CodeInvalidArgument, "empty address")
		}
		n.Address = c.Address
		return nil
	})
}

func (f *FSM) setStake(tx *bolt.Tx, index uint64, c SetStake) ([]Event, *CommandError) {
	return f.updateNode(tx, index, c.Node, control.EventStakeSet, func(n *NodeRecord) *CommandError {
		// Re-checked here: the key may change between the leader's
		// check and this entry (the node removed and its ID taken).
		if fp := crypto.KeyFingerprint(n.PublicKey); c.KeyFingerprint != "" && fp != c.KeyFingerprint {
			return reject(CodeFailedPrecondition, "node %s is registered to key fingerprint %s, the stake was pinned to %s", c.Node, fp, c.KeyFingerprint)
		}
		n.Stake = c.Stake
		return nil
	})
}

func (f *FSM) setPeer(tx *bolt.Tx, c SetPeer) ([]Event, *CommandError) {
	if c.ID == "" || c.Address == "" {
		return nil, reject(CodeInvalidArgument, "peer needs an ID and an address")
	}
	if err := tx.Bucket(bucketPeers).Put([]byte(c.ID), []byte(c.Address)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return nil, nil
}

const maxNodeIDLength = 64

func (f *FSM) registerNode(tx *bolt.Tx, index uint64, cmd Command, c RegisterNode) ([]Event, *CommandError) {
	if cmd.Node != "" && cmd.Node != c.Node {
		return nil, reject(CodePermissionDenied, "node %s cannot register node %s", cmd.Node, c.Node)
	}
	if c.Node == "" || len(c.Node) > maxNodeIDLength {
		return nil, reject(CodeInvalidArgument, "node ID of %d bytes (1–%d)", len(c.Node), maxNodeIDLength)
	}
	if c.Address == "" {
		return nil, reject(CodeInvalidArgument, "empty address")
	}
	pk, err := crypto.PublicKeyFromBytes(c.PublicKey)
	if err == nil {
		err = pk.Validate()
	}
	if err != nil {
		return nil, reject(CodeInvalidArgument, "node %s: %v", c.Node, err)
	}
	nodes, keys := tx.Bucket(bucketNodes), tx.Bucket(bucketKeys)
	var old NodeRecord
	if found, err := getJSON(nodes, []byte(c.Node), &old); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	} else if found {
		return f.reregisterNode(tx, index, cmd, c, old)
	}
	if owner := keys.Get(c.PublicKey); owner != nil {
		return nil, reject(CodeAlreadyExists, "key fingerprint %s is already registered by node %s, not %s", crypto.KeyFingerprint(c.PublicKey), owner, c.Node)
	}
	rec := NodeRecord{ID: c.Node, PublicKey: c.PublicKey, Address: c.Address, Registered: index, LastNonce: cmd.Nonce}
	if err := putJSON(nodes, []byte(c.Node), rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := keys.Put(c.PublicKey, []byte(c.Node)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return []Event{{Index: index, Kind: control.EventNodeRegistered, Node: c.Node}}, nil
}

// reregisterNode answers a registration of an ID already in the registry:
// with the key it holds, the node restarted — the request spends a nonce
// like any signed one (a replayed registration cannot move the node back)
// and may change the address; with another key, it is someone else's ID.
func (f *FSM) reregisterNode(tx *bolt.Tx, index uint64, cmd Command, c RegisterNode, old NodeRecord) ([]Event, *CommandError) {
	if !bytes.Equal(old.PublicKey, c.PublicKey) {
		return nil, reject(CodeAlreadyExists, "node ID %s is registered to key fingerprint %s; this registration's key is %s",
			c.Node, crypto.KeyFingerprint(old.PublicKey), crypto.KeyFingerprint(c.PublicKey))
	}
	if cmd.Node != "" {
		if cerr := f.spendNonce(tx, cmd.Node, cmd.Nonce); cerr != nil {
			return nil, cerr
		}
	}
	if old.Address == c.Address {
		return nil, nil
	}
	return f.updateNode(tx, index, c.Node, control.EventAddressUpdated, func(n *NodeRecord) *CommandError {
		n.Address = c.Address
		return nil
	})
}

func (f *FSM) updateNode(tx *bolt.Tx, index uint64, id shardmap.NodeID, kind control.EventKind, change func(*NodeRecord) *CommandError) ([]Event, *CommandError) {
	nodes := tx.Bucket(bucketNodes)
	var rec NodeRecord
	found, err := getJSON(nodes, []byte(id), &rec)
	if err != nil || !found {
		return nil, reject(CodeNotFound, "node %s is not registered", id)
	}
	if cerr := change(&rec); cerr != nil {
		return nil, cerr
	}
	if err := putJSON(nodes, []byte(id), rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return []Event{{Index: index, Kind: kind, Node: id}}, nil
}

func (f *FSM) removeNode(tx *bolt.Tx, index uint64, c RemoveNode) ([]Event, *CommandError) {
	nodes := tx.Bucket(bucketNodes)
	var rec NodeRecord
	if found, err := getJSON(nodes, []byte(c.Node), &rec); err != nil || !found {
		return nil, reject(CodeNotFound, "node %s is not registered", c.Node)
	}
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	for shard := range state.Shards() {
		if state.Owner(shard) == c.Node || state.Holder(shard) == c.Node {
			return nil, reject(CodeFailedPrecondition, "node %s still owns or holds shard %d: set its stake to 0 and advance the epoch first", c.Node, shard)
		}
	}
	if err := nodes.Delete([]byte(c.Node)); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := tx.Bucket(bucketKeys).Delete(rec.PublicKey); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return []Event{{Index: index, Kind: control.EventNodeRemoved, Node: c.Node}}, nil
}

func (f *FSM) advanceEpoch(tx *bolt.Tx, index uint64, c AdvanceEpoch, res *Result) ([]Event, *CommandError) {
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	evicted, cerr := f.evict(tx, index, c)
	if cerr != nil {
		return nil, cerr
	}
	next, err := shardmap.New(c.Owners)
	if err != nil {
		return nil, reject(CodeInvalidArgument, "%v", err)
	}
	nodes := tx.Bucket(bucketNodes)
	counts := next.Counts()
	members := make([]Member, 0, len(counts))
	for node, weight := range counts {
		var rec NodeRecord
		if found, err := getJSON(nodes, []byte(node), &rec); err != nil || !found {
			return nil, reject(CodeInvalidArgument, "shard map names unregistered node %s", node)
		}
		members = append(members, Member{Node: node, PublicKey: rec.PublicKey, Weight: uint32(weight)})
	}
	slices.SortFunc(members, func(a, b Member) int { return cmp.Compare(a.Node, b.Node) })
	after, events, err := state.Apply(f.cfg.epochConfig(), epoch.Advance{Next: next, Force: c.Force})
	if err != nil {
		code := CodeInvalidArgument
		if errors.Is(err, epoch.ErrNotStable) {
			code = CodeFailedPrecondition
		}
		return nil, reject(code, "%v", err)
	}
	if err := f.storeEpoch(tx, index, after); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := writeHandover(tx, index, events); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	rec := CommitteeRecord{Epoch: after.Epoch(), Members: members}
	if err := putJSON(tx.Bucket(bucketCommittees), u64Key(after.Epoch()), rec); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	res.Epoch = after.Epoch()
	expired, err := f.expireAt(tx, index, after.Epoch())
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	// A round belongs to its epoch's committee: the change closes it.
	closed, cerr := f.closeOpenRound(tx, index)
	if cerr != nil {
		return nil, cerr
	}
	if err := markEpochStart(tx); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	if err := f.noteEpochStart(tx, index, after.Epoch()); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	out := append(evicted, epochEvents(index, events)...)
	return append(append(out, expired...), closed...), nil
}

// spendNonce accepts a signed request's nonce if it is above the node's
// last one.
func (f *FSM) spendNonce(tx *bolt.Tx, node shardmap.NodeID, nonce uint64) *CommandError {
	nodes := tx.Bucket(bucketNodes)
	var rec NodeRecord
	if found, err := getJSON(nodes, []byte(node), &rec); err != nil || !found {
		return reject(CodePermissionDenied, "request signed by unregistered node %s", node)
	}
	if nonce <= rec.LastNonce {
		return reject(CodePermissionDenied, "replayed request from node %s: nonce %d, last %d", node, nonce, rec.LastNonce)
	}
	rec.LastNonce = nonce
	if err := putJSON(nodes, []byte(node), rec); err != nil {
		return reject(CodeFailedPrecondition, "%v", err)
	}
	return nil
}

func (f *FSM) shardSynced(tx *bolt.Tx, index uint64, c ShardSynced) ([]Event, *CommandError) {
	state, err := f.currentEpoch(tx)
	if err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	after, events, err := state.Apply(f.cfg.epochConfig(), epoch.ShardSynced{Epoch: c.Epoch, Shard: c.Shard, Node: c.Node})
	switch {
	case errors.Is(err, epoch.ErrWrongEpoch):
		return nil, reject(CodeFailedPrecondition, "%v", err)
	case errors.Is(err, epoch.ErrNotOwner):
		return nil, reject(CodePermissionDenied, "%v", err)
	case errors.Is(err, epoch.ErrAlreadySynced):
		return nil, reject(CodeAlreadyExists, "%v", err)
	case err != nil:
		return nil, reject(CodeInvalidArgument, "%v", err)
	}
	if err := f.storeEpoch(tx, index, after); err != nil {
		return nil, reject(CodeFailedPrecondition, "%v", err)
	}
	return epochEvents(index, events), nil
}

func epochEvents(index uint64, events []epoch.Event) []Event {
	var out []Event
	for _, e := range events {
		switch e := e.(type) {
		case epoch.EpochStarted:
			out = append(out, Event{Index: index, Kind: control.EventEpochStarted, Epoch: e.Epoch, Moves: e.Handover})
		case epoch.ShardHandedOver:
			out = append(out, Event{Index: index, Kind: control.EventShardSynced, Epoch: e.Epoch, Shard: e.Shard, Node: e.To})
		case epoch.EpochStable:
			out = append(out, Event{Index: index, Kind: control.EventEpochStable, Epoch: e.Epoch})
		}
	}
	return out
}

func appendEvents(tx *bolt.Tx, index uint64, events []Event) error {
	b := tx.Bucket(bucketEvents)
	for seq, e := range events {
		// u32: an epoch change may end far more than 65,536 blobs and
		// objects. Keys written before were u64 ‖ u16; every reader goes
		// by the index prefix, so both kinds read in order.
		key := binary.BigEndian.AppendUint32(u64Key(index), uint32(seq))
		if err := b.Put(key, encodeEvent(e)); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot implements raft.FSM: it only opens a read transaction, which
// Persist streams to the sink while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{db: f.db, tx: tx, dir: filepath.Dir(f.path)}, nil
}

type fsmSnapshot struct {
	db  *bolt.DB
	tx  *bolt.Tx
	dir string // where a compacted copy is written (snapcompact.go)
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.db, s.tx, s.dir, sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { _ = s.tx.Rollback() }

// Restore implements raft.FSM: the snapshot, a whole bbolt file, replaces
// the state file (written beside it, synced, renamed over it).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp, err := atomicfile.Create(f.path, 0o600)
	if err != nil {
		return err
	}
	defer tmp.Cleanup()
	if _, err := io.Copy(tmp, rc); err != nil {
		return err
	}
	// Synced and closed before the lock: Apply waits on it meanwhile.
	if err := tmp.Close(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return err
	}
	if err := tmp.Replace(); err != nil {
		return err
	}
	return f.open()
}
