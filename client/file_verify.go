package client

import (
	"context"
	"fmt"

	"github.com/weftstore/weft/crypto"
)

// FileVerification is what VerifyFile checked.
type FileVerification struct {
	Info *FileInfo
	// Certificates are the ID's own (the manifest's, for a file) and then
	// each chunk's, in manifest order; all valid when VerifyFile returns
	// nil.
	Certificates []*crypto.Certificate
}

// VerifyFile checks the availability certificates of everything id
// names: a plain blob's, or a file's manifest's and every chunk's, each
// from the registry and against its epoch's committee. A chunk that is
// not certified, or whose certificate does not verify, is reported by
// index as a *ChunkError.
func (c *Client) VerifyFile(ctx context.Context, id crypto.BlobID) (*FileVerification, error) {
	info, err := c.Stat(ctx, id, ReadOptions{NoChallengeWait: true})
	if err != nil {
		return nil, err
	}
	out := &FileVerification{Info: info}
	if err := c.verifyRegistered(ctx, info.Status); err != nil {
		return out, err
	}
	out.Certificates = append(out.Certificates, info.Status.Certificate)
	if info.Manifest == nil {
		return out, nil
	}
	var off uint64
	for i, ch := range info.Manifest.Chunks {
		st, err := c.Status(ctx, ch.ID)
		if err == nil {
			err = c.verifyRegistered(ctx, st)
		}
		if err == nil && st.Length != ch.Length {
			err = fmt.Errorf("%w: the registry has %d bytes for the chunk, the manifest %d", ErrInvalidManifest, st.Length, ch.Length)
		}
		if err != nil {
			return out, &ChunkError{File: id, Index: i, Chunk: ch.ID, Offset: off, Err: err}
		}
		out.Certificates = append(out.Certificates, st.Certificate)
		off += ch.Length
	}
	return out, nil
}

// verifyRegistered checks that a registry entry is certified and that its
// certificate is for it and valid against its epoch's committee.
func (c *Client) verifyRegistered(ctx context.Context, st *BlobStatus) error {
	if err := st.Err(); err != nil {
		return err
	}
	if st.Certificate == nil {
		return fmt.Errorf("client: blob %s is certified but the registry holds no certificate", st.ID)
	}
	if st.Certificate.BlobID != st.ID {
		return fmt.Errorf("verify: the registry's certificate for %s is for blob %s", st.ID, st.Certificate.BlobID)
	}
	return c.VerifyCertificate(ctx, st.Certificate)
}
