package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// The errors a read or status returns for a blob that cannot be read,
// wrapped with the blob ID; test with errors.Is.
var (
	ErrNotFound     = errors.New("blob not found")
	ErrInvalidBlob  = errors.New("invalid blob")
	ErrExpired      = errors.New("blob expired")
	ErrDeleted      = errors.New("blob deleted") // every object of it was deleted
	ErrNotCertified = errors.New("blob not certified")
)

// Errors shared with package coding, so that errors.Is works with either.
var (
	// ErrBlobTooLarge: the blob exceeds Config.MaxBlobLength.
	ErrBlobTooLarge = coding.ErrBlobTooLarge
	// ErrInconsistentBlob: the writer encoded the blob inconsistently;
	// every reader gets this error, whichever slivers it fetched.
	ErrInconsistentBlob = coding.ErrInconsistentBlob
	// ErrNotEnoughSlivers: too few shards served a good primary sliver.
	ErrNotEnoughSlivers = coding.ErrNotEnoughSlivers
)

// NodeError is why one storage node did not contribute.
type NodeError struct {
	Node    string
	Address string
	Shards  []uint32 // the shards it owns (store) or was asked for (read)
	Op      string   // the call that failed
	Err     error
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("%s (%s, shards %s): %s: %v", e.Node, e.Address, shardList(e.Shards), e.Op, e.Err)
}

func (e *NodeError) Unwrap() error { return e.Err }

// QuorumError says why a store could not gather a write quorum: how many
// shards' owners confirmed, how many were needed, and what every node that
// did not confirm answered.
type QuorumError struct {
	BlobID    crypto.BlobID
	Epoch     uint64
	Confirmed uint64 // shards whose owner signed
	Needed    uint64 // the write quorum
	Shards    uint64 // n
	Failures  []*NodeError
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store %s: %d of %d shards confirmed in epoch %d, the write quorum is %d", e.BlobID, e.Confirmed, e.Shards, e.Epoch, e.Needed)
	for i, f := range e.Failures {
		if i == 0 {
			b.WriteString("; failed: ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap exposes the node errors (errors.Is/As look through them).
func (e *QuorumError) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f
	}
	return out
}

// SliverError is one primary sliver a read could not get or use.
type SliverError struct {
	Index uint32 // primary sliver (= pair) index
	Shard uint32
	Node  string
	Err   error
}

func (e *SliverError) Error() string {
	return fmt.Sprintf("sliver %d (shard %d) from %s: %v", e.Index, e.Shard, e.Node, e.Err)
}

func (e *SliverError) Unwrap() error { return e.Err }

// NotEnoughSliversError says how many verified primary slivers a read
// had, how many decoding needs, and why the others failed.
type NotEnoughSliversError struct {
	BlobID   crypto.BlobID
	Have     int
	Need     int
	Failures []*SliverError
}

// Error groups the failures by node and cause: a node that is down fails
// every sliver it was asked for the same way.
func (e *NotEnoughSliversError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "read %s: have %d verified primary slivers, need %d", e.BlobID, e.Have, e.Need)
	type group struct {
		node, cause     string
		slivers, shards []uint32
	}
	var groups []*group
	byKey := make(map[[2]string]*group)
	for _, f := range e.Failures {
		key := [2]string{f.Node, fmt.Sprint(f.Err)}
		g := byKey[key]
		if g == nil {
			g = &group{node: key[0], cause: key[1]}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.slivers = append(g.slivers, f.Index)
		g.shards = append(g.shards, f.Shard)
	}
	for i, g := range groups {
		if i == 0 {
			fmt.Fprintf(&b, "; %d failed: ", len(e.Failures))
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "slivers %s (shards %s) from %s: %s", shardList(g.slivers), shardList(g.shards), g.node, g.cause)
	}
	return b.String()
}

func (e *NotEnoughSliversError) Unwrap() error { return ErrNotEnoughSlivers }

// shardList renders shard numbers compactly: runs as ranges.
func shardList(shards []uint32) string {
	var b strings.Builder
	for i := 0; i < len(shards); {
		j := i
		for j+1 < len(shards) && shards[j+1] == shards[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", shards[i], shards[j])
		} else {
			fmt.Fprintf(&b, "%d", shards[i])
		}
		i = j + 1
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
