package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/weftstore/weft/client"
)

// quiltInputs reads the files of a `weft store --quilt`: each FILE named
// by its base name, each regular file under a DIR by its path below it.
func quiltInputs(args []string, contentType string) ([]client.QuiltInput, error) {
	var files []client.QuiltInput
	add := func(path, name string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files = append(files, client.QuiltInput{Name: filepath.ToSlash(name), Data: data, ContentType: contentType})
		return nil
	}
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if err := add(arg, filepath.Base(arg)); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(arg, path)
			if err != nil {
				return err
			}
			return add(path, rel)
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

type quiltReport struct {
	QuiltID string `json:"quilt_id"`
	// Object is the client's blob object of the quilt.
	Object    uint64            `json:"object"`
	Deletable bool              `json:"deletable"`
	Length    uint64            `json:"length"`
	EndEpoch  uint64            `json:"end_epoch"`
	Existing  bool              `json:"already_certified"`
	Files     []quiltFileReport `json:"files"`
}

type quiltFileReport struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Length uint64 `json:"length"`
}

func storeQuilt(cmd *cobra.Command, c *client.Client, ctx context.Context, format string, opts client.StoreOptions, contentType string, args []string) error {
	files, err := quiltInputs(args, contentType)
	if err != nil {
		return err
	}
	sq, err := c.StoreQuilt(ctx, files, opts)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx, sq.ID)
	if err != nil {
		return err
	}
	rep := quiltReport{QuiltID: sq.ID.String(), Object: sq.Object, Deletable: !opts.Permanent, Length: sq.Length, EndEpoch: st.EndEpoch, Existing: sq.AlreadyCertified}
	for i, id := range sq.Files {
		rep.Files = append(rep.Files, quiltFileReport{ID: id.String(), Name: sq.Index.Files[i].Name, Length: sq.Index.Files[i].Length})
	}
	if format == "json" {
		return printJSON(cmd.OutOrStdout(), rep)
	}
	for _, f := range rep.Files {
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", f.ID, f.Name)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "stored %d files (%d bytes) as quilt %s until epoch %d\n", len(files), sq.Length, sq.ID, st.EndEpoch)
	fmt.Fprintln(cmd.ErrOrStderr(), objectLine(sq.Object, "quilt "+sq.ID.String(), 0, !opts.Permanent))
	return nil
}

// readQuiltFile writes one file of a quilt to out (or stdout).
func readQuiltFile(cmd *cobra.Command, f *clientFlags, id client.QuiltFileID, out string) error {
	c, ctx, done, err := f.client(cmd, false)
	if err != nil {
		return err
	}
	defer done()
	data, qf, err := c.ReadQuiltFile(ctx, id, client.ReadOptions{})
	if err != nil {
		return err
	}
	_, err = writeOut(out, cmd.OutOrStdout(), func(w io.Writer) (*client.FileInfo, error) {
		_, err := w.Write(data)
		return &client.FileInfo{Length: uint64(len(data))}, err
	})
	if err != nil {
		return err
	}
	if out != "" && out != "-" {
		fmt.Fprintf(cmd.ErrOrStderr(), "read %q (%d bytes) of quilt %s into %s\n", qf.Name, len(data), id.Quilt, out)
	}
	return nil
}
