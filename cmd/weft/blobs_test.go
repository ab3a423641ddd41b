package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
)

// runWeftSplit runs the root command in-process with stdout and stderr
// apart (the blob commands print data on one and reports on the other).
func runWeftSplit(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(bytes.NewReader(stdin))
	cmd.SetArgs(dashIDArgs(cmd, args))
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// cliDevnet starts an in-process devnet for the test and points the weft
// commands it runs there ($WEFT_CONTROL, $WEFT_TOKEN).
func cliDevnet(t *testing.T, ctx context.Context, nodes, shards int) *devnet.Network {
	t.Helper()
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), Nodes: nodes, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	t.Setenv("WEFT_CONTROL", net.ControlAddr)
	t.Setenv("WEFT_TOKEN", net.ClientToken)
	return net
}

// writeRandomFile writes size bytes drawn from PCG(seed, seed+1) to path
// and returns them.
func writeRandomFile(t *testing.T, path string, size int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// The client commands against a real in-process network: store a file,
// check its status, read it back (to a file and to stdout), verify its
// certificate against the control plane and against a committee file, and
// see a tampered certificate refused.
func TestStoreStatusReadVerifyCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cliDevnet(t, ctx, 4, 8)

	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	blob := writeRandomFile(t, in, 123_457, 3)
	certFile := filepath.Join(dir, "cert.bin")

	// store: the blob ID alone on stdout, a summary on stderr.
	stdout, stderr, err := runWeftSplit(t, nil, "store", in, "--cert-out", certFile, "--epochs", "3")
	if err != nil {
		t.Fatal(err, stderr)
	}
	idText := strings.TrimSpace(stdout)
	id, err := crypto.ParseBlobID(idText)
	if err != nil {
		t.Fatalf("store printed %q: %v", stdout, err)
	}
	if !strings.Contains(stderr, "certified in epoch 1") || !strings.Contains(stderr, "lives until epoch 4") {
		t.Fatalf("store summary %q", stderr)
	}

	// status, text and JSON.
	stdout, _, err = runWeftSplit(t, nil, "status", idText)
	if err != nil || !strings.Contains(stdout, "certified") || !strings.Contains(stdout, "valid (") || !strings.Contains(stdout, "123457 bytes") {
		t.Fatalf("status: %v\n%s", err, stdout)
	}
	stdout, _, err = runWeftSplit(t, nil, "status", idText, "-o", "json")
	var st statusReport
	if err != nil || json.Unmarshal([]byte(stdout), &st) != nil || st.Status != "certified" || st.CertValid == nil || !*st.CertValid || st.EndEpoch != 4 {
		t.Fatalf("status json: %v\n%s", err, stdout)
	}

	// read to a file, with a JSON report; and to stdout.
	outFile := filepath.Join(dir, "out.bin")
	stdout, _, err = runWeftSplit(t, nil, "read", idText, "--out", outFile, "-o", "json")
	var rr readReport
	if err != nil || json.Unmarshal([]byte(stdout), &rr) != nil || rr.Length != uint64(len(blob)) {
		t.Fatalf("read: %v\n%s", err, stdout)
	}
	if got, err := os.ReadFile(outFile); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read file: %d bytes, %v", len(got), err)
	}
	stdout, _, err = runWeftSplit(t, nil, "read", idText)
	if err != nil || stdout != string(blob) {
		t.Fatalf("read to stdout: %d bytes, %v", len(stdout), err)
	}
	// read --range: inclusive A-B, open-ended A-, the last N bytes; to
	// stdout, and to a file with a JSON report. A range that starts past
	// the end, or is not a range, is an error that says why.
	for spec, want := range map[string][]byte{
		"100-199": blob[100:200], "123450-": blob[123450:], "--range=-7": blob[len(blob)-7:],
		"0-0": blob[:1], "123000-999999": blob[123000:],
	} {
		args := []string{"read", idText, "--range", spec}
		if strings.HasPrefix(spec, "--") {
			args = []string{"read", idText, spec}
		}
		stdout, stderr, err := runWeftSplit(t, nil, args...)
		if err != nil || stdout != string(want) {
			t.Fatalf("read --range %s: %d bytes, %v\n%s", spec, len(stdout), err, stderr)
		}
	}
	stdout, _, err = runWeftSplit(t, nil, "read", idText, "--range", "1000-1999", "--out", outFile, "-o", "json")
	rr = readReport{}
	if err != nil || json.Unmarshal([]byte(stdout), &rr) != nil || rr.Length != 1000 || rr.Range == nil ||
		*rr.Range != (rangeReport{Offset: 1000, Length: 1000, Size: uint64(len(blob))}) {
		t.Fatalf("read --range -o json: %v\n%s", err, stdout)
	}
	if got, err := os.ReadFile(outFile); err != nil || !bytes.Equal(got, blob[1000:2000]) {
		t.Fatalf("read --range into a file: %d bytes, %v", len(got), err)
	}
	for spec, wantErr := range map[string]string{
		"123457-":    "byte range outside the blob: bytes 123457- of a 123457-byte blob",
		"200000-1":   "the last byte comes before the first",
		"abc":        "want FIRST-LAST, FIRST- or -SUFFIX",
		"--range=-0": "a suffix of 0 bytes selects nothing",
	} {
		args := []string{"read", idText, "--range", spec}
		if strings.HasPrefix(spec, "--") {
			args = []string{"read", idText, spec}
		}
		if _, _, err := runWeftSplit(t, nil, args...); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("read --range %s: %v, want an error saying %q", spec, err, wantErr)
		}
	}

	// A device is written to, never replaced by a renamed file.
	if _, _, err := runWeftSplit(t, nil, "read", idText, "--out", os.DevNull); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("%s after a read into it: %v, %v", os.DevNull, fi.Mode(), err)
	}

	// verify against the control plane, then against a committee file.
	stdout, _, err = runWeftSplit(t, nil, "verify", certFile, "--blob", idText)
	if err != nil || !strings.HasPrefix(stdout, "valid: availability certificate for blob "+idText+" in epoch 1") {
		t.Fatalf("verify: %v\n%s", err, stdout)
	}
	committeeFile := filepath.Join(dir, "committee.json")
	stdout, _, err = runWeftSplit(t, nil, "committee", "--epoch", "1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(committeeFile, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = runWeftSplit(t, nil, "verify", certFile, "--committee", committeeFile, "-o", "json", "--control", "127.0.0.1:1")
	var vr verifyReport
	if err != nil || json.Unmarshal([]byte(stdout), &vr) != nil || !vr.Valid || vr.BlobID != id.String() || vr.SignedShards < vr.WriteQuorum {
		t.Fatalf("verify with a committee file: %v\n%s", err, stdout)
	}

	// A certificate claiming a signer who did not sign: non-zero exit
	// (an error from Execute) with the reason.
	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	var cert crypto.Certificate
	if err := cert.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	cert.Signers[0] ^= 1 // flip member 0
	bad, err := cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad.bin")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = runWeftSplit(t, nil, "verify", badFile, "-o", "json")
	if err == nil || json.Unmarshal([]byte(stdout), &vr) != nil || vr.Valid || vr.Reason == "" {
		t.Fatalf("tampered certificate: %v\n%s", err, stdout)
	}
	t.Logf("tampered certificate: %v", err)
	// The right certificate for another blob.
	if _, _, err := runWeftSplit(t, nil, "verify", certFile, "--blob", crypto.BlobID{1}.String()); err == nil || !strings.Contains(err.Error(), "not "+crypto.BlobID{1}.String()) {
		t.Fatalf("certificate for another blob: %v", err)
	}

	// extend: by epochs (JSON), to an end epoch already reached (text),
	// then refusals that change nothing.
	stdout, _, err = runWeftSplit(t, nil, "extend", idText, "--epochs", "2", "-o", "json")
	var er extendReport
	if err != nil || json.Unmarshal([]byte(stdout), &er) != nil || er.PreviousEndEpoch != 4 || er.EndEpoch != 6 || er.Charged == 0 {
		t.Fatalf("extend --epochs 2: %v\n%s", err, stdout)
	}
	stdout, _, err = runWeftSplit(t, nil, "extend", idText, "--end-epoch", "5")
	if err != nil || !strings.Contains(stdout, "already lives until end epoch 6; nothing charged") {
		t.Fatalf("extend --end-epoch 5: %v\n%s", err, stdout)
	}
	for _, args := range [][]string{
		{"extend", idText},
		{"extend", idText, "--epochs", "1", "--end-epoch", "9"},
		{"extend", "not-an-id", "--epochs", "1"},
		{"extend", crypto.BlobID{3}.String(), "--epochs", "1"},
	} {
		if _, _, err := runWeftSplit(t, nil, args...); err == nil {
			t.Fatalf("%v succeeded", args)
		}
	}
	stdout, _, err = runWeftSplit(t, nil, "status", idText, "-o", "json")
	if err != nil || json.Unmarshal([]byte(stdout), &st) != nil || st.EndEpoch != 6 {
		t.Fatalf("status after extend: %v\n%s", err, stdout)
	}

	// quota: what the stores and the extension above used, and a cost.
	stdout, _, err = runWeftSplit(t, nil, "quota", "--size", "123457", "--epochs", "3", "-o", "json")
	var qr quotaReport
	if err != nil || json.Unmarshal([]byte(stdout), &qr) != nil || qr.Client != "devnet" || qr.Used == 0 || qr.Left != qr.Quota-qr.Used ||
		qr.Cost == nil || !qr.Cost.Fits || qr.Cost.Cost == 0 || qr.Cost.Cost > qr.Used {
		t.Fatalf("quota: %v\n%s", err, stdout)
	}
	stdout, _, err = runWeftSplit(t, nil, "quota")
	if err != nil || !strings.Contains(stdout, "client") || !strings.Contains(stdout, "devnet") {
		t.Fatalf("quota (text): %v\n%s", err, stdout)
	}

	// store from stdin; an unknown blob; no token.
	stdout, _, err = runWeftSplit(t, []byte("hello weft"), "store", "-", "-o", "json")
	var sr storeReport
	if err != nil || json.Unmarshal([]byte(stdout), &sr) != nil || sr.Length != 10 || sr.Signers == 0 {
		t.Fatalf("store from stdin: %v\n%s", err, stdout)
	}
	if _, _, err := runWeftSplit(t, nil, "read", crypto.BlobID{2}.String()); err == nil || !strings.Contains(err.Error(), "blob not found") {
		t.Fatalf("read of an unknown blob: %v", err)
	}
	// --epochs 0 is refused, not read as the default (the gateway refuses ?epochs=0 too).
	if _, _, err := runWeftSplit(t, nil, "store", in, "--epochs", "0"); err == nil || !strings.Contains(err.Error(), "--epochs must be at least 1") {
		t.Fatalf("store --epochs 0: %v", err)
	}
	t.Setenv("WEFT_TOKEN", "")
	if _, _, err := runWeftSplit(t, nil, "store", in); err == nil || !strings.Contains(err.Error(), "client token is required") {
		t.Fatalf("store without a token: %v", err)
	}
	if _, _, err := runWeftSplit(t, nil, "extend", idText, "--epochs", "1"); err == nil || !strings.Contains(err.Error(), "client token is required") {
		t.Fatalf("extend without a token: %v", err)
	}
	if _, _, err := runWeftSplit(t, nil, "quota"); err == nil || !strings.Contains(err.Error(), "client token is required") {
		t.Fatalf("quota without a token: %v", err)
	}
}

// The acceptance run through the CLI: one control voter and seven nodes;
// blobs of 0 B, 1 B, 1 MiB and (without -short) 64 MiB are stored with
// `weft store`, read back identical with `weft read`, and every
// certificate verifies with `weft verify`.
func TestCLIStoreReadVerifySizes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cliDevnet(t, ctx, 7, 21)
	sizes := []int{0, 1, 1 << 20}
	if !testing.Short() {
		sizes = append(sizes, 64<<20)
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	for _, size := range sizes {
		blob := make([]byte, size)
		for i := range blob {
			blob[i] = byte(r.Uint32())
		}
		in := filepath.Join(dir, "in")
		certFile := filepath.Join(dir, "cert")
		out := filepath.Join(dir, "out")
		if err := os.WriteFile(in, blob, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(certFile)
		stdout, stderr, err := runWeftSplit(t, nil, "store", in, "--cert-out", certFile)
		if err != nil {
			t.Fatalf("store %d bytes: %v\n%s", size, err, stderr)
		}
		id := strings.TrimSpace(stdout)
		if _, stderr, err := runWeftSplit(t, nil, "read", id, "--out", out); err != nil {
			t.Fatalf("read %d bytes: %v\n%s", size, err, stderr)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("%d bytes: read back %d bytes (%v)", size, len(got), err)
		}
		stdout, _, err = runWeftSplit(t, nil, "verify", certFile, "--blob", id)
		if err != nil || !strings.HasPrefix(stdout, "valid: ") {
			t.Fatalf("verify the certificate of %d bytes: %v\n%s", size, err, stdout)
		}
	}
}

// One blob ID in 64 starts with '-', which the flag parser would take for
// flags: the CLI takes it as the ID it is, wherever it stands, and a
// blob with such an ID is stored, read and ranged like any other.
func TestBlobIDStartingWithADash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const shards = 8
	cliDevnet(t, ctx, 4, shards)
	content, id := contentWithDashID(t, shards)
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, content, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runWeftSplit(t, nil, "store", in)
	if err != nil || strings.TrimSpace(stdout) != id {
		t.Fatalf("store: %q, %v; want %s", stdout, err, id)
	}
	for _, args := range [][]string{
		{"read", id},
		{"read", id, "--timeout", "20s"},
		{"read", "--timeout", "20s", id},
		{"read", "--timeout", "20s", "--", id},
		{"--timeout", "20s", "read", id, "-o", "text"},
	} {
		if stdout, _, err := runWeftSplit(t, nil, args...); err != nil || stdout != string(content) {
			t.Fatalf("%q: %d bytes back, %v", args, len(stdout), err)
		}
	}
	// A flag's value that starts with '-' stays the flag's.
	if stdout, _, err := runWeftSplit(t, nil, "read", id, "--range", "-3"); err != nil || stdout != string(content[len(content)-3:]) {
		t.Fatalf("read ID --range -3: %q, %v", stdout, err)
	}
	// Flags after "--" are arguments: the hint says to move them.
	args := []string{"extend", "--", id, "--epochs", "3"}
	_, _, err = runWeftSplit(t, nil, args...)
	if err == nil {
		t.Fatal("flags after -- were taken")
	}
	if hint := argsHint(args, err); !strings.Contains(hint, "--epochs too: give the flags before '--' (weft extend [flags] -- BLOB_ID)") {
		t.Fatalf("error %q, hint %q", err, hint)
	}
}

// contentWithDashID finds a small content whose blob ID (for n shards)
// starts with '-': about 64 tries.
func contentWithDashID(t *testing.T, shards int) ([]byte, string) {
	t.Helper()
	codec, err := coding.New(shards)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		content := []byte(fmt.Sprintf("a blob whose ID starts with a dash, try %d", i))
		enc, err := codec.Encode(content)
		if err != nil {
			t.Fatal(err)
		}
		if id := enc.ID.String(); id[0] == '-' {
			return content, id
		}
	}
	t.Fatal("no content with an ID starting with '-' in 10,000 tries")
	return nil, ""
}

func TestDashIDArgs(t *testing.T) {
	id := crypto.BlobID{0xF8, 1, 2, 3}.String()
	if id[0] != '-' {
		t.Fatalf("test ID %s does not start with '-'", id)
	}
	plain := crypto.BlobID{1}.String()
	for _, c := range []struct{ in, want []string }{
		{[]string{"read", plain, "--out", "f"}, []string{"read", plain, "--out", "f"}},
		{[]string{"read", id}, []string{"read", "--", id}},
		{[]string{"read", id, "0-9", "--out", "-"}, []string{"read", "--out", "-", "--", id, "0-9"}},
		{[]string{"read", "--out=f", id, "-o", "json"}, []string{"read", "--out=f", "-o", "json", "--", id}},
		{[]string{"read", "-ojson", id, "--raw"}, []string{"read", "-ojson", "--raw", "--", id}},
		{[]string{"--timeout", "5s", "read", id}, []string{"read", "--timeout", "5s", "--", id}},
		{[]string{id, "read"}, []string{"read", "--", id}}, // never a command name
		{[]string{"verify", "cert", "--blob", id}, []string{"verify", "--blob", id, "--", "cert"}},
		{[]string{"read", id, "--", "x"}, []string{"read", "--", id, "x"}},
		{[]string{"read", "--", id}, []string{"read", "--", id}},
		{[]string{"no-such-command", id}, []string{"no-such-command", id}},
	} {
		if got := dashIDArgs(newRootCommand(), c.in); !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
}

// A file larger than --chunk-size goes through the CLI as chunks plus a
// manifest: stored from a file and from stdin (the same ID), read back to
// a file and to stdout, its manifest with --raw, and every certificate
// checked by `weft verify ID`.
func TestStoreReadChunkedFileCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cliDevnet(t, ctx, 4, 8)

	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	content := writeRandomFile(t, in, 5*65536+123, 5)
	stdout, stderr, err := runWeftSplit(t, nil, "store", in, "--chunk-size", "65536", "--content-type", "video/mp4", "-o", "json")
	var sr storeReport
	if err != nil || json.Unmarshal([]byte(stdout), &sr) != nil || sr.Chunks != 6 || sr.Length != uint64(len(content)) {
		t.Fatalf("store: %v\n%s\n%s", err, stdout, stderr)
	}
	stdout, stderr, err = runWeftSplit(t, content, "store", "-", "--chunk-size", "65536", "--content-type", "video/mp4")
	if err != nil || strings.TrimSpace(stdout) != sr.BlobID || !strings.Contains(stderr, "6 chunks + a manifest (7 parts were certified already)") {
		t.Fatalf("store from stdin: %v\n%s\n%s", err, stdout, stderr)
	}

	out := filepath.Join(dir, "out.bin")
	if _, _, err := runWeftSplit(t, nil, "read", sr.BlobID, "--out", out); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read into a file: %d bytes, %v", len(got), err)
	}
	if stdout, _, err = runWeftSplit(t, nil, "read", sr.BlobID); err != nil || stdout != string(content) {
		t.Fatalf("read to stdout: %d bytes, %v", len(stdout), err)
	}
	if stdout, _, err = runWeftSplit(t, nil, "read", sr.BlobID, "--raw"); err != nil || !client.IsManifest([]byte(stdout)) {
		t.Fatalf("read --raw: %v, %d bytes that are not a manifest", err, len(stdout))
	}
	// A range of a file, across a chunk boundary, and one past its end.
	if stdout, _, err = runWeftSplit(t, nil, "read", sr.BlobID, "--range", "65500-65599"); err != nil || stdout != string(content[65500:65600]) {
		t.Fatalf("read --range of a file: %d bytes, %v", len(stdout), err)
	}
	if _, _, err := runWeftSplit(t, nil, "read", sr.BlobID, "--range", strconv.Itoa(len(content))+"-"); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("read --range past a file's end: %v", err)
	}
	stdout, _, err = runWeftSplit(t, nil, "verify", sr.BlobID)
	if err != nil || !strings.HasPrefix(stdout, "valid: file "+sr.BlobID) || !strings.Contains(stdout, "all 6 chunks") {
		t.Fatalf("verify: %v\n%s", err, stdout)
	}
	// An ID that names nothing: a clear error, not a missing file.
	if _, _, err := runWeftSplit(t, nil, "verify", crypto.BlobID{7}.String()); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("verify of an unknown ID: %v", err)
	}
}
