package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftstore/weft/client"
	"github.com/weftstore/weft/devnet"
)

// addClientToken issues a second client credential through
// `weft admin client add` and returns its token.
func addClientToken(t *testing.T, net *devnet.Network, name string) string {
	t.Helper()
	stdout, stderr, err := runWeftSplit(t, nil, "admin", "client", "add", name, "--quota", "1000000000000", "--token", net.OperatorToken, "-o", "json")
	var added struct {
		Token string `json:"token"`
	}
	if err != nil || json.Unmarshal([]byte(stdout), &added) != nil || added.Token == "" {
		t.Fatalf("admin client add %s: %v\n%s\n%s", name, err, stdout, stderr)
	}
	return added.Token
}

// advanceEpoch advances the epoch with `weft admin epoch advance`.
func advanceEpoch(t *testing.T, net *devnet.Network) {
	t.Helper()
	if out, _, err := runWeftSplit(t, nil, "admin", "epoch", "advance", "--token", net.OperatorToken); err != nil {
		t.Fatalf("epoch advance: %v\n%s", err, out)
	}
}

// storeJSON runs `weft store … -o json` and returns its report.
func storeJSON(t *testing.T, args ...string) storeReport {
	t.Helper()
	stdout, stderr, err := runWeftSplit(t, nil, append(append([]string{"store"}, args...), "-o", "json")...)
	var sr storeReport
	if err != nil || json.Unmarshal([]byte(stdout), &sr) != nil || sr.Object == 0 {
		t.Fatalf("store %v: %v\n%s\n%s", args, err, stdout, stderr)
	}
	return sr
}

func listObjects(t *testing.T, args ...string) objectsReport {
	t.Helper()
	stdout, stderr, err := runWeftSplit(t, nil, append(append([]string{"objects"}, args...), "-o", "json")...)
	var rep objectsReport
	if err != nil || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("objects %v: %v\n%s\n%s", args, err, stdout, stderr)
	}
	return rep
}

// hasRow reports whether a table printed a row: label, spaces, value.
func hasRow(table, label, value string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + ` +` + regexp.QuoteMeta(value)).MatchString(table)
}

// A blob object's life through the CLI: store makes one (printed with
// the blob ID), objects lists it, attr set/get round-trips its labels,
// transfer gives it to a second client, whose it then is alone: the old
// owner's delete and attr set are refused, the new owner deletes it and
// gets the refund, and once the epoch moves a read answers that the blob
// was deleted.
func TestObjectLifecycleCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	net := cliDevnet(t, ctx, 4, 8)
	dir := t.TempDir()
	in := filepath.Join(dir, "note.bin")
	writeRandomFile(t, in, 20_000, 61)

	// store: the blob ID alone on stdout, the object on stderr.
	stdout, stderr, err := runWeftSplit(t, nil, "store", in, "--epochs", "3", "--attr", "Team=Blue", "--attr", "note=hello, world")
	if err != nil {
		t.Fatal(err, stderr)
	}
	blob := strings.TrimSpace(stdout)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "object ") || !strings.Contains(lines[1], " of blob "+blob+": deletable") {
		t.Fatalf("store summary %q", stderr)
	}
	obj, err := strconv.ParseUint(strings.Fields(lines[1])[1], 10, 64)
	if err != nil {
		t.Fatalf("store summary %q: %v", stderr, err)
	}
	id := strconv.FormatUint(obj, 10)
	// Storing it again reuses the object; -o json names it next to the blob.
	if sr := storeJSON(t, in, "--epochs", "3", "--attr", "team=Blue", "--attr", "NOTE=hello, world"); sr.Object != obj || sr.BlobID != blob || !sr.Deletable || !sr.Existing {
		t.Fatalf("stored again: %+v, want object %d of %s", sr, obj, blob)
	}

	// objects: a table, and -o json (all of them, and of one blob).
	stdout, _, err = runWeftSplit(t, nil, "objects")
	if err != nil || !strings.HasPrefix(stdout, "ID") || !strings.Contains(stdout, id+"  ") || !strings.Contains(stdout, blob) ||
		!strings.Contains(stdout, "deletable") || !strings.Contains(stdout, `note="hello, world",team=Blue`) {
		t.Fatalf("objects: %v\n%s", err, stdout)
	}
	rep := listObjects(t, "--blob", blob)
	if len(rep.Objects) != 1 || rep.Objects[0].ID != obj || rep.Objects[0].Owner != "devnet" || rep.Objects[0].EndEpoch != 4 || rep.More {
		t.Fatalf("objects --blob: %+v", rep)
	}
	stdout, _, err = runWeftSplit(t, nil, "object", id)
	if err != nil || !hasRow(stdout, "owner", "devnet") || !hasRow(stdout, "end epoch", "4 (lives through epoch 3)") || !hasRow(stdout, "attribute team", "Blue") {
		t.Fatalf("object: %v\n%s", err, stdout)
	}

	// attr set / get: keys are lower-cased; the result is printed.
	stdout, stderr, err = runWeftSplit(t, nil, "attr", "set", id, "Owner=Alice Smith", "content-type=text/plain", "--remove", "NOTE")
	if err != nil || stdout != "content-type=text/plain\nowner=Alice Smith\nteam=Blue\n" {
		t.Fatalf("attr set: %v\n%q\n%s", err, stdout, stderr)
	}
	for key, want := range map[string]string{"owner": "Alice Smith\n", "OWNER": "Alice Smith\n", "team": "Blue\n"} {
		if stdout, _, err := runWeftSplit(t, nil, "attr", "get", id, key); err != nil || stdout != want {
			t.Fatalf("attr get %s: %v %q", key, err, stdout)
		}
	}
	if stdout, _, err := runWeftSplit(t, nil, "attr", "get", id); err != nil || stdout != "content-type=text/plain\nowner=Alice Smith\nteam=Blue\n" {
		t.Fatalf("attr get: %v %q", err, stdout)
	}
	if _, _, err := runWeftSplit(t, nil, "attr", "get", id, "note"); err == nil || err.Error() != `object `+id+` has no attribute "note"` {
		t.Fatalf("attr get of a removed key: %v", err)
	}
	// The blob's status names its object and content type.
	stdout, _, err = runWeftSplit(t, nil, "status", blob)
	if err != nil || !hasRow(stdout, "objects", "1\n") || !hasRow(stdout, "content type", "text/plain\n") {
		t.Fatalf("status: %v\n%s", err, stdout)
	}

	// transfer: to a client that does not exist, refused; then to bob.
	bob := addClientToken(t, net, "bob")
	if _, _, err := runWeftSplit(t, nil, "transfer", id, "nobody"); err == nil || !strings.HasPrefix(err.Error(), `no client "nobody" to transfer object `+id+" to") {
		t.Fatalf("transfer to nobody: %v", err)
	}
	stdout, _, err = runWeftSplit(t, nil, "transfer", id, "bob")
	if err != nil || stdout != "object "+id+" (blob "+blob+") now belongs to client bob\n" {
		t.Fatalf("transfer: %v\n%s", err, stdout)
	}

	// The old owner may do nothing with it any more: one clear line each.
	wantNotOwner := "object " + id + " belongs to another client: only its owner may "
	for _, args := range [][]string{{"delete", id}, {"attr", "set", id, "a=b"}, {"transfer", id, "devnet"}} {
		_, _, err := runWeftSplit(t, nil, args...)
		if !errors.Is(err, client.ErrNotOwner) || !strings.HasPrefix(err.Error(), wantNotOwner) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v by the old owner: %v", args, err)
		}
	}
	if rep := listObjects(t); len(rep.Objects) != 0 {
		t.Fatalf("the old owner still lists %+v", rep.Objects)
	}
	if rep := listObjects(t, "--token", bob); len(rep.Objects) != 1 || rep.Objects[0].ID != obj || rep.Objects[0].Owner != "bob" {
		t.Fatalf("the new owner lists %+v", rep.Objects)
	}

	// The new owner deletes it: its only object, so the nodes drop the
	// blob at the next epoch's start.
	stdout, _, err = runWeftSplit(t, nil, "delete", id, "--token", bob)
	if err != nil || !strings.HasPrefix(stdout, "deleted object "+id+" (blob "+blob+"): refunded ") ||
		!strings.Contains(stdout, "the nodes drop it at the start of epoch 2") || strings.HasPrefix(stdout, "deleted object "+id+" (blob "+blob+"): refunded 0 ") {
		t.Fatalf("delete by the new owner: %v\n%s", err, stdout)
	}
	stdout, _, err = runWeftSplit(t, nil, "status", blob)
	if err != nil || !hasRow(stdout, "objects", "0\n") || !hasRow(stdout, "deleting", "at epoch 2") {
		t.Fatalf("status while deleting: %v\n%s", err, stdout)
	}
	if _, _, err := runWeftSplit(t, nil, "delete", id, "--token", bob); !errors.Is(err, client.ErrObjectNotFound) || !strings.HasPrefix(err.Error(), "object "+id+" not found") {
		t.Fatalf("delete again: %v", err)
	}
	if _, _, err := runWeftSplit(t, nil, "object", id); !errors.Is(err, client.ErrObjectNotFound) {
		t.Fatalf("object after its deletion: %v", err)
	}

	advanceEpoch(t, net)
	if _, _, err := runWeftSplit(t, nil, "read", blob); !errors.Is(err, client.ErrDeleted) {
		t.Fatalf("read of a deleted blob: %v", err)
	}
	var st statusReport
	stdout, _, err = runWeftSplit(t, nil, "status", blob, "-o", "json")
	if err != nil || json.Unmarshal([]byte(stdout), &st) != nil || st.Status != client.StatusDeleted || st.Objects != 0 || st.EndEpoch != 2 {
		t.Fatalf("status after the epoch: %v\n%s", err, stdout)
	}
}

// A permanent object cannot be deleted; attributes out of bounds, or not
// key=value, are refused before anything is sent (the control plane
// given is not even there), and a bad object ID is named as such.
func TestObjectRefusalsCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cliDevnet(t, ctx, 4, 8)
	dir := t.TempDir()
	in := filepath.Join(dir, "keep.bin")
	writeRandomFile(t, in, 3_000, 62)

	sr := storeJSON(t, in, "--permanent", "--epochs", "4", "--attr", "Content-Type=application/x-keep")
	if sr.Deletable {
		t.Fatalf("store --permanent: %+v", sr)
	}
	id := strconv.FormatUint(sr.Object, 10)
	_, _, err := runWeftSplit(t, nil, "delete", id)
	if !errors.Is(err, client.ErrPermanent) || err.Error() != "object "+id+" is permanent: it cannot be deleted before its end epoch 5" {
		t.Fatalf("delete of a permanent object: %v", err)
	}
	rep := listObjects(t)
	if len(rep.Objects) != 1 || rep.Objects[0].Deletable || rep.Objects[0].Attributes["content-type"] != "application/x-keep" {
		t.Fatalf("objects: %+v", rep)
	}
	stdout, _, err := runWeftSplit(t, nil, "status", sr.BlobID)
	if err != nil || !hasRow(stdout, "permanent until", "end epoch 5") || !hasRow(stdout, "content type", "application/x-keep") {
		t.Fatalf("status of a permanent blob: %v\n%s", err, stdout)
	}
	// Deleting several objects checks them all first: with the permanent
	// one among them, the deletable one is not deleted either.
	other := storeJSON(t, filepath.Join(dir, "keep.bin"), "--epochs", "4")
	if other.Object == sr.Object {
		t.Fatal("a deletable store reused the permanent object")
	}
	if _, _, err := runWeftSplit(t, nil, "delete", strconv.FormatUint(other.Object, 10), id); !errors.Is(err, client.ErrPermanent) {
		t.Fatalf("delete of a deletable and a permanent object: %v", err)
	}
	if rep := listObjects(t); len(rep.Objects) != 2 {
		t.Fatalf("after a refused delete: %+v", rep.Objects)
	}

	// Quilts get an object too.
	stdout, stderr, err := runWeftSplit(t, nil, "store", "--quilt", in, "--permanent", "--attr", "site=docs", "-o", "json")
	var qr quiltReport
	if err != nil || json.Unmarshal([]byte(stdout), &qr) != nil || qr.Object == 0 || qr.Deletable {
		t.Fatalf("store --quilt: %v\n%s\n%s", err, stdout, stderr)
	}
	if stdout, _, err := runWeftSplit(t, nil, "attr", "get", strconv.FormatUint(qr.Object, 10), "site"); err != nil || stdout != "docs\n" {
		t.Fatalf("the quilt object's attribute: %v %q", err, stdout)
	}

	// Bad input: refused with a clear error before anything is sent.
	nowhere := []string{"--control", "127.0.0.1:1"}
	long := strings.Repeat("k", 65)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"store", in, "--attr", "colour"}, `--attr: attribute "colour": want key=value`},
		{[]string{"store", in, "--attr", "a=1", "--attr", "A=2"}, `--attr: attribute "a" is given twice`},
		{[]string{"store", in, "--attr", "note=one\x01two"}, "--attr: attribute note: control character at byte 3"},
		{[]string{"store", in, "--attr", "note=a\nb"}, "--attr: attribute note: control character at byte 1"},
		{[]string{"store", in, "--attr", long + "=v"}, "--attr: attribute key of 65 bytes (1–64)"},
		{[]string{"store", in, "--attr", "note=" + strings.Repeat("v", 1025)}, "--attr: attribute note: value of 1025 bytes (at most 1024)"},
		{[]string{"store", in, "--attr", "bad key=v"}, `--attr: attribute key "bad key" has ' ' at byte 3`},
		{[]string{"store", in, "--attr", "=v"}, "--attr: attribute key of 0 bytes"},
		{[]string{"store", in, "--content-type", "text/plain", "--attr", "content-type=text/html"}, "give the content type once"},
		{[]string{"store", "--quilt", in, "--attr", "x=\x7f"}, "--attr: attribute x: control character at byte 0"},
		{[]string{"attr", "set", id, "Note=a\tb"}, "attribute note: control character at byte 1"},
		{[]string{"attr", "set", id, "k=v", "--remove", "K"}, `attribute "k" is both set and removed`},
		{[]string{"attr", "set", id, "--remove", "bad key"}, `--remove: attribute key "bad key"`},
		{[]string{"attr", "set", id}, "nothing to change"},
		{[]string{"delete", "0"}, `object ID "0": want a positive integer`},
		{[]string{"delete", "7", "7"}, "object 7 is given twice"},
		{[]string{"delete", sr.BlobID}, sr.BlobID + " is a blob ID, not an object ID"},
		{[]string{"transfer", "x1", "bob"}, `object ID "x1": want a positive integer`},
	} {
		_, _, err := runWeftSplit(t, nil, append(tc.args, nowhere...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	// Nothing changed: still the three objects, with their attributes.
	rep = listObjects(t)
	if len(rep.Objects) != 3 || rep.Objects[0].Attributes["content-type"] != "application/x-keep" || len(rep.Objects[0].Attributes) != 1 {
		t.Fatalf("after the refusals: %+v", rep.Objects)
	}
	// Paging: one at a time, with the next page's command on stderr.
	stdout, stderr, err = runWeftSplit(t, nil, "objects", "--limit", "1")
	if err != nil || strings.Count(stdout, "\n") != 2 || stderr != "more: weft objects --after "+id+" --limit 1\n" {
		t.Fatalf("objects --limit 1: %v\n%s\n%s", err, stdout, stderr)
	}
	if rep := listObjects(t, "--after", id, "--limit", "1"); len(rep.Objects) != 1 || rep.Objects[0].ID != other.Object || !rep.More || rep.Next != other.Object {
		t.Fatalf("objects --after: %+v", rep)
	}
}

// Deleting a file's object deletes the client's objects of its chunks,
// except those another of its files lists: a second file sharing the
// first's leading chunks (an appended-to copy, whose store reused those
// chunk objects) stays whole, and deleting it then lets them go.
func TestDeleteChunkedFileCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	net := cliDevnet(t, ctx, 4, 8)
	dir := t.TempDir()
	first := filepath.Join(dir, "v1.bin")
	v1 := writeRandomFile(t, first, 2*65536+5000, 63)
	second := filepath.Join(dir, "v2.bin")
	v2 := append(append([]byte{}, v1[:2*65536]...), bytes.Repeat([]byte("appended "), 3000)...)
	if err := os.WriteFile(second, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	a := storeJSON(t, first, "--chunk-size", "65536", "--content-type", "application/x-v1")
	b := storeJSON(t, second, "--chunk-size", "65536")
	if a.Chunks != 3 || len(a.ChunkObjects) != 3 || b.Chunks != 3 || len(b.ChunkObjects) != 3 {
		t.Fatalf("stored %+v and %+v", a, b)
	}
	if a.ChunkObjects[0] != b.ChunkObjects[0] || a.ChunkObjects[1] != b.ChunkObjects[1] || a.ChunkObjects[2] == b.ChunkObjects[2] {
		t.Fatalf("chunk objects %v and %v: the shared chunks' should be one", a.ChunkObjects, b.ChunkObjects)
	}
	if st := listObjects(t, "--blob", a.BlobID); len(st.Objects) != 1 || st.Objects[0].Attributes["content-type"] != "application/x-v1" {
		t.Fatalf("the file's object: %+v", st)
	}

	stdout, _, err := runWeftSplit(t, nil, "delete", strconv.FormatUint(a.Object, 10), "-o", "json")
	var dels []deleteReport
	if err != nil || json.Unmarshal([]byte(stdout), &dels) != nil || len(dels) != 1 {
		t.Fatalf("delete of the first file: %v\n%s", err, stdout)
	}
	d := dels[0]
	if !d.File || d.BlobEndsEpoch != 2 || len(d.Chunks) != 1 || d.Chunks[0].Object != a.ChunkObjects[2] || d.Chunks[0].BlobEndsEpoch != 2 ||
		len(d.Kept) != 2 || !strings.Contains(d.Kept[0].Reason, "file "+b.BlobID+" lists it too") || d.TotalRefund != d.Refund+d.Chunks[0].Refund || d.Refund == 0 {
		t.Fatalf("delete of the first file: %+v", d)
	}
	advanceEpoch(t, net)
	if _, _, err := runWeftSplit(t, nil, "read", a.BlobID); !errors.Is(err, client.ErrDeleted) {
		t.Fatalf("read of the deleted file: %v", err)
	}
	out := filepath.Join(dir, "v2.out")
	if _, _, err := runWeftSplit(t, nil, "read", b.BlobID, "--out", out); err != nil {
		t.Fatalf("read of the file sharing its chunks: %v", err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("the second file read back: %d bytes, %v", len(got), err)
	}

	// Now the second file: its manifest and all three chunk objects go.
	stdout, _, err = runWeftSplit(t, nil, "delete", strconv.FormatUint(b.Object, 10))
	if err != nil || !strings.HasPrefix(stdout, "deleted object "+strconv.FormatUint(b.Object, 10)+" (file "+b.BlobID+") and 3 chunk objects: refunded ") ||
		!strings.Contains(stdout, "3 of its 3 deleted chunk objects were their chunks' last") || strings.Contains(stdout, "kept") {
		t.Fatalf("delete of the second file: %v\n%s", err, stdout)
	}
	if rep := listObjects(t); len(rep.Objects) != 0 {
		t.Fatalf("objects left: %+v", rep.Objects)
	}
}
