package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/crypto"
)

// The blob-object commands (issue #21): weft delete | objects | object |
// attr get/set | transfer. Every store makes the storing client an
// object of the blob; these list, label, give away and delete them.

func newObjectCommands() []*cobra.Command {
	return []*cobra.Command{newDeleteCommand(), newObjectsCommand(), newObjectCommand(), newAttrCommand(), newTransferCommand()}
}

// parseObjectIDs parses OBJECT arguments: positive integers, each once.
// A blob ID given instead gets a hint.
func parseObjectIDs(args []string) ([]uint64, error) {
	ids := make([]uint64, 0, len(args))
	seen := map[uint64]bool{}
	for _, a := range args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			if _, berr := crypto.ParseBlobID(a); berr == nil {
				return nil, fmt.Errorf("%s is a blob ID, not an object ID: 'weft objects --blob %s' lists your objects of it", a, a)
			}
			return nil, fmt.Errorf("object ID %q: want a positive integer ('weft objects' lists yours)", a)
		}
		if seen[id] {
			return nil, fmt.Errorf("object %d is given twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}

// parseAttributes parses key=value pairs (keys lower-cased) and checks the
// set against control.ValidateAttributes: bad input is refused before
// anything is sent.
func parseAttributes(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	attrs := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("attribute %q: want key=value", p)
		}
		k = strings.ToLower(k)
		if _, dup := attrs[k]; dup {
			return nil, fmt.Errorf("attribute %q is given twice (keys are lower-cased)", k)
		}
		attrs[k] = v
	}
	if err := control.ValidateAttributes(attrs); err != nil {
		return nil, err
	}
	return attrs, nil
}

// objectError is one of the object errors, said in one line, still
// matching client.ErrObjectNotFound, ErrNotOwner or ErrPermanent.
type objectError struct {
	msg string
	err error
}

func (e *objectError) Error() string { return e.msg }
func (e *objectError) Unwrap() error { return e.err }

func errNoObject(id uint64) error {
	return &objectError{fmt.Sprintf("object %d not found: it never existed, was deleted, or ended with its end epoch or its blob", id), client.ErrObjectNotFound}
}

func errNotOwner(id uint64, what string) error {
	return &objectError{fmt.Sprintf("object %d belongs to another client: only its owner may %s it", id, what), client.ErrNotOwner}
}

func errPermanent(id, endEpoch uint64) error {
	msg := fmt.Sprintf("object %d is permanent: it cannot be deleted before its end epoch", id)
	if endEpoch != 0 {
		msg += " " + strconv.FormatUint(endEpoch, 10)
	}
	return &objectError{msg, client.ErrPermanent}
}

// objectCallError maps an SDK object error to its one-line form; other
// errors are returned as they are.
func objectCallError(id uint64, what string, endEpoch uint64, err error) error {
	switch {
	case errors.Is(err, client.ErrObjectNotFound):
		return errNoObject(id)
	case errors.Is(err, client.ErrNotOwner):
		return errNotOwner(id, what)
	case errors.Is(err, client.ErrPermanent):
		return errPermanent(id, endEpoch)
	}
	return err
}

// ownObject fetches an object and checks that the caller (me) owns it.
func ownObject(ctx context.Context, c *client.Client, id uint64, me, what string) (*client.Object, error) {
	obj, err := c.Object(ctx, id)
	if err != nil {
		return nil, objectCallError(id, what, 0, err)
	}
	if obj.Owner != me {
		return nil, errNotOwner(id, what)
	}
	return obj, nil
}

// whoAmI is the client the token was issued to. Asking first also makes a
// wrong token an authentication error rather than a refusal to act on an
// object.
func whoAmI(ctx context.Context, c *client.Client) (string, error) {
	q, err := c.Quota(ctx)
	if err != nil {
		return "", err
	}
	return q.Client, nil
}

// objectReport is an object as the commands print it.
type objectReport struct {
	ID           uint64            `json:"id"`
	Owner        string            `json:"owner"`
	BlobID       string            `json:"blob_id"`
	EndEpoch     uint64            `json:"end_epoch"`
	Deletable    bool              `json:"deletable"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	CreatedEpoch uint64            `json:"created_epoch"`
	StoredBytes  uint64            `json:"stored_bytes"`
}

func reportObject(o *client.Object) objectReport {
	return objectReport{
		ID: o.ID, Owner: o.Owner, BlobID: o.BlobID.String(), EndEpoch: o.EndEpoch, Deletable: o.Deletable,
		Attributes: o.Attributes, CreatedEpoch: o.CreatedEpoch, StoredBytes: o.StoredBytes,
	}
}

// objectLine is the line a store prints about the object it made.
func objectLine(id uint64, of string, chunks int, deletable bool) string {
	s := fmt.Sprintf("object %d of %s", id, of)
	if chunks > 0 {
		s += fmt.Sprintf(" (and %d chunk objects)", chunks)
	}
	if deletable {
		return s + fmt.Sprintf(": deletable ('weft delete %d' refunds the epochs after the current one)", id)
	}
	return s + ": permanent (it cannot be deleted before its end epoch)"
}

func kind(deletable bool) string {
	if deletable {
		return "deletable"
	}
	return "permanent"
}

// attrText is an attribute set on one line: k=v, sorted by key, a value
// quoted when it is empty or holds a space, comma, '=' or quote.
func attrText(attrs map[string]string) string {
	parts := make([]string, 0, len(attrs))
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		parts = append(parts, k+"="+attrValue(attrs[k]))
	}
	return strings.Join(parts, ",")
}

func attrValue(v string) string {
	if v == "" || strings.ContainsAny(v, " ,=\"\t") {
		return strconv.Quote(v)
	}
	return v
}

// printAttrLines prints an attribute set as key=value lines, sorted.
func printAttrLines(w io.Writer, attrs map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		fmt.Fprintf(w, "%s=%s\n", k, attrs[k])
	}
}

// ---- weft delete ----

// deleteReport is what deleting one object did.
type deleteReport struct {
	Object        uint64 `json:"object"`
	BlobID        string `json:"blob_id"`
	File          bool   `json:"file"` // the blob is a file's manifest
	Refund        uint64 `json:"refund"`
	BlobEndsEpoch uint64 `json:"blob_ends_epoch,omitempty"` // 0: other objects keep the blob
	// Chunks are the client's objects of the file's chunks deleted with
	// it; Kept those it kept, and why.
	Chunks []chunkDeletion `json:"chunks,omitempty"`
	Kept   []keptObject    `json:"kept,omitempty"`
	// TotalRefund is the object's refund and its chunks'.
	TotalRefund uint64 `json:"total_refund"`
}

type chunkDeletion struct {
	Object        uint64 `json:"object"`
	BlobID        string `json:"blob_id"`
	Refund        uint64 `json:"refund"`
	BlobEndsEpoch uint64 `json:"blob_ends_epoch,omitempty"`
}

type keptObject struct {
	Object uint64 `json:"object"`
	BlobID string `json:"blob_id"`
	Reason string `json:"reason"`
}

func newDeleteCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "delete OBJECT...",
		Short: "Delete your objects of stored blobs (a file's: its chunks' too); the unused epochs are refunded",
		Long: `Delete deletes blob objects the client token owns ('weft objects' lists them; 'weft
store' prints the one it made). The current epoch stays paid for; the epochs after it
are refunded to the token's quota. When no other object (of any client) keeps the blob,
the nodes drop its bytes at the next epoch's start, and reads then answer that it was
deleted. A permanent object cannot be deleted before its end epoch.

When the object's blob is a file's manifest, the client's objects of the file's chunks
are deleted too, after the manifest's, unless another of the client's live files lists
the chunk (same bytes at the same place in a chunk; that file keeps it), the client
owns another object of the file itself, or the chunk's object is permanent.

Every object is checked first (it exists, the token's client owns it, it is deletable):
if one fails, nothing is deleted.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseObjectIDs(args)
			if err != nil {
				return err
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			me, err := whoAmI(ctx, c)
			if err != nil {
				return err
			}
			objs := make([]*client.Object, len(ids))
			for i, id := range ids {
				if objs[i], err = ownObject(ctx, c, id, me, "delete"); err != nil {
					return err
				}
				if !objs[i].Deletable {
					return errPermanent(id, objs[i].EndEpoch)
				}
			}
			var reports []deleteReport
			var total uint64
			for _, obj := range objs {
				rep, err := deleteObject(ctx, c, obj)
				if rep != nil {
					reports = append(reports, *rep)
					total += rep.TotalRefund
					if f.format == "text" {
						printDeletion(cmd.OutOrStdout(), rep)
					}
				}
				if err != nil {
					if f.format == "json" && len(reports) > 0 {
						_ = printJSON(cmd.OutOrStdout(), reports)
					}
					return err
				}
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), reports)
			}
			if len(reports) > 1 {
				fmt.Fprintf(cmd.OutOrStdout(), "refunded %d in total (bytes × epochs)\n", total)
			}
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

func printDeletion(w io.Writer, r *deleteReport) {
	what := "blob " + r.BlobID
	if r.File {
		what = "file " + r.BlobID
	}
	chunks := ""
	if len(r.Chunks) > 0 {
		chunks = fmt.Sprintf(" and %d chunk objects", len(r.Chunks))
	}
	fmt.Fprintf(w, "deleted object %d (%s)%s: refunded %d (bytes × epochs)\n", r.Object, what, chunks, r.TotalRefund)
	if r.BlobEndsEpoch != 0 {
		fmt.Fprintf(w, "  no object keeps %s any more: the nodes drop it at the start of epoch %d\n", what, r.BlobEndsEpoch)
	} else {
		fmt.Fprintf(w, "  other objects still keep %s\n", what)
	}
	dropped := 0
	for _, ch := range r.Chunks {
		if ch.BlobEndsEpoch != 0 {
			dropped++
		}
	}
	if len(r.Chunks) > 0 {
		fmt.Fprintf(w, "  %d of its %d deleted chunk objects were their chunks' last: those chunks are dropped too\n", dropped, len(r.Chunks))
	}
	for _, k := range r.Kept {
		fmt.Fprintf(w, "  kept object %d of chunk %s: %s\n", k.Object, k.BlobID, k.Reason)
	}
}

// deleteObject deletes one object the caller owns; when its blob is a
// file's manifest, then the caller's objects of the file's chunks that
// nothing else of the caller's needs. The report says what was done even
// when it fails part way.
func deleteObject(ctx context.Context, c *client.Client, obj *client.Object) (*deleteReport, error) {
	chunks, kept, err := planChunkDeletions(ctx, c, obj)
	if err != nil {
		return nil, fmt.Errorf("object %d: %w; nothing of it was deleted", obj.ID, err)
	}
	del, err := c.Delete(ctx, obj.ID)
	if err != nil {
		return nil, objectCallError(obj.ID, "delete", obj.EndEpoch, err)
	}
	rep := &deleteReport{Object: obj.ID, BlobID: obj.BlobID.String(), File: chunks != nil, Refund: del.Refund, BlobEndsEpoch: del.BlobEndsEpoch, Kept: kept}
	rep.TotalRefund = rep.Refund
	for _, ch := range chunks {
		d, err := c.Delete(ctx, ch.ID)
		switch {
		case errors.Is(err, client.ErrObjectNotFound):
			continue // ended or deleted meanwhile
		case err != nil:
			return rep, fmt.Errorf("object %d (file %s) was deleted, but deleting object %d of its chunk %s failed: %w (run 'weft delete %d' again)",
				obj.ID, obj.BlobID, ch.ID, ch.BlobID, objectCallError(ch.ID, "delete", ch.EndEpoch, err), ch.ID)
		}
		rep.Chunks = append(rep.Chunks, chunkDeletion{Object: ch.ID, BlobID: ch.BlobID.String(), Refund: d.Refund, BlobEndsEpoch: d.BlobEndsEpoch})
		rep.TotalRefund += d.Refund
	}
	return rep, nil
}

// planChunkDeletions finds out whether obj's blob is a file's manifest
// and, if so, which of the caller's objects of its chunks to delete with
// it (non-nil, maybe empty) and which to keep. A chunk object is kept
// when it is permanent, when the caller owns another object of the same
// file, or when another of the caller's live files lists the chunk: a
// file stored again, or one sharing chunks with this one (an appended-to
// copy), reuses the caller's chunk objects rather than paying twice.
func planChunkDeletions(ctx context.Context, c *client.Client, obj *client.Object) (del []*client.Object, kept []keptObject, err error) {
	info, err := c.Stat(ctx, obj.BlobID, client.ReadOptions{})
	switch {
	case errors.Is(err, client.ErrNotCertified), errors.Is(err, client.ErrDeleted), errors.Is(err, client.ErrExpired), errors.Is(err, client.ErrInvalidBlob):
		return nil, nil, nil // not readable: no file's manifest to follow
	case err != nil:
		return nil, nil, fmt.Errorf("finding out whether blob %s is a file's manifest: %w", obj.BlobID, err)
	case info.Manifest == nil:
		return nil, nil, nil
	}
	chunks := map[crypto.BlobID]bool{}
	for _, ch := range info.Manifest.Chunks {
		chunks[ch.ID] = true
	}
	// What else of the caller's lists the chunks.
	needed := map[crypto.BlobID]string{} // chunk → why it is kept
	var all []*client.Object
	for after := uint64(0); ; {
		page, more, err := c.ObjectsPage(ctx, crypto.BlobID{}, after, 1000)
		if err != nil {
			return nil, nil, fmt.Errorf("listing the client's objects: %w", err)
		}
		all = append(all, page...)
		if !more || len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
	}
	others := map[crypto.BlobID]bool{}
	for _, o := range all {
		switch {
		case o.ID == obj.ID || chunks[o.BlobID]:
		case o.BlobID == obj.BlobID:
			for ch := range chunks {
				needed[ch] = fmt.Sprintf("the client's object %d of the same file keeps it", o.ID)
			}
		default:
			others[o.BlobID] = true
		}
	}
	// Each of the caller's other blobs is asked about (its status; a
	// small one's first bytes, and a manifest's whole), a few at a time.
	blobs := slices.SortedFunc(maps.Keys(others), func(a, b crypto.BlobID) int { return bytes.Compare(a[:], b[:]) })
	infos, errs := make([]*client.FileInfo, len(blobs)), make([]error, len(blobs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			infos[i], errs[i] = c.Stat(ctx, b, client.ReadOptions{})
		}()
	}
	wg.Wait()
	for i, b := range blobs {
		other, err := infos[i], errs[i]
		switch {
		case errors.Is(err, client.ErrNotCertified), errors.Is(err, client.ErrDeleted), errors.Is(err, client.ErrExpired), errors.Is(err, client.ErrInvalidBlob):
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("checking whether the client's blob %s is a file sharing chunks with this one: %w", b, err)
		case other.Manifest == nil:
			continue
		}
		for _, ch := range other.Manifest.Chunks {
			if _, already := needed[ch.ID]; chunks[ch.ID] && !already {
				needed[ch.ID] = "the client's file " + b.String() + " lists it too"
			}
		}
	}
	del = []*client.Object{}
	for _, o := range all {
		if !chunks[o.BlobID] || o.ID == obj.ID {
			continue
		}
		switch why, keep := needed[o.BlobID]; {
		case keep:
			kept = append(kept, keptObject{Object: o.ID, BlobID: o.BlobID.String(), Reason: why})
		case !o.Deletable:
			kept = append(kept, keptObject{Object: o.ID, BlobID: o.BlobID.String(), Reason: fmt.Sprintf("permanent until end epoch %d", o.EndEpoch)})
		default:
			del = append(del, o)
		}
	}
	return del, kept, nil
}

// ---- weft objects / object ----

type objectsReport struct {
	Objects []objectReport `json:"objects"`
	More    bool           `json:"more"`
	// Next is what --after takes to list the next page (when More).
	Next uint64 `json:"next_after,omitempty"`
}

func newObjectsCommand() *cobra.Command {
	var f clientFlags
	var blob string
	var after uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "objects [--blob ID]",
		Short: "List your live blob objects (paged): ID, blob, end epoch, deletable or permanent, attributes",
		Long: `Objects lists the live blob objects the client token owns, in object-ID order,
--limit at a time (0: all of them); --after N lists those after object N (the next
page's command is printed when there are more). --blob ID lists only the objects of
one blob.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var id crypto.BlobID
			if blob != "" {
				var err error
				if id, err = crypto.ParseBlobID(blob); err != nil {
					return fmt.Errorf("--blob: %w", err)
				}
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want a count (0: all)", limit)
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			rep := objectsReport{Objects: []objectReport{}}
			for next := after; ; {
				want := 1000
				if limit > 0 {
					want = min(want, limit-len(rep.Objects))
				}
				page, more, err := c.ObjectsPage(ctx, id, next, want)
				if err != nil {
					return err
				}
				for _, o := range page {
					rep.Objects = append(rep.Objects, reportObject(o))
				}
				rep.More = more
				if len(page) > 0 {
					next = page[len(page)-1].ID
				}
				if !more || len(page) == 0 || (limit > 0 && len(rep.Objects) >= limit) {
					if rep.More {
						rep.Next = next
					}
					break
				}
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tBLOB\tEND EPOCH\tKIND\tATTRIBUTES")
			for _, o := range rep.Objects {
				attrs := attrText(o.Attributes)
				if attrs == "" {
					attrs = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", o.ID, o.BlobID, o.EndEpoch, kind(o.Deletable), attrs)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if rep.More {
				next := fmt.Sprintf("weft objects --after %d", rep.Next)
				if blob != "" {
					next += " --blob " + blob
				}
				if limit > 0 {
					next += fmt.Sprintf(" --limit %d", limit)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "more: %s\n", next)
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&blob, "blob", "", "only the objects of this blob")
	cmd.Flags().Uint64Var(&after, "after", 0, "list the objects after this object ID")
	cmd.Flags().IntVar(&limit, "limit", 100, "objects to list (0: all)")
	return cmd
}

func newObjectCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "object OBJECT",
		Short: "Show one blob object: owner, blob, end epoch, deletable or permanent, attributes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseObjectIDs(args)
			if err != nil {
				return err
			}
			c, ctx, done, err := f.client(cmd, false)
			if err != nil {
				return err
			}
			defer done()
			obj, err := c.Object(ctx, ids[0])
			if err != nil {
				return objectCallError(ids[0], "see", 0, err)
			}
			rep := reportObject(obj)
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "object\t%d\nowner\t%s\nblob\t%s\n", rep.ID, rep.Owner, rep.BlobID)
			if rep.Deletable {
				fmt.Fprintf(tw, "kind\tdeletable (by its owner; the epochs after the current one are refunded)\n")
			} else {
				fmt.Fprintf(tw, "kind\tpermanent (cannot be deleted before its end epoch)\n")
			}
			fmt.Fprintf(tw, "end epoch\t%d (lives through epoch %d)\ncreated in epoch\t%d\nstored bytes\t%d (one epoch costs this much quota)\n",
				rep.EndEpoch, rep.EndEpoch-1, rep.CreatedEpoch, rep.StoredBytes)
			if len(rep.Attributes) == 0 {
				fmt.Fprintf(tw, "attributes\tnone\n")
			}
			for _, k := range slices.Sorted(maps.Keys(rep.Attributes)) {
				fmt.Fprintf(tw, "attribute %s\t%s\n", k, rep.Attributes[k])
			}
			return tw.Flush()
		},
	}
	f.add(cmd, false)
	return cmd
}

// ---- weft attr get/set ----

func newAttrCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attr",
		Short: "Read and change a blob object's attributes (content-type and other labels)",
		Long: `An object's attributes are key=value labels: keys of a-z, 0-9, '.', '_' and '-'
(what you type is lower-cased), values of UTF-8 without control characters; at most
32 of them, keys up to 64 bytes, values up to 1024, 4096 bytes in all. A blob's
content-type attribute, when its objects agree on it, is the content type 'weft status'
shows.`,
	}
	cmd.AddCommand(newAttrGetCommand(), newAttrSetCommand())
	return cmd
}

func newAttrGetCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "get OBJECT [KEY]",
		Short: "Print an object's attributes as key=value lines, or one attribute's value",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseObjectIDs(args[:1])
			if err != nil {
				return err
			}
			c, ctx, done, err := f.client(cmd, false)
			if err != nil {
				return err
			}
			defer done()
			obj, err := c.Object(ctx, ids[0])
			if err != nil {
				return objectCallError(ids[0], "see", 0, err)
			}
			attrs := obj.Attributes
			if attrs == nil {
				attrs = map[string]string{}
			}
			if len(args) == 2 {
				key := strings.ToLower(args[1])
				v, ok := attrs[key]
				if !ok {
					return fmt.Errorf("object %d has no attribute %q", obj.ID, key)
				}
				if f.format == "json" {
					return printJSON(cmd.OutOrStdout(), map[string]string{key: v})
				}
				_, err := fmt.Fprintln(cmd.OutOrStdout(), v)
				return err
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), attrs)
			}
			printAttrLines(cmd.OutOrStdout(), attrs)
			return nil
		},
	}
	f.add(cmd, false)
	return cmd
}

func newAttrSetCommand() *cobra.Command {
	var f clientFlags
	var remove []string
	cmd := &cobra.Command{
		Use:   "set OBJECT key=value... [--remove KEY]...",
		Short: "Set (add or replace) and remove attributes of one of your objects; prints the result",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseObjectIDs(args[:1])
			if err != nil {
				return err
			}
			set, err := parseAttributes(args[1:])
			if err != nil {
				return err
			}
			var drop []string
			for _, k := range remove {
				k = strings.ToLower(k)
				if err := control.ValidateAttributeKey(k); err != nil {
					return fmt.Errorf("--remove: %w", err)
				}
				if _, both := set[k]; both {
					return fmt.Errorf("attribute %q is both set and removed", k)
				}
				if !slices.Contains(drop, k) {
					drop = append(drop, k)
				}
			}
			if len(set)+len(drop) == 0 {
				return errors.New("nothing to change: give key=value pairs to set, or --remove KEY")
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			me, err := whoAmI(ctx, c)
			if err != nil {
				return err
			}
			if _, err := ownObject(ctx, c, ids[0], me, "change"); err != nil {
				return err
			}
			if err := c.SetAttributes(ctx, ids[0], set, drop); err != nil {
				return objectCallError(ids[0], "change", 0, err)
			}
			obj, err := c.Object(ctx, ids[0])
			if err != nil {
				return objectCallError(ids[0], "see", 0, err)
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), reportObject(obj))
			}
			printAttrLines(cmd.OutOrStdout(), obj.Attributes)
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "remove this attribute (repeatable)")
	return cmd
}

// ---- weft transfer ----

type transferReport struct {
	Object uint64 `json:"object"`
	BlobID string `json:"blob_id"`
	From   string `json:"from"`
	To     string `json:"to"`
}

func newTransferCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "transfer OBJECT CLIENT",
		Short: "Give one of your objects to another client (it may then delete, extend or label it)",
		Long: `Transfer gives a blob object the client token owns to another client, named as
'weft admin client add' named it: the new owner may delete it (and gets the refund),
extend it or change its attributes; the old owner no longer may.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseObjectIDs(args[:1])
			if err != nil {
				return err
			}
			to := args[1]
			if strings.TrimSpace(to) == "" {
				return errors.New("transfer to whom? the new owner's client name is empty")
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			me, err := whoAmI(ctx, c)
			if err != nil {
				return err
			}
			obj, err := ownObject(ctx, c, ids[0], me, "transfer")
			if err != nil {
				return err
			}
			if to == me {
				return fmt.Errorf("object %d already belongs to client %s", obj.ID, me)
			}
			if err := c.Transfer(ctx, obj.ID, to); err != nil {
				if status.Code(err) == codes.NotFound && !errors.Is(err, client.ErrObjectNotFound) {
					// The object is there: the new owner is what the
					// control plane does not know.
					return fmt.Errorf("no client %q to transfer object %d to ('weft admin client list' names the clients)", to, obj.ID)
				}
				return objectCallError(obj.ID, "transfer", 0, err)
			}
			rep := transferReport{Object: obj.ID, BlobID: obj.BlobID.String(), From: me, To: to}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "object %d (blob %s) now belongs to client %s\n", rep.Object, rep.BlobID, rep.To)
			return err
		},
	}
	f.add(cmd, true)
	return cmd
}
