// Package client is weft's Go SDK (DESIGN §8): it stores blobs (encode,
// register, distribute sliver pairs to the shard owners, collect signed
// confirmations to a write quorum, certify) and reads them back (fetch
// primary slivers, decode, and return bytes only when they re-encode to the
// blob ID). Everything a storage node sends is checked: the control plane
// is trusted, storage nodes are not. See DESIGN.md beside this file.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// Config configures a Client. Zero fields take the defaults listed.
type Config struct {
	// Control lists control-plane voters' gRPC addresses; calls go to the
	// last one that answered and move on to the next when one is down.
	Control []string
	// Token is the client credential (`weft admin client add`), needed to
	// store; reads and status are open. WithToken overrides it per call.
	Token string

	// NodeTimeout bounds each call to a storage node, transfers included
	// (default 60 s). ControlTimeout bounds each control-plane call
	// (default 15 s).
	NodeTimeout    time.Duration
	ControlTimeout time.Duration
	// Retries is how many times a call that failed for a transient reason
	// (unavailable, timed out) is tried again (default 3; negative: none).
	// The delay starts at Backoff (default 100 ms) and doubles up to
	// MaxBackoff (default 2 s), with jitter.
	Retries    int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxParallel bounds the storage nodes written to, and the slivers
	// fetched, at once (default 32).
	MaxParallel int
	// StreamsPerNode is how many StorePairs streams a node gets at once
	// (default 4): a node checks the pairs of one stream one by one.
	StreamsPerNode int
	// StragglerWait is the least time a store keeps waiting for the
	// remaining nodes once the write quorum has confirmed: it waits half
	// the time the quorum took, or this long if that is longer (default
	// 100 ms; negative: not at all), so a slow node delays a store by at
	// most half of what the others needed. Nodes cut off then recover
	// their slivers from their peers.
	StragglerWait time.Duration
	// MaxBlobLength is the largest blob stored or read (default
	// coding.DefaultMaxBlobLength); a blob is held in memory whole. A
	// file (StoreFile, ReadTo, Open) is chunks of at most ChunkSize.
	MaxBlobLength uint64
	// Encoding is the encoding new blobs are stored in: 0 for the
	// network's default (coding.DefaultEncoding: coding.RS8 up to 256
	// shards, coding.Lanes16 above, whose 2-byte symbols store a small blob
	// in far less; coding/DESIGN.md), or one of coding.Encodings(n) —
	// above 256 shards also coding.Leopard16 (64-byte symbols, the default
	// there before). Blobs are read in whatever encoding they were stored
	// in.
	Encoding coding.Encoding
	// ChunkSize is the chunk size of files StoreFile splits (default
	// DefaultChunkSize, at most MaxBlobLength): content of at most one
	// chunk is stored as a plain blob.
	ChunkSize int
	// StoreParallel bounds the chunks of a file stored at once (default
	// 2), ReadAhead those read at once (default 2): with the chunk size
	// they bound a file's memory (DESIGN.md, Files of any size).
	StoreParallel int
	ReadAhead     int
	// EncodeBufferPool, if positive, bounds the memory of finished
	// stores' slivers the client keeps to encode later blobs into
	// (coding.WithBufferPool; StoreParallel × 4 × ChunkSize holds the
	// slivers of the chunks one file store has in flight): encoding into
	// memory already in use spares the allocator and the kernel's first
	// touch of fresh pages. A store gives its encode back once it is done
	// with it and gRPC has let go of every sliver it sent; the pool lets
	// go of it all once no store took from it for coding.PoolIdle. Off by
	// default (0 or negative): measured in a process that also reads, the
	// memory the pool keeps is memory the reads and everything else then
	// take fresh from the kernel, and stores and reads were both slower
	// with it (DESIGN.md, Reusing an encode's memory).
	EncodeBufferPool int64

	// IdleConnTimeout is how long a cached connection goes without a call
	// before it is closed (default DefaultIdleConnTimeout): nodes come and
	// go, and a client that runs for months would otherwise keep one to
	// every node it ever met.
	IdleConnTimeout time.Duration

	// DialOptions replace the default (plaintext) transport options.
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

func (c *Config) setDefaults() {
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 60 * time.Second
	}
	if c.ControlTimeout <= 0 {
		c.ControlTimeout = 15 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 3
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.MaxParallel <= 0 {
		c.MaxParallel = 32
	}
	if c.StreamsPerNode <= 0 {
		c.StreamsPerNode = 4
	}
	if c.StragglerWait == 0 {
		c.StragglerWait = DefaultStragglerWait
	}
	if c.MaxBlobLength == 0 {
		c.MaxBlobLength = coding.DefaultMaxBlobLength
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = int(min(DefaultChunkSize, c.MaxBlobLength))
	}
	if c.StoreParallel <= 0 {
		c.StoreParallel = 2
	}
	if c.ReadAhead <= 0 {
		c.ReadAhead = 2
	}
	if c.IdleConnTimeout <= 0 {
		c.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Client talks to a weft network. It is safe for concurrent use; gRPC
// connections are cached per address until Close, or until unused for
// Config.IdleConnTimeout.
type Client struct {
	cfg Config
	log *slog.Logger

	preferred atomic.Int32 // index in cfg.Control of the voter that last answered
	// written is the highest control-plane index this client's writes
	// made: reads wait until the voter they ask has applied it, so a
	// client reads its own writes even from a lagging follower.
	written atomic.Uint64

	mu     sync.Mutex
	closed bool
	conns  map[string]*cachedConn
	swept  time.Time // when idle connections were last closed
	codecs map[codecKey]*coding.Codec
	views  map[uint64]*crypto.CommitteeView // an epoch's committee never changes once made
}

type codecKey struct {
	shards   int
	encoding coding.Encoding
}

// New returns a client; no connection is made until the first call.
func New(cfg Config) (*Client, error) {
	if len(cfg.Control) == 0 {
		return nil, errors.New("client: at least one control-plane address is required")
	}
	for _, a := range cfg.Control {
		if a == "" {
			return nil, errors.New("client: empty control-plane address")
		}
	}
	cfg.Control = append([]string(nil), cfg.Control...)
	cfg.setDefaults()
	if uint64(cfg.ChunkSize) > cfg.MaxBlobLength {
		return nil, fmt.Errorf("client: chunk size %d is over the largest blob, %d", cfg.ChunkSize, cfg.MaxBlobLength)
	}
	return &Client{
		cfg:    cfg,
		log:    cfg.Logger,
		conns:  make(map[string]*cachedConn),
		codecs: make(map[codecKey]*coding.Codec),
		views:  make(map[uint64]*crypto.CommitteeView),
	}, nil
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client: closed")

// Close closes every cached connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for addr, e := range c.conns {
		if err := e.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing connection to %s: %w", addr, err))
		}
	}
	c.conns = nil
	return errors.Join(errs...)
}

// conn returns the cached connection to addr, creating it on first use.
// grpc.NewClient connects lazily, so a node that is down costs nothing
// until it is called.
func (c *Client) conn(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	now := time.Now()
	c.sweepConnsLocked(now)
	if e, ok := c.conns[addr]; ok {
		e.used = now
		cc := e.cc
		if cc.GetState() == connectivity.TransientFailure {
			c.mu.Unlock()
			redial(ctx, cc)
			c.mu.Lock()
		}
		return cc, nil
	}
	opts := c.cfg.DialOptions
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// Windows and buffers for megabyte slivers, keepalive, and a reconnect
	// backoff capped near our own retry backoff, so that a node that
	// restarts is reachable again through this cached connection (wire).
	opts = append(append([]grpc.DialOption(nil), opts...), wire.DialOptions(wire.WithMaxBackoff(c.cfg.MaxBackoff))...)
	opts = append(opts, c.idleDialOption())
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: connecting to %s: %w", addr, err)
	}
	c.conns[addr] = &cachedConn{cc: cc, used: now}
	return cc, nil
}

// redial makes a failed connection try its address again now and waits
// (briefly) for the outcome. A connection that failed waits out its
// reconnect backoff and fails every call meanwhile, so without this a node
// that came back would look down to a caller that just asked. The wait
// ends with ctx too: a caller that no longer needs the node (a metadata
// fetch another node answered) does not wait it out.
func redial(ctx context.Context, cc *grpc.ClientConn) {
	cc.ResetConnectBackoff()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	tried := false
	for s := cc.GetState(); s != connectivity.Ready && !(tried && s == connectivity.TransientFailure); s = cc.GetState() {
		tried = tried || s == connectivity.Connecting
		if !cc.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// storeCodec is the codec new blobs are encoded with on a network of n
// shards (Config.Encoding).
func (c *Client) storeCodec(n int) (*coding.Codec, error) {
	if enc := c.cfg.Encoding; enc != 0 && !slices.Contains(coding.Encodings(n), enc) {
		return nil, fmt.Errorf("client: encoding %s: a network of %d shards stores blobs in %v", enc, n, coding.Encodings(n))
	}
	return c.codec(n, c.cfg.Encoding)
}

// DrainEncodeBuffers lets go of the released sliver memory the client's
// codecs keep for later stores (Config.EncodeBufferPool), at once instead
// of after coding.PoolIdle: for a server whose uploads just ended.
// Stores in flight keep theirs.
func (c *Client) DrainEncodeBuffers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cd := range c.codecs {
		cd.DrainBufferPool()
	}
}

// EncodeBuffersHeld is the released sliver memory the client's codecs
// hold for later stores (at most Config.EncodeBufferPool per codec).
func (c *Client) EncodeBuffersHeld() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var held int64
	for _, cd := range c.codecs {
		held += cd.PooledBytes()
	}
	return held
}

// codec returns the cached codec for n shards and an encoding (0: the
// default one for n).
func (c *Client) codec(n int, enc coding.Encoding) (*coding.Codec, error) {
	if enc == 0 {
		enc = coding.DefaultEncoding(n)
	}
	key := codecKey{n, enc}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cd, ok := c.codecs[key]; ok {
		return cd, nil
	}
	cd, err := coding.New(n, coding.WithEncoding(enc), coding.WithMaxBlobLength(c.cfg.MaxBlobLength),
		coding.WithBufferPool(max(c.cfg.EncodeBufferPool, 0)))
	if err != nil {
		return nil, err
	}
	c.codecs[key] = cd
	return cd, nil
}
