package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// demo drives a devnet through the public CLI, printing every command it
// runs: what `make demo` shows a newcomer.
type demo struct {
	exe, dir string
	out      io.Writer
	ready    devnetReady
	env      []string
	start    time.Time
	steps    []string
}

func newDevnetDemoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Show the whole story on a devnet: store, read, lose nodes, delete, change epochs, read again, verify",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "weft-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			d := &demo{exe: exe, dir: dir, out: cmd.OutOrStdout(), start: time.Now()}
			return d.run(ctx)
		},
	}
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, "\n== "+format+"\n", args...) }

// weft runs one CLI command, printing it and its output.
func (d *demo) weft(args ...string) (string, error) {
	fmt.Fprintf(d.out, "$ weft %s\n", strings.Join(args, " "))
	cmd := exec.Command(d.exe, args...)
	cmd.Env = append(os.Environ(), d.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stdout.String()); s != "" && len(s) < 2000 {
		fmt.Fprintln(d.out, indent(s))
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("weft %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// weftRefused runs one CLI command that must fail saying want, printing
// it and its error.
func (d *demo) weftRefused(want string, args ...string) error {
	fmt.Fprintf(d.out, "$ weft %s\n", strings.Join(args, " "))
	cmd := exec.Command(d.exe, args...)
	cmd.Env = append(os.Environ(), d.env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		fmt.Fprintln(d.out, indent(s))
	}
	if err == nil || !strings.Contains(stderr.String(), want) {
		return fmt.Errorf("demo: weft %s: %v, want a refusal saying %q\n%s", strings.Join(args, " "), err, want, stderr.String())
	}
	return nil
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// run tells the story in acts, each a method below; a failed command ends
// it, and the devnet it started is stopped whatever happens.
func (d *demo) run(ctx context.Context) error {
	readyFile := filepath.Join(d.dir, "ready.json")
	stop, err := d.startDevnet(ctx, readyFile)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return err
	}
	id, blob, err := d.storeAndCheck()
	if err != nil {
		return err
	}
	if err := d.readWithNodesDown(id, blob, readyFile); err != nil {
		return err
	}
	note, err := d.storeAndDelete()
	if err != nil {
		return err
	}
	leaving, report, err := d.handOver()
	if err != nil {
		return err
	}
	if err := d.readDeleted(note); err != nil {
		return err
	}
	if err := d.readAfterLeaversGone(id, blob, readyFile, leaving); err != nil {
		return err
	}
	d.summary(id, report)
	return nil
}

// startDevnet starts `weft devnet` as a child and waits for its ready file,
// which the later acts need (addresses, tokens, PIDs). stop ends the
// devnet; it is nil only when the devnet did not start at all.
func (d *demo) startDevnet(ctx context.Context, readyFile string) (stop func(), err error) {
	d.say("starting a devnet: 3 control-plane voters, 7 storage nodes (n = 21 shards), a gateway")
	net := exec.Command(d.exe, "devnet", "--nodes", "7", "--shards", "21", "--data-dir", filepath.Join(d.dir, "net"), "--ready-file", readyFile)
	net.Stdout, net.Stderr = io.Discard, io.Discard
	net.SysProcAttr = diesWithParent()
	if err := net.Start(); err != nil {
		return nil, err
	}
	stop = func() { _ = net.Process.Signal(syscall.SIGTERM); _ = net.Wait() }
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if r, err := readReady(readyFile); err == nil {
			d.ready = r
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return stop, errors.New("demo: the devnet did not become ready")
		}
	}
	d.env = []string{"WEFT_CONTROL=" + strings.Join(d.ready.Control, ","), "WEFT_TOKEN=" + d.ready.ClientToken}
	fmt.Fprintf(d.out, "  ready in %v; WEFT_CONTROL=%s\n", time.Since(d.start).Round(time.Millisecond), strings.Join(d.ready.Control, ","))
	return stop, nil
}

// storeAndCheck is the happy path a client sees: store a random 5 MiB
// file, read it back, verify its certificate, extend its life. It returns
// the blob's ID and bytes, which every later read is checked against.
func (d *demo) storeAndCheck() (id string, blob []byte, err error) {
	file := filepath.Join(d.dir, "photo.bin")
	blob = make([]byte, 5<<20)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(file, blob, 0o600); err != nil {
		return "", nil, err
	}
	cert := file + ".cert"
	d.say("store a 5 MiB file: encode, send each node its slivers, collect signatures, certify")
	t := time.Now()
	out, err := d.weft("store", file, "--cert-out", cert)
	if err != nil {
		return "", nil, err
	}
	id = strings.TrimSpace(out)
	d.steps = append(d.steps, fmt.Sprintf("store 5 MiB: %v", time.Since(t).Round(time.Millisecond)))
	if err := d.readBack(id, blob, "read it back (bytes only after they re-encode to the blob ID)"); err != nil {
		return "", nil, err
	}
	d.say("verify the availability certificate against the committee")
	if _, err := d.weft("verify", cert, "--blob", id); err != nil {
		return "", nil, err
	}
	d.say("keep it 10 epochs longer, without sending it again (charged to the client's quota)")
	if _, err := d.weft("extend", "--epochs", "10", "--", id); err != nil {
		return "", nil, err
	}
	if _, err := d.weft("quota"); err != nil {
		return "", nil, err
	}
	return id, blob, nil
}

// readWithNodesDown shows that f shards' worth of crashed nodes cost a
// reader nothing. The killed nodes are restarted after, so the handover
// act starts from a whole network again.
func (d *demo) readWithNodesDown(id string, blob []byte, readyFile string) error {
	d.say("kill f = 6 shards' worth of storage nodes (2 of 7) with SIGKILL, and read again")
	killed := d.nodes()[:2]
	for _, p := range killed {
		fmt.Fprintf(d.out, "$ kill -9 %d   # %s\n", p.PID, p.ID)
		_ = killPID(p.PID)
	}
	if err := d.readBack(id, blob, "read with 2 nodes down"); err != nil {
		return err
	}
	for _, p := range killed {
		if _, err := d.weft("devnet", "restart", p.ID, "--ready-file", readyFile); err != nil {
			return err
		}
	}
	return nil
}

// storeAndDelete stores a small note (deletable, as every store is unless
// --permanent), lists the client's objects, and deletes the note's: the
// epochs after this one are refunded, and the nodes drop it when the
// next epoch (the handover act's) starts. It returns the note's blob ID.
func (d *demo) storeAndDelete() (string, error) {
	file := filepath.Join(d.dir, "note.txt")
	if err := os.WriteFile(file, []byte("a short-lived note: stored, then deleted\n"), 0o600); err != nil {
		return "", err
	}
	d.say("store a small note (deletable by default), list the client's blob objects, delete the note's")
	out, err := d.weft("store", file, "--attr", "purpose=demo")
	if err != nil {
		return "", err
	}
	note := strings.TrimSpace(out)
	if out, err = d.weft("objects"); err != nil {
		return "", err
	}
	object := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == note {
			object = f[0]
		}
	}
	if object == "" {
		return "", fmt.Errorf("demo: weft objects does not list the note %s", note)
	}
	t := time.Now()
	if _, err := d.weft("delete", object); err != nil {
		return "", err
	}
	d.steps = append(d.steps, fmt.Sprintf("delete the note's object: %v", time.Since(t).Round(time.Millisecond)))
	return note, nil
}

// readDeleted shows that once the epoch has moved on, the deleted note is
// gone: a read answers that it was deleted, and its status says so.
func (d *demo) readDeleted(note string) error {
	d.say("the epoch moved on: the note's last object was deleted, so the nodes dropped it")
	if err := d.weftRefused("blob deleted", "read", "--", note); err != nil {
		return err
	}
	_, err := d.weft("status", "--", note)
	return err
}

// handOver takes the last two nodes' stake away and advances the epoch,
// then waits for the handover to finish. It returns the nodes that left
// (still running until readAfterLeaversGone kills them) and the epoch's
// report, whose byte counts the summary prints.
func (d *demo) handOver() ([]devnetProcess, epochReport, error) {
	d.say("two nodes leave the committee: their shards move to the others (handover)")
	op := []string{"--token", d.ready.OperatorToken}
	leaving := d.nodes()[5:]
	for _, p := range leaving {
		if _, err := d.weft(append([]string{"admin", "node", "stake", p.ID, "0"}, op...)...); err != nil {
			return nil, epochReport{}, err
		}
	}
	t := time.Now()
	out, err := d.weft(append([]string{"admin", "epoch", "advance", "-o", "json"}, op...)...)
	if err != nil {
		return nil, epochReport{}, err
	}
	var advanced struct {
		Epoch json.Number `json:"epoch"`
	}
	if err := json.Unmarshal([]byte(out), &advanced); err != nil {
		return nil, epochReport{}, fmt.Errorf("demo: epoch advance said %q: %w", out, err)
	}
	epoch, _ := advanced.Epoch.Int64()
	report, err := d.awaitStable(op, uint64(epoch))
	if err != nil {
		return nil, epochReport{}, err
	}
	d.steps = append(d.steps, fmt.Sprintf("handover of the leaving nodes' shards: %v", time.Since(t).Round(time.Millisecond)))
	if _, err := d.weft(append([]string{"admin", "epoch", "status"}, op...)...); err != nil {
		return nil, epochReport{}, err
	}
	return leaving, report, nil
}

// readAfterLeaversGone kills the nodes that left, so the read that follows
// can only succeed from the shards' new owners. Their PIDs come from the
// ready file as it is now: `devnet restart` rewrites it.
func (d *demo) readAfterLeaversGone(id string, blob []byte, readyFile string, leaving []devnetProcess) error {
	d.say("the nodes that left are gone for good (SIGKILL); read once more")
	if r, err := readReady(readyFile); err == nil {
		d.ready = r
	}
	for _, p := range leaving {
		for _, q := range d.ready.Processes {
			if q.ID == p.ID {
				fmt.Fprintf(d.out, "$ kill -9 %d   # %s\n", q.PID, q.ID)
				_ = killPID(q.PID)
			}
		}
	}
	return d.readBack(id, blob, "read after the original holders of the moved shards left")
}

func (d *demo) summary(id string, report epochReport) {
	var copied, rebuilt uint64
	for _, n := range report.Nodes {
		copied, rebuilt = copied+n.Copied, rebuilt+n.Rebuilt
	}
	d.say("summary")
	fmt.Fprintf(d.out, "  blob %s (5 MiB) stored, read 3 times, certificate valid; a note stored and deleted\n", id)
	fmt.Fprintf(d.out, "  handover: %d bytes copied from the holders, %d bytes fetched to rebuild\n", copied, rebuilt)
	for _, s := range d.steps {
		fmt.Fprintln(d.out, "  "+s)
	}
	fmt.Fprintf(d.out, "  total %v\n", time.Since(d.start).Round(time.Millisecond))
}

func (d *demo) nodes() []devnetProcess {
	var out []devnetProcess
	for _, p := range d.ready.Processes {
		if p.Role == "node" {
			out = append(out, p)
		}
	}
	return out
}

func (d *demo) readBack(id string, want []byte, what string) error {
	d.say("%s", what)
	copyFile := filepath.Join(d.dir, "copy.bin")
	t := time.Now()
	if _, err := d.weft("read", "--out", copyFile, "--", id); err != nil { // "--": an ID may start with '-'
		return err
	}
	got, err := os.ReadFile(copyFile)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("demo: read %d bytes that differ from the %d stored", len(got), len(want))
	}
	d.steps = append(d.steps, fmt.Sprintf("%s: %v, identical", what, time.Since(t).Round(time.Millisecond)))
	fmt.Fprintln(d.out, "  identical to the file stored")
	return nil
}

// awaitStable polls `weft admin epoch status` until the epoch is Stable.
func (d *demo) awaitStable(op []string, epoch uint64) (epochReport, error) {
	var r epochReport
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		cmd := exec.Command(d.exe, append([]string{"admin", "epoch", "status", "-o", "json"}, op...)...)
		cmd.Env = append(os.Environ(), d.env...)
		out, err := cmd.Output()
		if err == nil && json.Unmarshal(out, &r) == nil && r.Epoch >= epoch && r.Phase == "stable" {
			return r, nil
		}
	}
	return r, errors.New("demo: the handover did not finish")
}
