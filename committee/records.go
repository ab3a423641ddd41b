package committee

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/shardmap"
)

// Command results and events are written for every command, so they use a
// compact binary form instead of JSON (measured: JSON for these two cost
// about a sixth of the registration throughput). Both are versioned.

// recordVersion 2 added blob objects' fields (issue #21); records of
// version 1 still decode, without them.
const (
	recordVersion              = 2
	recordVersionBeforeObjects = 1
)

var errRecord = errors.New("committee: malformed stored record")

type recordWriter struct{ b []byte }

func (w *recordWriter) u8(v uint8)   { w.b = append(w.b, v) }
func (w *recordWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *recordWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *recordWriter) str(s string) {
	w.b = binary.BigEndian.AppendUint16(w.b, uint16(len(s)))
	w.b = append(w.b, s...)
}
func (w *recordWriter) id(v crypto.BlobID) { w.b = append(w.b, v[:]...) }

// bytes writes a u32 length and the bytes.
func (w *recordWriter) bytes(v []byte) {
	w.b = binary.BigEndian.AppendUint32(w.b, uint32(len(v)))
	w.b = append(w.b, v...)
}

type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errRecord
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *recordReader) u8() uint8   { return r.take(1)[0] }
func (r *recordReader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *recordReader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }
func (r *recordReader) str() string {
	n := binary.BigEndian.Uint16(r.take(2))
	return string(r.take(int(n)))
}
func (r *recordReader) id() crypto.BlobID { return crypto.BlobID(r.take(crypto.DigestSize)) }

// bytes reads a u32 length and a copy of that many bytes (nil for none).
// A length beyond the record is an error, not an allocation.
func (r *recordReader) bytes() []byte {
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(r.b)) {
		r.err = errRecord
		return nil
	}
	if n == 0 {
		return nil
	}
	return append([]byte(nil), r.take(int(n))...)
}

func (r *recordReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", errRecord, len(r.b))
	}
	return r.err
}

// encodeResult: version ‖ index ‖ epoch ‖ blob ID ‖ code ‖ message ‖
// object ‖ refund (an empty code means success; the last two from
// version 2 on).
func encodeResult(res *Result) []byte {
	w := recordWriter{b: make([]byte, 0, 64)}
	w.u8(recordVersion)
	w.u64(res.Index)
	w.u64(res.Epoch)
	w.id(res.BlobID)
	if res.Error != nil {
		w.str(string(res.Error.Code))
		w.str(res.Error.Message)
	} else {
		w.str("")
		w.str("")
	}
	w.u64(res.Object)
	w.u64(res.Refund)
	return w.b
}

func decodeResult(b []byte) (*Result, error) {
	r := recordReader{b: b}
	version := r.u8()
	if version != recordVersion && version != recordVersionBeforeObjects {
		return nil, fmt.Errorf("%w: result version", errRecord)
	}
	res := &Result{Index: r.u64(), Epoch: r.u64(), BlobID: r.id()}
	if code, msg := r.str(), r.str(); code != "" {
		res.Error = &CommandError{Code: Code(code), Message: msg}
	}
	if version == recordVersion {
		res.Object, res.Refund = r.u64(), r.u64()
	}
	return res, r.done()
}

// encodeEvent: version ‖ index ‖ kind ‖ epoch ‖ node ‖ shard ‖ blob ID ‖
// move count ‖ moves (shard ‖ from ‖ to) ‖ object ‖ client ‖ to (the last
// three from version 2 on).
func encodeEvent(e Event) []byte {
	w := recordWriter{b: make([]byte, 0, 96)}
	w.u8(recordVersion)
	w.u64(e.Index)
	w.str(string(e.Kind))
	w.u64(e.Epoch)
	w.str(string(e.Node))
	w.u32(uint32(e.Shard))
	w.id(e.BlobID)
	w.u32(uint32(len(e.Moves)))
	for _, m := range e.Moves {
		w.u32(uint32(m.Shard))
		w.str(string(m.From))
		w.str(string(m.To))
	}
	w.u64(e.Object)
	w.str(e.Client)
	w.str(e.To)
	return w.b
}

func decodeEvent(b []byte) (Event, error) {
	r := recordReader{b: b}
	version := r.u8()
	if version != recordVersion && version != recordVersionBeforeObjects {
		return Event{}, fmt.Errorf("%w: event version", errRecord)
	}
	e := Event{Index: r.u64(), Kind: control.EventKind(r.str()), Epoch: r.u64(), Node: shardmap.NodeID(r.str()), Shard: int(r.u32()), BlobID: r.id()}
	n := r.u32()
	if uint64(n) > uint64(len(r.b)) {
		return Event{}, errRecord
	}
	for range n {
		e.Moves = append(e.Moves, shardmap.Move{Shard: int(r.u32()), From: shardmap.NodeID(r.str()), To: shardmap.NodeID(r.str())})
	}
	if version == recordVersion {
		e.Object, e.Client, e.To = r.u64(), r.str(), r.str()
	}
	return e, r.done()
}
