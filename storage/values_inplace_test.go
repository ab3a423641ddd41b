package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/weftstore/weft/coding"
)

// inPlace copies data into a record buffer, as the StorePairs codec
// receives a sliver.
func inPlace(data []byte) []byte {
	b := recordBuffer(len(data))
	copy(b, data)
	return b
}

// TestValuesInPlaceRecords writes records from their own buffers and
// copied, mixed in one batch, and reads each back: same bytes, same CRC,
// whichever way it went to disk. The bytes around an in-place body other
// than its head room and padding are left alone.
func TestValuesInPlaceRecords(t *testing.T) {
	c, _ := coding.New(10)
	s := openLogged(t, filepath.Join(t.TempDir(), "node.db"), c, 64<<20)
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	var records []valueRecord
	for i, n := range []int{0, 1, 4096 - recordHead, 4096 - recordHead + 1, 10_000, 1 << 20, 300} {
		body := make([]byte, n)
		for k := range body {
			body[k] = byte(r.Uint32())
		}
		head := []byte{1, 2, 3, 4, 5, 6, 7, byte(i)}
		rec := valueRecord{head: head, body: body}
		if i%3 != 1 {
			rec = valueRecord{head: head, body: inPlace(body), inPlace: true}
		}
		records = append(records, rec)
	}
	// Not a record buffer, or a header of another size: copied.
	records = append(records, valueRecord{head: []byte("orphan"), body: inPlace([]byte("x")), inPlace: true},
		valueRecord{head: make([]byte, recordHead), body: make([]byte, 5000), inPlace: true})
	exts, res, err := s.values.append(records)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.values.sync(res); err != nil {
		t.Fatal(err)
	}
	res.release(true)
	for i, e := range exts {
		got, err := s.values.read(e)
		want := append(append([]byte(nil), records[i].head...), records[i].body...)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("record %d (%d bytes, in place %v): %v", i, len(want), records[i].inPlace, err)
		}
	}
}

// TestRecordBufferPool checks that a record buffer goes back to its pool
// whole and comes back out as an aligned buffer.
func TestRecordBufferPool(t *testing.T) {
	b := recordBuffer(10_000)
	if len(b) != 10_000 || cap(b)+recordHead < int(padded(recordHead+10_000)) {
		t.Fatalf("len %d cap %d", len(b), cap(b))
	}
	if recordFrame(valueRecord{head: make([]byte, recordHead), body: b, inPlace: true}) == nil {
		t.Fatal("a record buffer is not written in place")
	}
	putAligned(b)
	putAligned(make([]byte, 100)) // not ours: ignored
}

// BenchmarkValueAppend writes a StorePairs batch (32 MiB of 2 MiB and
// 1 MiB slivers) to the value log, from the slivers' own buffers as the
// stream receives them or copied into one aligned buffer.
func BenchmarkValueAppend(b *testing.B) {
	for _, own := range []bool{true, false} {
		b.Run(fmt.Sprintf("inPlace=%v", own), func(b *testing.B) {
			c, _ := coding.New(10)
			s, err := openWith(filepath.Join(b.TempDir(), "node.db"), codecsFor(b, c), 0, 1<<30)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var records []valueRecord
			for i := range 22 {
				n := (2 << 20) >> (i % 2)
				records = append(records, valueRecord{head: make([]byte, recordHead), body: recordBuffer(n), inPlace: own})
			}
			b.SetBytes(int64(recordBytes(records)))
			for b.Loop() {
				_, res, err := s.values.append(records)
				if err != nil {
					b.Fatal(err)
				}
				res.release(false)
			}
		})
	}
}
