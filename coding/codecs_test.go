package coding

import (
	"errors"
	"testing"
)

// A network's codecs code the encodings of its size and refuse others:
// above 256 shards lanes16 (the default) and leopard16, at or below only
// rs8.
func TestCodecsForTheNetworksEncodings(t *testing.T) {
	for _, tc := range []struct {
		n          int
		enc        Encoding
		ok         bool
		defaultEnc Encoding
	}{
		{10, RS8, true, RS8}, {10, Leopard16, false, RS8}, {10, Lanes16, false, RS8},
		{300, Lanes16, true, Lanes16}, {300, Leopard16, true, Lanes16}, {300, RS8, false, Lanes16}, {300, 9, false, Lanes16},
	} {
		cs, err := NewCodecs(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if cs.Default().Params().Encoding != tc.defaultEnc {
			t.Fatalf("n=%d: default %s", tc.n, cs.Default().Params().Encoding)
		}
		c, err := cs.For(tc.enc)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidParams)) {
			t.Fatalf("n=%d %s: %v", tc.n, tc.enc, err)
		}
		if tc.ok && (c.Params().Encoding != tc.enc || c.Params().Shards != tc.n) {
			t.Fatalf("n=%d %s: a codec for %s at %d", tc.n, tc.enc, c.Params().Encoding, c.Params().Shards)
		}
	}
	cs, _ := NewCodecs(300)
	enc := mustEncode(t, mustCodec(t, 301, WithEncoding(Lanes16)), []byte("x"))
	if _, err := cs.ForMetadata(enc.Metadata); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("metadata for 301 shards on a network of 300: %v", err)
	}
	if _, err := cs.ForMetadata(nil); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("no metadata: %v", err)
	}
}
