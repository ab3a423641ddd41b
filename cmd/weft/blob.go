package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

// The on-disk layout of an encoded blob, as `weft blob encode` writes it:
// metadata.bin plus, per shard, the two slivers of the pair that shard
// stores. Deleting shard files and decoding shows what survives loss.
const metadataFile = "metadata.bin"

func shardFile(dir string, shard int, axis crypto.Axis) string {
	return filepath.Join(dir, fmt.Sprintf("shard-%05d.%s", shard, axis))
}

func newBlobCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "blob",
		Short: "Encode and decode blobs locally with Red Stuff",
	}
	cmd.AddCommand(newBlobEncodeCommand(), newBlobDecodeCommand())
	return cmd
}

type encodeReport struct {
	BlobID         string `json:"blob_id"`
	Length         uint64 `json:"length"`
	Shards         int    `json:"shards"`
	Encoding       string `json:"encoding"`
	F              int    `json:"f"`
	NP             int    `json:"n_primary"`
	NS             int    `json:"n_secondary"`
	SymbolSize     int    `json:"symbol_size"`
	PrimaryBytes   int    `json:"primary_sliver_bytes"`
	SecondaryBytes int    `json:"secondary_sliver_bytes"`
	ShardBytes     int    `json:"bytes_per_shard"`
	TotalBytes     uint64 `json:"total_bytes"`
	Expansion      string `json:"expansion"`
	Dir            string `json:"dir"`
}

func newBlobEncodeCommand() *cobra.Command {
	var shards int
	var out, encoding, format string
	cmd := &cobra.Command{
		Use:   "encode FILE",
		Short: "Encode FILE into n sliver pairs and write them, one pair per shard, to a directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			codec, err := codecFromFlags(shards, encoding)
			if err != nil {
				return err
			}
			blob, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			enc, err := codec.Encode(blob)
			if err != nil {
				return err
			}
			if out == "" {
				out = args[0] + ".weft"
			}
			if err := writeEncoded(out, codec.Params(), enc); err != nil {
				return err
			}
			return printEncodeReport(cmd.OutOrStdout(), format, codec.Params(), enc, out)
		},
	}
	cmd.Flags().IntVar(&shards, "shards", 100, "number of shards n (≥ 4)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write metadata and shard files to (default FILE.weft)")
	cmd.Flags().StringVar(&encoding, "encoding", "", "codec: rs8 (n ≤ 256), lanes16 (2-byte symbols) or leopard16 (64-byte symbols) (default: rs8 up to 256 shards, lanes16 above)")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

func codecFromFlags(shards int, encoding string) (*coding.Codec, error) {
	var opts []coding.Option
	switch encoding {
	case "":
	case "rs8":
		opts = append(opts, coding.WithEncoding(coding.RS8))
	case "leopard16":
		opts = append(opts, coding.WithEncoding(coding.Leopard16))
	case "lanes16":
		opts = append(opts, coding.WithEncoding(coding.Lanes16))
	default:
		return nil, fmt.Errorf("unknown encoding %q (want rs8, leopard16 or lanes16)", encoding)
	}
	return coding.New(shards, opts...)
}

func writeEncoded(dir string, p coding.Params, enc *coding.Encoded) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	meta, err := enc.Metadata.MarshalBinary()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, metadataFile), meta, 0o644); err != nil {
		return err
	}
	for shard := range p.Shards {
		pair := enc.PairOnShard(p, shard)
		for _, sl := range []coding.Sliver{pair.Primary, pair.Secondary} {
			b, err := sl.MarshalBinary()
			if err != nil {
				return err
			}
			if err := os.WriteFile(shardFile(dir, shard, sl.Axis), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func printEncodeReport(w io.Writer, format string, p coding.Params, enc *coding.Encoded, dir string) error {
	total := uint64(p.Shards) * uint64(p.NP+p.NS) * uint64(enc.SymbolSize)
	r := encodeReport{
		BlobID: enc.ID.String(), Length: enc.Metadata.Length, Shards: p.Shards, Encoding: p.Encoding.String(),
		F: p.F, NP: p.NP, NS: p.NS, SymbolSize: enc.SymbolSize,
		PrimaryBytes: p.NS * enc.SymbolSize, SecondaryBytes: p.NP * enc.SymbolSize,
		ShardBytes: (p.NS + p.NP) * enc.SymbolSize, TotalBytes: total, Dir: dir,
	}
	if r.Length > 0 {
		r.Expansion = fmt.Sprintf("%.2f", float64(total)/float64(r.Length))
	}
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "blob ID\t%s\n", r.BlobID)
	fmt.Fprintf(tw, "length\t%d bytes\n", r.Length)
	fmt.Fprintf(tw, "shards\tn=%d (f=%d, nP=%d, nS=%d), %s\n", r.Shards, r.F, r.NP, r.NS, r.Encoding)
	fmt.Fprintf(tw, "symbol size\t%d bytes\n", r.SymbolSize)
	fmt.Fprintf(tw, "per shard\t%d bytes (primary %d + secondary %d)\n", r.ShardBytes, r.PrimaryBytes, r.SecondaryBytes)
	fmt.Fprintf(tw, "total\t%d bytes", r.TotalBytes)
	if r.Expansion != "" {
		fmt.Fprintf(tw, " (%s× the blob)", r.Expansion)
	}
	fmt.Fprintf(tw, "\nwritten to\t%s\n", dir)
	fmt.Fprintf(tw, "decode with\tweft blob decode %s --out FILE  (any %d primary or %d secondary shard files suffice)\n", dir, r.NP, r.NS)
	return tw.Flush()
}

type decodeReport struct {
	BlobID   string   `json:"blob_id"`
	Length   uint64   `json:"length"`
	Axis     string   `json:"axis"`
	Used     []int    `json:"slivers_used"`
	Shards   []int    `json:"shards_used"`
	Rejected []string `json:"rejected,omitempty"`
	Out      string   `json:"out"`
}

func newBlobDecodeCommand() *cobra.Command {
	var out, axis, expectID, format string
	cmd := &cobra.Command{
		Use:   "decode DIR",
		Short: "Rebuild a blob from whatever shard files of DIR remain",
		Long: "Reads DIR/metadata.bin and every shard file present, checks each sliver against the\n" +
			"metadata, decodes from nP primary (or nS secondary) slivers, and writes the blob only\n" +
			"after the consistent-read check: re-encoding it must reproduce the blob ID.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			r, blob, err := decodeDir(args[0], axis, expectID)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, blob, 0o644); err != nil {
				return err
			}
			r.Out = out
			if format == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "blob %s: %d bytes from %d %s slivers, on shards %v\n", r.BlobID, r.Length, len(r.Used), r.Axis, r.Shards)
			for _, rej := range r.Rejected {
				fmt.Fprintf(w, "  rejected: %s\n", rej)
			}
			fmt.Fprintf(w, "written to %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the blob to")
	cmd.Flags().StringVar(&axis, "axis", "auto", "slivers to decode from: primary, secondary or auto")
	cmd.Flags().StringVar(&expectID, "id", "", "blob ID the metadata must match (default: trust metadata.bin)")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

func decodeDir(dir, axis, expectID string) (*decodeReport, []byte, error) {
	raw, err := os.ReadFile(filepath.Join(dir, metadataFile))
	if err != nil {
		return nil, nil, err
	}
	meta := new(crypto.Metadata)
	if err := meta.UnmarshalBinary(raw); err != nil {
		return nil, nil, err
	}
	id := meta.BlobID()
	if expectID != "" {
		want, err := crypto.ParseBlobID(expectID)
		if err != nil {
			return nil, nil, err
		}
		if err := meta.CheckBlobID(want); err != nil {
			return nil, nil, err
		}
	}
	codec, err := coding.New(int(meta.Shards), coding.WithEncoding(coding.Encoding(meta.Encoding)))
	if err != nil {
		return nil, nil, err
	}
	r := &decodeReport{BlobID: id.String(), Length: meta.Length}
	var verified [2][]coding.Sliver
	for _, a := range []crypto.Axis{crypto.Primary, crypto.Secondary} {
		if axis != "auto" && axis != a.String() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dir, "shard-*."+a.String()))
		sort.Strings(files)
		for _, f := range files {
			sl, err := readSliver(f)
			if err == nil {
				err = codec.VerifySliver(meta, sl)
			}
			if err != nil {
				r.Rejected = append(r.Rejected, fmt.Sprintf("%s: %v", filepath.Base(f), err))
				continue
			}
			verified[a] = append(verified[a], sl)
		}
	}
	// Use just enough slivers, primaries first: any nP of them suffice.
	// With too few of both, pass all so the error counts them.
	p := codec.Params()
	use := append(verified[crypto.Primary], verified[crypto.Secondary]...)
	if len(verified[crypto.Primary]) >= p.NP {
		use = verified[crypto.Primary][:p.NP]
	} else if len(verified[crypto.Secondary]) >= p.NS {
		use = verified[crypto.Secondary][:p.NS]
	}
	blob, err := codec.Decode(meta, use)
	if err != nil {
		if len(r.Rejected) > 0 {
			err = fmt.Errorf("%w\nrejected:\n  %s", err, strings.Join(r.Rejected, "\n  "))
		}
		return nil, nil, err
	}
	for _, sl := range use {
		r.Axis = sl.Axis.String()
		r.Used = append(r.Used, int(sl.Index))
		pair := int(crypto.PairIndex(sl.Axis, sl.Index, meta.Shards))
		r.Shards = append(r.Shards, p.ShardForPair(pair, id))
	}
	sort.Ints(r.Shards)
	return r, blob, nil
}

func readSliver(path string) (coding.Sliver, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return coding.Sliver{}, err
	}
	var sl coding.Sliver
	err = sl.UnmarshalBinary(b)
	return sl, err
}
