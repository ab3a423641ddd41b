package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"

	"github.com/weftstore/weft/api/control"
	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/internal/atomicfile"
)

// The client commands: weft store | read | extend | verify | status | committee | quota
// (and, in objects.go, delete | objects | object | attr | transfer).
// They talk to the control plane (--control, $WEFT_CONTROL) and to the
// storage nodes it names, through package client.

// clientFlags are the flags the client commands share.
type clientFlags struct {
	control          string
	format           string
	timeout          time.Duration
	token, tokenFile string
	verbose          bool
	encoding         coding.Encoding // new blobs' (weft store --encoding); 0: the network's default
}

func (f *clientFlags) add(cmd *cobra.Command, token bool) {
	control := os.Getenv("WEFT_CONTROL")
	if control == "" {
		control = "127.0.0.1:7001"
	}
	cmd.Flags().StringVar(&f.control, "control", control, "gRPC address of control-plane voters, comma-separated ($WEFT_CONTROL)")
	cmd.Flags().StringVarP(&f.format, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Minute, "how long the whole command may take")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log each node's failures and timings to stderr")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if f.format != "text" && f.format != "json" {
			return fmt.Errorf("output format %q: want text or json", f.format)
		}
		return nil
	}
	if token {
		cmd.Flags().StringVar(&f.token, "token", "", "client token (or --token-file, or $WEFT_TOKEN)")
		cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the client token")
	}
}

func (f *clientFlags) resolveToken() (string, error) {
	switch {
	case f.token != "":
		return f.token, nil
	case f.tokenFile != "":
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case os.Getenv("WEFT_TOKEN") != "":
		return os.Getenv("WEFT_TOKEN"), nil
	}
	return "", errors.New("a client token is required to store, extend, list, change or delete objects, or see a quota: --token, --token-file or $WEFT_TOKEN (`weft admin client add NAME` issues one)")
}

// client connects to the network; withToken says whether the command
// writes. Per-node logs go to stderr with --verbose only: a failure's error
// already names every node and what it answered.
func (f *clientFlags) client(cmd *cobra.Command, withToken bool) (*client.Client, context.Context, func(), error) {
	cfg := client.Config{Encoding: f.encoding}
	if f.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, a := range strings.Split(f.control, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Control = append(cfg.Control, a)
		}
	}
	if withToken {
		token, err := f.resolveToken()
		if err != nil {
			return nil, nil, nil, err
		}
		cfg.Token = token
	}
	creds, err := dialCredentials(cmd.Context())
	if err != nil {
		return nil, nil, nil, err
	}
	cfg.DialOptions = []grpc.DialOption{creds}
	c, err := client.New(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newClientCommands() []*cobra.Command {
	cmds := []*cobra.Command{newStoreCommand(), newReadCommand(), newExtendCommand(), newVerifyCommand(), newStatusCommand(), newCommitteeCommand(), newQuotaCommand()}
	return append(cmds, newObjectCommands()...)
}

// stageTimes is a store's or read's per-stage breakdown in milliseconds.
type stageTimes map[string]float64

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type storeReport struct {
	BlobID string `json:"blob_id"`
	// Object is the client's blob object of the file (the manifest's or
	// the plain blob's); ChunkObjects its objects of the chunks.
	Object       uint64     `json:"object"`
	ChunkObjects []uint64   `json:"chunk_objects,omitempty"`
	Deletable    bool       `json:"deletable"`
	Length       uint64     `json:"length"`
	Epoch        uint64     `json:"certified_epoch"`
	EndEpoch     uint64     `json:"end_epoch"`
	Signers      int        `json:"signers"`
	SignedShards uint64     `json:"signed_shards"`
	Shards       uint64     `json:"shards"`
	WriteQuorum  uint64     `json:"write_quorum"`
	Existing     bool       `json:"already_certified"`
	Certificate  string     `json:"certificate"` // hex of the binary encoding
	CertFile     string     `json:"certificate_file,omitempty"`
	Chunks       int        `json:"chunks,omitempty"` // 0: a plain blob
	Reused       int        `json:"reused_parts,omitempty"`
	SentBytes    int64      `json:"sent_bytes"`
	Stages       stageTimes `json:"stages_ms"`
}

// inputSize is the length of a regular file from its current offset (0:
// unknown, as for a pipe): a store then checks that it read exactly that.
func inputSize(in io.Reader) int64 {
	f, ok := in.(*os.File)
	if !ok {
		return 0
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return 0
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0
	}
	return st.Size() - off
}

func newStoreCommand() *cobra.Command {
	var f clientFlags
	var epochs uint64
	var certOut, contentType string
	var chunkSize int64
	var quilt, permanent bool
	var attrFlags []string
	cmd := &cobra.Command{
		Use:   "store FILE | --quilt FILE|DIR...",
		Short: "Store a file of any size (- for stdin) on the network and print its ID",
		Long: `Store encodes FILE, registers it with the control plane (charged to the client
token's quota), sends every shard owner its sliver pairs, collects signed confirmations
from owners of a write quorum of shards, and certifies the aggregate certificate.
A file larger than --chunk-size is stored as chunk blobs plus a manifest blob, in memory
bounded by the chunk size (not the file), and its ID is the manifest's; a store that was
stopped and is run again sends only the chunks not yet certified. The ID goes to stdout;
--cert-out saves the (manifest's) certificate for 'weft verify'.

--quilt stores many small files (the FILEs, and every regular file under a DIR, named
by its path below it) as one blob: an index, then the files back to back, so the
per-blob costs are paid once. It prints one line per file, "FILE_ID NAME"; 'weft read
FILE_ID' reads that file alone, fetching only the slivers that hold it.

The store makes the client an object of the blob (of a file: of its manifest, and of
each chunk; of a quilt: of the quilt), printed with the summary on stderr (-o json:
"object"). It is deletable unless --permanent: 'weft delete OBJECT' refunds the epochs
after the current one (of a file, its chunk objects too). --attr key=value labels it
(keys lower-cased; 'weft attr' changes them later); --content-type sets its
content-type attribute (and a chunked file's manifest's content type).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if quilt {
				return cobra.MinimumNArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if epochs == 0 {
				// The SDK reads 0 as its default; said here, it is a mistake.
				return errors.New("--epochs must be at least 1 (a blob lives from the current epoch for that many)")
			}
			// Attributes are checked before anything is sent.
			attrs, err := parseAttributes(attrFlags)
			if err != nil {
				return fmt.Errorf("--attr: %w", err)
			}
			if ct, ok := attrs[control.ContentTypeAttribute]; ok && contentType != "" && ct != contentType && !quilt {
				return fmt.Errorf("--content-type %q and --attr content-type=%q: give the content type once", contentType, ct)
			}
			if contentType != "" && !quilt {
				// It becomes the object's content-type attribute.
				withCT := maps.Clone(attrs)
				if withCT == nil {
					withCT = map[string]string{}
				}
				withCT[control.ContentTypeAttribute] = contentType
				if err := control.ValidateAttributes(withCT); err != nil {
					return fmt.Errorf("--content-type: %w", err)
				}
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			if quilt {
				return storeQuilt(cmd, c, ctx, f.format, client.StoreOptions{Epochs: epochs, Permanent: permanent, Attributes: attrs}, contentType, args)
			}
			in := cmd.InOrStdin()
			if args[0] != "-" {
				file, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer file.Close()
				in = file
			}
			limitMemory(chunkSize, 10)
			bar := newProgressBar(cmd.ErrOrStderr(), "storing")
			start := time.Now()
			sf, err := c.StoreFile(ctx, in, client.FileOptions{
				Epochs: epochs, Size: inputSize(in), ContentType: contentType, ChunkSize: chunkSize, Progress: bar.update,
				Permanent: permanent, Attributes: attrs,
			})
			bar.finish()
			if err != nil {
				return err
			}
			return printStored(cmd, c, ctx, f.format, certOut, sf, !permanent, time.Since(start))
		},
	}
	f.add(cmd, true)
	cmd.Flags().Uint64Var(&epochs, "epochs", client.DefaultEpochs, "how many epochs the blob lives (from the current one)")
	cmd.Flags().StringVar(&certOut, "cert-out", "", "write the availability certificate (binary) to this file")
	cmd.Flags().Int64Var(&chunkSize, "chunk-size", client.DefaultChunkSize, "a file larger than this is stored as chunks of this size plus a manifest; memory is about 2 × 4.5 × this")
	cmd.Flags().StringVar(&contentType, "content-type", "", "content type: the object's content-type attribute, and a chunked file's manifest's (the gateway serves that); with --quilt, every file's in the index")
	cmd.Flags().BoolVar(&quilt, "quilt", false, "store the FILEs (and the files under each DIR) together as one quilt blob")
	cmd.Flags().BoolVar(&permanent, "permanent", false, "make the object permanent: it cannot be deleted before its end epoch (default: deletable)")
	cmd.Flags().StringArrayVar(&attrFlags, "attr", nil, "attribute key=value of the object (repeatable; keys are lower-cased)")
	cmd.Flags().Var(encodingFlag{&f.encoding}, "encoding", "encoding of the new blobs: the network's default (rs8 up to 256 shards, lanes16 above: 2-byte symbols), or leopard16 above 256 shards (64-byte symbols, the default there before: small blobs cost far more)")
	return cmd
}

// encodingFlag is a --encoding value: rs8, leopard16 or lanes16.
type encodingFlag struct{ e *coding.Encoding }

func (f encodingFlag) String() string {
	if f.e == nil || *f.e == 0 {
		return "default"
	}
	return f.e.String()
}

func (f encodingFlag) Set(s string) error {
	for _, e := range []coding.Encoding{coding.RS8, coding.Leopard16, coding.Lanes16} {
		if s == e.String() {
			*f.e = e
			return nil
		}
	}
	return fmt.Errorf("unknown encoding %q (want rs8, leopard16 or lanes16)", s)
}

func (f encodingFlag) Type() string { return "encoding" }

// printStored reports a store: the ID on stdout (or the JSON report), a
// summary on stderr.
func printStored(cmd *cobra.Command, c *client.Client, ctx context.Context, format, certOut string, sf *client.StoredFile, deletable bool, took time.Duration) error {
	cert := sf.Certificate
	raw, err := cert.MarshalBinary()
	if err != nil {
		return err
	}
	if certOut != "" {
		if err := writeFileAtomic(certOut, raw, 0o644); err != nil {
			return err
		}
	}
	view, err := c.Committee(ctx, cert.Epoch)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx, sf.ID)
	if err != nil {
		return err
	}
	parts := 1
	rep := storeReport{
		BlobID: sf.ID.String(), Length: sf.Length, Epoch: cert.Epoch, EndEpoch: st.EndEpoch,
		Signers: len(cert.SignerIndices()), SignedShards: client.SignedWeight(cert, view), Shards: view.Shards(),
		WriteQuorum: view.WriteQuorum(), Certificate: hex.EncodeToString(raw), CertFile: certOut,
		Reused: sf.Reused, SentBytes: sf.SentBytes, Stages: stageTimes{"total": ms(took)},
		Object: sf.Object, ChunkObjects: sf.ChunkObjects, Deletable: deletable,
	}
	if sf.Manifest != nil {
		rep.Chunks = len(sf.Manifest.Chunks)
		parts += rep.Chunks
	}
	rep.Existing = sf.Reused == parts
	if format == "json" {
		return printJSON(cmd.OutOrStdout(), rep)
	}
	fmt.Fprintln(cmd.OutOrStdout(), rep.BlobID)
	how := fmt.Sprintf("%d signers owning %d of %d shards (quorum %d)", rep.Signers, rep.SignedShards, rep.Shards, rep.WriteQuorum)
	if rep.Existing {
		how = "already stored; " + how
	}
	what := fmt.Sprintf("%d bytes", rep.Length)
	if rep.Chunks > 0 {
		what = fmt.Sprintf("%d bytes as %d chunks + a manifest (%d parts were certified already)", rep.Length, rep.Chunks, rep.Reused)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "stored %s, certified in epoch %d by %s; lives until epoch %d\n", what, rep.Epoch, how, rep.EndEpoch)
	of := "blob " + rep.BlobID
	if rep.Chunks > 0 {
		of = "file " + rep.BlobID
	}
	fmt.Fprintln(cmd.ErrOrStderr(), objectLine(rep.Object, of, len(rep.ChunkObjects), deletable))
	if certOut != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "certificate written to %s\n", certOut)
	}
	return nil
}

type readReport struct {
	BlobID string       `json:"blob_id"`
	Length uint64       `json:"length"`
	Chunks int          `json:"chunks,omitempty"` // 0: a plain blob
	Range  *rangeReport `json:"range,omitempty"`
	Out    string       `json:"out"`
	Stages stageTimes   `json:"stages_ms"`
	Bad    int          `json:"bad_slivers"`
}

// rangeReport is what a read --range read: Length bytes at Offset of a
// file or blob of Size bytes, and why it read a whole blob, if it did.
type rangeReport struct {
	Offset   int64  `json:"offset"`
	Length   int64  `json:"length"`
	Size     uint64 `json:"blob_size"`
	Fallback string `json:"fallback,omitempty"`
}

func newReadCommand() *cobra.Command {
	var f clientFlags
	var out, rangeSpec string
	var raw bool
	cmd := &cobra.Command{
		Use:   "read ID",
		Short: "Read a file or blob, or a byte range of it (--range): to stdout, or to --out FILE",
		Long: `Read fetches primary slivers from the shards' owners (or holders during a
handover), decodes them, and writes the bytes only after they re-encode to the blob
ID: no byte of a blob that fails the check is ever written. A file stored as chunks is
streamed chunk by chunk, each written after its own check, in memory bounded by the chunk
size; if a chunk fails, the command fails naming it (--out FILE is then left untouched;
stdout has had the chunks before it). --raw reads the blob as it is (a file's manifest).

--range reads bytes as HTTP's Range header names them, both ends inclusive: A-B (bytes
A to B), A- (from A to the end) or -N (the last N bytes; write it --range=-N). A last
byte past the end is cut to it; a range that starts at or past the end is an error that
gives the size. Only the slivers that hold the range are fetched (of a file, only from
the chunks it touches), each checked against its hash in the blob's metadata; if one
cannot be had the whole blob (chunk) is read and checked instead. A range read does not
re-encode the whole blob, so it cannot tell that the writer encoded it inconsistently
(see client/DESIGN.md): a whole read can.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fileID, err := client.ParseQuiltFileID(args[0]); err == nil {
				if cmd.Flags().Changed("range") || raw {
					return errors.New("--range and --raw read blobs: a quilt file is read whole")
				}
				return readQuiltFile(cmd, &f, fileID, out)
			}
			id, err := crypto.ParseBlobID(args[0])
			if err != nil {
				return err
			}
			if f.format == "json" && (out == "" || out == "-") {
				return errors.New("-o json prints a report on stdout: give the blob a file with --out FILE")
			}
			var rng *client.ByteRange
			if cmd.Flags().Changed("range") {
				if raw {
					return errors.New("--range and --raw: a range of a manifest is not a thing to read; drop one")
				}
				r, err := client.ParseByteRange(rangeSpec)
				if err != nil {
					return fmt.Errorf("--range: %w", err)
				}
				rng = &r
			}
			c, ctx, done, err := f.client(cmd, false)
			if err != nil {
				return err
			}
			defer done()
			limitMemory(client.DefaultChunkSize, 7)
			bar := newProgressBar(cmd.ErrOrStderr(), "reading")
			var stats client.ReadStats
			opts := client.ReadOptions{Progress: bar.update, Stats: &stats}
			var info *client.FileInfo
			var part *rangeReport
			if rng == nil {
				info, err = readInto(ctx, c, id, out, cmd.OutOrStdout(), raw, opts)
			} else {
				info, part, err = readByteRange(ctx, c, id, *rng, out, cmd.OutOrStdout(), opts)
			}
			bar.finish()
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				return nil
			}
			rep := readReport{
				BlobID: id.String(), Length: info.Length, Range: part, Out: out, Bad: stats.BadSlivers,
				Stages: stageTimes{
					"lookup": ms(stats.Lookup), "metadata": ms(stats.Metadata), "fetch": ms(stats.Fetch),
					"verify": ms(stats.Verify), "decode_and_check": ms(stats.Decode), "total": ms(stats.Total),
				},
			}
			if info.Manifest != nil {
				rep.Chunks = len(info.Manifest.Chunks)
			}
			if part != nil {
				rep.Length = uint64(part.Length) // what was written; the whole size is in range
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			if part != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "read bytes %d-%d (%d bytes) of %s (%d bytes) into %s\n",
					part.Offset, part.Offset+part.Length-1, part.Length, id, part.Size, out)
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "read %d bytes of %s into %s\n", rep.Length, id, out)
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&out, "out", "", "file to write the blob to (default: stdout)")
	cmd.Flags().BoolVar(&raw, "raw", false, "read the blob as it is: a file's manifest rather than the file")
	cmd.Flags().StringVar(&rangeSpec, "range", "", "read only these bytes: A-B (inclusive), A- (to the end) or -N (the last N; --range=-N)")
	return cmd
}

// readInto streams id to the file out (replaced only once the whole read
// has succeeded) or, when out is "" or "-", to stdout.
func readInto(ctx context.Context, c *client.Client, id crypto.BlobID, out string, stdout io.Writer, raw bool, opts client.ReadOptions) (*client.FileInfo, error) {
	return writeOut(out, stdout, func(w io.Writer) (*client.FileInfo, error) {
		if !raw {
			return c.ReadTo(ctx, id, w, opts)
		}
		blob, err := c.Read(ctx, id, opts)
		if err != nil {
			return nil, err
		}
		_, err = w.Write(blob)
		return &client.FileInfo{ID: id, Length: uint64(len(blob))}, err
	})
}

// writeOut runs read against out: a regular file replaced only once read
// succeeded, a device or pipe written as it is, or stdout for "" and "-".
func writeOut(out string, stdout io.Writer, read func(io.Writer) (*client.FileInfo, error)) (*client.FileInfo, error) {
	if out == "" || out == "-" {
		return read(stdout)
	}
	if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
		// A device or pipe is written to as it is, never replaced.
		dev, err := os.OpenFile(out, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		info, err := read(dev)
		if cerr := dev.Close(); err == nil {
			err = cerr
		}
		return info, err
	}
	file, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return nil, err
	}
	defer file.Cleanup()
	info, err := read(file)
	if err != nil {
		return nil, err
	}
	return info, file.Replace()
}

// readByteRange reads a range of a file or blob into out: the registry
// (and a file's manifest) says the size, against which the range is
// resolved (a suffix needs it, and a range that starts past the end is
// refused before any sliver is asked for).
func readByteRange(ctx context.Context, c *client.Client, id crypto.BlobID, rng client.ByteRange, out string, stdout io.Writer, opts client.ReadOptions) (*client.FileInfo, *rangeReport, error) {
	info, err := c.Stat(ctx, id, opts)
	if err != nil {
		return nil, nil, err
	}
	off, n, err := rng.Resolve(int64(info.Length))
	if err != nil {
		return nil, nil, fmt.Errorf("--range %s of %s: %w", rng, id, err)
	}
	_, err = writeOut(out, stdout, func(w io.Writer) (*client.FileInfo, error) {
		return info, c.StreamRangeTo(ctx, info, off, n, w, opts)
	})
	if err != nil {
		return nil, nil, err
	}
	rep := &rangeReport{Offset: off, Length: n, Size: info.Length}
	if opts.Stats != nil && opts.Stats.RangeFallback != nil {
		rep.Fallback = opts.Stats.RangeFallback.Error()
	}
	return info, rep, nil
}

type verifyReport struct {
	Valid        bool   `json:"valid"`
	Reason       string `json:"reason,omitempty"`
	BlobID       string `json:"blob_id"`
	Epoch        uint64 `json:"epoch"`
	Signers      int    `json:"signers"`
	SignedShards uint64 `json:"signed_shards"`
	Shards       uint64 `json:"shards"`
	WriteQuorum  uint64 `json:"write_quorum"`
	Committee    string `json:"committee_from"`
}

func newVerifyCommand() *cobra.Command {
	var f clientFlags
	var committeeFile, blob string
	cmd := &cobra.Command{
		Use:   "verify CERT_FILE | ID",
		Short: "Verify an availability certificate, or every certificate of a file or blob",
		Long: `Verify checks a certificate (as 'weft store --cert-out' writes it) against the
committee of its epoch: from the control plane, or from a file that
'weft committee --epoch E -o json' wrote (then no network is needed). Given an ID
instead of a certificate file, it checks the registry's certificates of everything
the ID names: a blob's, or a file's manifest's and every chunk's. The exit
status is non-zero, with the reason, when a certificate is not valid.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if id, err := crypto.ParseBlobID(args[0]); err == nil && committeeFile == "" {
				if _, serr := os.Stat(args[0]); errors.Is(serr, os.ErrNotExist) {
					return verifyID(cmd, &f, id)
				}
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var cert crypto.Certificate
			if err := cert.UnmarshalBinary(raw); err != nil {
				return fmt.Errorf("%s is not a certificate: %w", args[0], err)
			}
			var view *crypto.CommitteeView
			from := ""
			if committeeFile != "" {
				data, err := os.ReadFile(committeeFile)
				if err != nil {
					return err
				}
				com, err := client.ParseCommittee(data)
				if err != nil {
					return err
				}
				view, from = com.View(), committeeFile
			} else {
				c, ctx, done, err := f.client(cmd, false)
				if err != nil {
					return err
				}
				defer done()
				if view, err = c.Committee(ctx, cert.Epoch); err != nil {
					return err
				}
				from = "control plane " + f.control
			}
			rep := verifyReport{
				BlobID: cert.BlobID.String(), Epoch: cert.Epoch, Signers: len(cert.SignerIndices()),
				SignedShards: client.SignedWeight(&cert, view), Shards: view.Shards(), WriteQuorum: view.WriteQuorum(), Committee: from,
			}
			verr := client.Verify(&cert, view)
			if verr == nil && blob != "" && blob != cert.BlobID.String() {
				verr = fmt.Errorf("verify: the certificate is for blob %s, not %s", cert.BlobID, blob)
			}
			rep.Valid = verr == nil
			if verr != nil {
				rep.Reason = verr.Error()
			}
			if f.format == "json" {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else if rep.Valid {
				fmt.Fprintf(cmd.OutOrStdout(), "valid: availability certificate for blob %s in epoch %d, %d signers owning %d of %d shards (quorum %d)\n",
					rep.BlobID, rep.Epoch, rep.Signers, rep.SignedShards, rep.Shards, rep.WriteQuorum)
			}
			return verr
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&committeeFile, "committee", "", "committee file (JSON from 'weft committee -o json') instead of asking the control plane")
	cmd.Flags().StringVar(&blob, "blob", "", "also require the certificate to be for this blob ID")
	return cmd
}

type verifyFileReport struct {
	Valid        bool   `json:"valid"`
	Reason       string `json:"reason,omitempty"`
	ID           string `json:"id"`
	Length       uint64 `json:"length"`
	Chunks       int    `json:"chunks"` // 0: a plain blob
	Certificates int    `json:"certificates_valid"`
}

// verifyID checks every certificate of what id names (client.VerifyFile).
func verifyID(cmd *cobra.Command, f *clientFlags, id crypto.BlobID) error {
	c, ctx, done, err := f.client(cmd, false)
	if err != nil {
		return err
	}
	defer done()
	fv, verr := c.VerifyFile(ctx, id)
	rep := verifyFileReport{ID: id.String(), Valid: verr == nil}
	if fv != nil {
		rep.Length, rep.Certificates = fv.Info.Length, len(fv.Certificates)
		if fv.Info.Manifest != nil {
			rep.Chunks = len(fv.Info.Manifest.Chunks)
		}
	}
	if verr != nil {
		rep.Reason = verr.Error()
	}
	switch {
	case f.format == "json":
		if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
			return err
		}
	case verr == nil && rep.Chunks > 0:
		fmt.Fprintf(cmd.OutOrStdout(), "valid: file %s (%d bytes): the manifest's certificate and all %d chunks' certificates\n", rep.ID, rep.Length, rep.Chunks)
	case verr == nil:
		fmt.Fprintf(cmd.OutOrStdout(), "valid: blob %s (%d bytes): its certificate\n", rep.ID, rep.Length)
	}
	return verr
}

type statusReport struct {
	BlobID          string `json:"blob_id"`
	Status          string `json:"status"`
	Encoding        string `json:"encoding"`
	Shards          uint32 `json:"shards"`
	Length          uint64 `json:"length"`
	RegisteredEpoch uint64 `json:"registered_epoch"`
	CertifiedEpoch  uint64 `json:"certified_epoch"`
	EndEpoch        uint64 `json:"end_epoch"`
	Certificate     string `json:"certificate,omitempty"`
	CertValid       *bool  `json:"certificate_valid,omitempty"`
	CertProblem     string `json:"certificate_problem,omitempty"`
	Signers         int    `json:"signers,omitempty"`
	// Objects counts the live blob objects that keep the blob;
	// PermanentEndEpoch is the latest end epoch of a permanent one (0:
	// none). Deleting: no object keeps it, and the nodes drop it at
	// EndEpoch's start.
	Objects           int    `json:"objects"`
	PermanentEndEpoch uint64 `json:"permanent_end_epoch,omitempty"`
	Deleting          bool   `json:"deleting,omitempty"`
	ContentType       string `json:"content_type,omitempty"`
}

func newStatusCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status BLOB_ID",
		Short: "Show a blob's registry entry, checking its certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := crypto.ParseBlobID(args[0])
			if err != nil {
				return err
			}
			c, ctx, done, err := f.client(cmd, false)
			if err != nil {
				return err
			}
			defer done()
			st, err := c.Status(ctx, id)
			if err != nil {
				return err
			}
			rep := statusReport{
				BlobID: id.String(), Status: st.Status, Encoding: st.Encoding.String(), Shards: st.Shards, Length: st.Length,
				RegisteredEpoch: st.RegisteredEpoch, CertifiedEpoch: st.CertifiedEpoch, EndEpoch: st.EndEpoch,
				Objects: st.Objects, PermanentEndEpoch: st.PermanentEndEpoch, Deleting: st.Deleting, ContentType: st.ContentType,
			}
			if st.Certificate != nil {
				raw, err := st.Certificate.MarshalBinary()
				if err != nil {
					return err
				}
				rep.Certificate, rep.Signers = hex.EncodeToString(raw), len(st.Certificate.SignerIndices())
				// The control plane checked it when certifying; checking it
				// here costs two pairings and trusts nobody.
				verr := c.VerifyCertificate(ctx, st.Certificate)
				valid := verr == nil
				rep.CertValid = &valid
				if verr != nil {
					rep.CertProblem = verr.Error()
				}
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "blob\t%s\nstatus\t%s\nlength\t%d bytes\nshards\t%d (%s)\nregistered in epoch\t%d\n",
				rep.BlobID, rep.Status, rep.Length, rep.Shards, rep.Encoding, rep.RegisteredEpoch)
			if st.CertifiedEpoch != 0 {
				fmt.Fprintf(tw, "certified in epoch\t%d\n", rep.CertifiedEpoch)
			}
			fmt.Fprintf(tw, "end epoch\t%d\n", rep.EndEpoch)
			fmt.Fprintf(tw, "objects\t%d\n", rep.Objects)
			if rep.PermanentEndEpoch != 0 {
				fmt.Fprintf(tw, "permanent until\tend epoch %d (a permanent object keeps it that long)\n", rep.PermanentEndEpoch)
			}
			if rep.Deleting {
				fmt.Fprintf(tw, "deleting\tat epoch %d (its last object was deleted: the nodes drop it then)\n", rep.EndEpoch)
			}
			if rep.ContentType != "" {
				fmt.Fprintf(tw, "content type\t%s\n", rep.ContentType)
			}
			switch {
			case rep.CertValid == nil:
				fmt.Fprintf(tw, "certificate\tnone\n")
			case *rep.CertValid:
				fmt.Fprintf(tw, "certificate\tvalid (%d signers)\n", rep.Signers)
			default:
				fmt.Fprintf(tw, "certificate\tNOT VALID: %s\n", rep.CertProblem)
			}
			return tw.Flush()
		},
	}
	f.add(cmd, false)
	return cmd
}

type extendReport struct {
	BlobID           string `json:"blob_id"`
	PreviousEndEpoch uint64 `json:"previous_end_epoch"`
	EndEpoch         uint64 `json:"end_epoch"`
	Charged          uint64 `json:"charged"` // quota drawn: encoded bytes × epochs added
}

func newExtendCommand() *cobra.Command {
	var f clientFlags
	var epochs, endEpoch uint64
	cmd := &cobra.Command{
		Use:   "extend ID (--epochs N | --end-epoch E)",
		Short: "Extend a file's or blob's lifetime without storing it again (charged to the client token's quota)",
		Long: `Extend moves a blob's end epoch later: --epochs N adds N epochs to its current end,
--end-epoch E makes it live at least until E (a blob that already does is left as it
is). The client token's quota is charged the blob's encoded size × the epochs added.
An expired or invalid blob cannot be extended. A file's chunks are extended first, then
its manifest, all to the same end epoch (charged for every part); an interrupted run
can be run again and charges nothing twice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := crypto.ParseBlobID(args[0])
			if err != nil {
				return err
			}
			if (epochs == 0) == (endEpoch == 0) {
				return errors.New("give one of --epochs N (epochs to add) or --end-epoch E")
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			ext, err := c.ExtendFile(ctx, id, client.ExtendOptions{Epochs: epochs, EndEpoch: endEpoch})
			if err != nil {
				return err
			}
			rep := extendReport{BlobID: id.String(), PreviousEndEpoch: ext.PreviousEndEpoch, EndEpoch: ext.Status.EndEpoch, Charged: ext.Charged}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			if rep.EndEpoch == rep.PreviousEndEpoch {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "blob %s already lives until end epoch %d; nothing charged\n", rep.BlobID, rep.EndEpoch)
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "blob %s now lives until end epoch %d (was %d); charged %d (bytes × epochs)\n",
				rep.BlobID, rep.EndEpoch, rep.PreviousEndEpoch, rep.Charged)
			return err
		},
	}
	f.add(cmd, true)
	cmd.Flags().Uint64Var(&epochs, "epochs", 0, "epochs to add to the blob's current end epoch")
	cmd.Flags().Uint64Var(&endEpoch, "end-epoch", 0, "end epoch the blob should live at least until")
	return cmd
}

type quotaReport struct {
	Client string      `json:"client"`
	Quota  uint64      `json:"quota"` // bytes × epochs
	Used   uint64      `json:"used"`
	Left   uint64      `json:"left"`
	Cost   *costReport `json:"cost,omitempty"`
}

type costReport struct {
	Length uint64 `json:"length"`
	Epochs uint64 `json:"epochs"`
	Cost   uint64 `json:"cost"` // encoded bytes on all shards × epochs
	Fits   bool   `json:"fits"`
}

func newQuotaCommand() *cobra.Command {
	var f clientFlags
	var size int64
	var epochs uint64
	cmd := &cobra.Command{
		Use:   "quota [--size BYTES [--epochs N]]",
		Short: "Show the client token's quota (bytes × epochs) and what a store of --size bytes would cost",
		Long: `Quota shows the quota of the client token (--token, --token-file or $WEFT_TOKEN) in bytes ×
epochs, what is used and what is left. A store is charged the blob's encoded size on all shards
(about 4.5 to 5 times a large blob, more for small ones) × its epochs; --size BYTES (with --epochs, default 5) shows what
storing a blob that large would cost and whether it fits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if size < 0 {
				return fmt.Errorf("--size %d: want a byte count", size)
			}
			c, ctx, done, err := f.client(cmd, true)
			if err != nil {
				return err
			}
			defer done()
			q, err := c.Quota(ctx)
			if err != nil {
				return err
			}
			rep := quotaReport{Client: q.Client, Quota: q.Total, Used: q.Used, Left: q.Left()}
			if cmd.Flags().Changed("size") {
				cost, ok, err := c.StoreCost(ctx, uint64(size), epochs)
				if err != nil {
					return err
				}
				rep.Cost = &costReport{Length: uint64(size), Epochs: epochs, Cost: cost, Fits: ok && cost <= rep.Left}
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "client\t%s\nquota\t%d (bytes × epochs)\nused\t%d\nleft\t%d\n", rep.Client, rep.Quota, rep.Used, rep.Left)
			if rep.Cost != nil {
				verdict := "fits"
				if !rep.Cost.Fits {
					verdict = "does NOT fit"
				}
				fmt.Fprintf(tw, "a %d-byte blob for %d epochs\tcosts %d: %s\n", rep.Cost.Length, rep.Cost.Epochs, rep.Cost.Cost, verdict)
			}
			return tw.Flush()
		},
	}
	f.add(cmd, true)
	cmd.Flags().Int64Var(&size, "size", 0, "a blob size in bytes, to show what storing it costs")
	cmd.Flags().Uint64Var(&epochs, "epochs", client.DefaultEpochs, "with --size: the epochs it would live")
	return cmd
}

func newCommitteeCommand() *cobra.Command {
	var f clientFlags
	var epoch uint64
	cmd := &cobra.Command{
		Use:   "committee",
		Short: "Show an epoch's committee (-o json writes the file 'weft verify --committee' reads)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := f.client(cmd, false)
			if err != nil {
				return err
			}
			defer done()
			com, err := c.CommitteeInfo(ctx, epoch)
			if err != nil {
				return err
			}
			if f.format == "json" {
				return printJSON(cmd.OutOrStdout(), com)
			}
			view := com.View()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "epoch %d: %d members, %d shards, write quorum %d\n", com.Epoch, len(com.Members), view.Shards(), view.WriteQuorum())
			fmt.Fprintln(tw, "#\tNODE\tADDRESS\tSHARDS\tPUBLIC KEY")
			for i, m := range com.Members {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s…\n", i, m.Node, m.Address, m.Weight, hex.EncodeToString(m.PublicKey.Bytes())[:16])
			}
			return tw.Flush()
		},
	}
	f.add(cmd, false)
	cmd.Flags().Uint64Var(&epoch, "epoch", 0, "the epoch (default: the current one)")
	return cmd
}

// writeFileAtomic writes data under a temporary name and renames it into
// place, so a reader never sees half a file. A path that exists and is not
// a regular file (/dev/null, a named pipe, a terminal) is written to as it
// is: renaming over it would replace the device with a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return atomicfile.WriteFile(path, data, mode)
}

// progressBar draws one self-overwriting line on a terminal; on anything
// else (a file, a pipe, a test's buffer) it draws nothing.
//
// It is hand-written because the client's total moves: it grows when a
// node needs a resend or a sliver is fetched again, and shrinks when a
// fetch gives up, often after done has reached the old total.
// github.com/schollz/progressbar/v3 (v3.19.1) treats reaching its max as
// the end: the bar is marked finished for good, draws nothing more after a
// ChangeMax64, stops counting past the max, and returns "current number
// exceeds max" when the max shrinks below what is done.
type progressBar struct {
	w     io.Writer
	label string
	on    bool

	mu    sync.Mutex
	start time.Time
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer, label string) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, label: label, on: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

func (p *progressBar) update(done, total int64) {
	if !p.on || total <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last, p.drawn = now, true
	const width = 30
	filled := int(min(done, total) * width / total)
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3)
	// \x1b[K clears what a longer previous line left.
	fmt.Fprintf(p.w, "\r%s [%s%s] %s / %s  %s/s\x1b[K", p.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		humanBytes(float64(done)), humanBytes(float64(total)), humanBytes(rate))
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", b, units[i])
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}

// limitMemory sets the Go runtime's soft memory limit for a store or read
// of files chunked at chunkSize, unless $GOMEMLIMIT sets one. What is
// live is about 9 chunks for a store (two encoded, ≈ 4× each, and the
// next one read) and 6 for a read (two fetched, one of them re-encoded
// for its check); without a limit the collector lets the heap grow to
// twice that before it runs (GOGC=100), doubling the peak for nothing. A
// soft limit only makes the collector run sooner; it never fails an
// allocation.
func limitMemory(chunkSize int64, liveChunks int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(liveChunks*max(chunkSize, client.DefaultChunkSize) + 128<<20)
}
