package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ByteRange is one range of a blob's bytes written as HTTP's Range header
// writes one (RFC 9110 §14.1.2), both ends inclusive: "A-B" is bytes A to
// B, "A-" bytes A to the end, "-N" the last N bytes. `weft read --range`
// and the gateway's Range header are parsed into one; Resolve turns it
// into the offset and length ReadRange takes, once the blob's size is
// known.
type ByteRange struct {
	First int64 // the first byte; unused in a suffix range
	// Last is the last byte, inclusive; −1: to the end of the blob.
	// Unused in a suffix range.
	Last int64
	// Suffix > 0 makes it a suffix range: the last Suffix bytes.
	Suffix int64
}

// maxRangeDigits bounds a position's digits: 19 hold any int64, and
// leading zeros beyond them are refused rather than skipped.
const maxRangeDigits = 19

// ParseByteRange reads "A-B", "A-" or "-N" (decimal digits only, no
// signs; spaces and tabs around it are ignored). B below A is an error, as
// in HTTP, and so is "-0": a suffix of no bytes selects nothing.
func ParseByteRange(s string) (ByteRange, error) {
	spec := strings.Trim(s, " \t")
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return ByteRange{}, fmt.Errorf("byte range %q: want FIRST-LAST, FIRST- or -SUFFIX", s)
	}
	if first == "" {
		n, err := rangePosition(last)
		switch {
		case err != nil:
			return ByteRange{}, fmt.Errorf("byte range %q: suffix length: %w", s, err)
		case n == 0:
			return ByteRange{}, fmt.Errorf("byte range %q: a suffix of 0 bytes selects nothing", s)
		}
		return ByteRange{Suffix: n}, nil
	}
	a, err := rangePosition(first)
	if err != nil {
		return ByteRange{}, fmt.Errorf("byte range %q: first byte: %w", s, err)
	}
	if last == "" {
		return ByteRange{First: a, Last: -1}, nil
	}
	b, err := rangePosition(last)
	if err != nil {
		return ByteRange{}, fmt.Errorf("byte range %q: last byte: %w", s, err)
	}
	if b < a {
		return ByteRange{}, fmt.Errorf("byte range %q: the last byte comes before the first", s)
	}
	return ByteRange{First: a, Last: b}, nil
}

// rangePosition parses a byte position: 1 to 19 decimal digits that fit
// an int64.
func rangePosition(s string) (int64, error) {
	if s == "" || len(s) > maxRangeDigits || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("want 1 to 19 decimal digits")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("beyond the largest position")
	}
	return n, nil
}

// String writes the range as ParseByteRange reads it.
func (r ByteRange) String() string {
	switch {
	case r.Suffix > 0:
		return fmt.Sprintf("-%d", r.Suffix)
	case r.Last < 0:
		return fmt.Sprintf("%d-", r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Resolve returns the offset and length the range selects of a blob of
// size bytes: the last byte is cut to the blob's end, as HTTP does. A
// range that selects no byte of it (its first byte at or past the end;
// any range of the empty blob) is an error wrapping ErrRangeOutsideBlob.
func (r ByteRange) Resolve(size int64) (offset, length int64, err error) {
	if r.Suffix > 0 {
		if size <= 0 {
			return 0, 0, fmt.Errorf("%w: the last %d bytes of an empty blob", ErrRangeOutsideBlob, r.Suffix)
		}
		length = min(r.Suffix, size)
		return size - length, length, nil
	}
	if r.First < 0 || r.First >= size {
		return 0, 0, fmt.Errorf("%w: bytes %s of a %d-byte blob", ErrRangeOutsideBlob, r, size)
	}
	last := r.Last
	if last < 0 || last >= size {
		last = size - 1
	}
	if last < r.First {
		return 0, 0, fmt.Errorf("%w: bytes %s: the last byte comes before the first", ErrRangeOutsideBlob, r)
	}
	return r.First, last - r.First + 1, nil
}
