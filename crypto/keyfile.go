package crypto

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/weftstore/weft/internal/atomicfile"
)

// A storage node's key file: JSON holding the BLS secret key and, as a
// check against corruption or a swapped file, the public key it derives.
//
//	{"version":1,"scheme":"bls12381-g1-pop","secret_key":"<hex>","public_key":"<hex>"}
//
// It is created with mode 0600 and never replaced; loading refuses a file
// that anyone but its owner may read.

const (
	keyFileVersion = 1
	keyFileScheme  = "bls12381-g1-pop"
	maxKeyFile     = 64 << 10 // a key file is ~250 bytes; reading stops here
)

type keyFile struct {
	Version   int    `json:"version"`
	Scheme    string `json:"scheme"`
	SecretKey string `json:"secret_key"`
	PublicKey string `json:"public_key"`
}

// ErrKeyFileExposed is returned for a key file readable or writable by
// group or others.
var ErrKeyFileExposed = errors.New("crypto: key file is accessible to other users")

// WriteKeyFile stores sk at path, which must not exist yet: a node's
// identity is never overwritten by accident. The file is written and synced
// under a temporary name, then linked into place, so a crash leaves either
// no key file or a whole one.
func WriteKeyFile(path string, sk *SecretKey) error {
	data, err := encodeKeyFile(sk)
	if err != nil {
		return err
	}
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// Link, unlike rename, fails if path exists.
	if err := f.Link(); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("crypto: key file %s already exists; refusing to replace a node's key", path)
		}
		return err
	}
	return nil
}

// ReadKeyFile loads a key file, refusing one that others may access and
// one whose public key does not match its secret key.
func ReadKeyFile(path string) (*SecretKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o; run chmod 600 %s", ErrKeyFileExposed, path, mode, path)
	}
	sk, err := decodeKeyFile(f)
	if err != nil {
		return nil, fmt.Errorf("crypto: key file %s: %w", path, err)
	}
	return sk, nil
}

// encodeKeyFile is the content of sk's key file.
func encodeKeyFile(sk *SecretKey) ([]byte, error) {
	data, err := json.MarshalIndent(keyFile{
		Version:   keyFileVersion,
		Scheme:    keyFileScheme,
		SecretKey: hex.EncodeToString(sk.Bytes()),
		PublicKey: sk.PublicKey().String(),
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// decodeKeyFile reads a key file's content: known fields only, the
// current version and scheme, a valid secret key and the public key it
// derives. Its errors never quote the secret key.
func decodeKeyFile(r io.Reader) (*SecretKey, error) {
	var kf keyFile
	dec := json.NewDecoder(io.LimitReader(r, maxKeyFile))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the key")
	}
	if kf.Version != keyFileVersion || kf.Scheme != keyFileScheme {
		return nil, fmt.Errorf("version %d scheme %q, want %d %q", kf.Version, kf.Scheme, keyFileVersion, keyFileScheme)
	}
	raw, err := hex.DecodeString(kf.SecretKey)
	if err != nil {
		return nil, errors.New("secret key is not hex")
	}
	sk, err := SecretKeyFromBytes(raw)
	if err != nil {
		return nil, err
	}
	if got := sk.PublicKey().String(); got != kf.PublicKey {
		return nil, fmt.Errorf("public key %s does not match its secret key (derives %s)", kf.PublicKey, got)
	}
	return sk, nil
}
