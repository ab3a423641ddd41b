// Package atomicfile writes files that appear whole or not at all: the
// bytes go to a temporary file beside the destination, which is synced to
// disk, then renamed (or linked) into place, and the directory is synced so
// that the new name survives a crash too. A reader, or the next start after
// a crash, sees the old file or the new one, never a torn one.
//
// github.com/google/renameio/v2 does most of this, but its API exists only
// for GOOS != windows (its files are built with !windows), and the weft CLI
// must build for Windows. It also neither syncs the directory after the
// rename nor offers the link-unless-it-exists that keeps a first token
// file. So this small package stands in for it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// File is a temporary file that becomes path on Replace or Link. Defer
// Cleanup as soon as Create returns: it removes the temporary file unless
// it has been put in place.
type File struct {
	*os.File
	path     string
	closed   bool
	closeErr error
	renamed  bool
}

// Create opens a temporary file for path with permissions perm (set
// explicitly, whatever the umask). It is made in path's own directory: a
// rename is atomic only within one file system.
func Create(path string, perm os.FileMode) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return nil, err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	return &File{File: tmp, path: path}, nil
}

// Close syncs the temporary file and closes it, without putting it in
// place. Replace and Link do it themselves; a caller calls it first only to
// have the slow sync done before it takes a lock. A second call returns the
// first one's result, so data that failed to sync is never put in place.
func (f *File) Close() error {
	if f.closed {
		return f.closeErr
	}
	f.closed = true
	f.closeErr = f.File.Sync()
	if err := f.File.Close(); f.closeErr == nil {
		f.closeErr = err
	}
	return f.closeErr
}

// Replace syncs and closes the file if that is not done yet, renames it
// over path and syncs the directory.
func (f *File) Replace() error {
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), f.path); err != nil {
		return err
	}
	f.renamed = true
	syncDir(filepath.Dir(f.path))
	return nil
}

// Link is Replace for a file that must not be overwritten: it links the
// file in as path only if nothing is there yet, and fails with an error
// matching fs.ErrExist otherwise (unlike a rename, a link never replaces).
// The temporary name is left for Cleanup to remove.
func (f *File) Link() error {
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(f.Name(), f.path); err != nil {
		return err
	}
	syncDir(filepath.Dir(f.path))
	return nil
}

// Cleanup closes the temporary file if it is open and removes it unless
// Replace has renamed it into place.
func (f *File) Cleanup() {
	if !f.closed {
		f.closed, f.closeErr = true, os.ErrClosed
		f.File.Close()
	}
	if !f.renamed {
		os.Remove(f.Name())
	}
}

// WriteFile writes data to path atomically, with permissions perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Replace()
}

// syncDir makes a rename or link in dir durable. It is best effort (the
// control plane's snapshot restore always ignored its errors): Windows
// cannot sync a directory handle, some file systems refuse to, and the
// file itself is on disk already.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Write puts data in place as path, whole or not at all.
func Write(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.File.Write(data); err != nil {
		return err
	}
	return f.Replace()
}
