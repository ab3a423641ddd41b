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
		Short: "Show the whole story on a devnet: store, read, lose nodes, change epochs, read again, verify",
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

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func (d *demo) run(ctx context.Context) error {
	d.say("starting a devnet: 3 control-plane voters, 7 storage nodes (n = 21 shards), a gateway")
	readyFile := filepath.Join(d.dir, "ready.json")
	net := exec.Command(d.exe, "devnet", "--nodes", "7", "--shards", "21", "--data-dir", filepath.Join(d.dir, "net"), "--ready-file", readyFile)
	net.Stdout, net.Stderr = io.Discard, io.Discard
	net.SysProcAttr = diesWithParent()
	if err := net.Start(); err != nil {
		return err
	}
	defer func() { _ = net.Process.Signal(syscall.SIGTERM); _ = net.Wait() }()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if r, err := readReady(readyFile); err == nil {
			d.ready = r
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("demo: the devnet did not become ready")
		}
	}
	d.env = []string{"WEFT_CONTROL=" + strings.Join(d.ready.Control, ","), "WEFT_TOKEN=" + d.ready.ClientToken}
	fmt.Fprintf(d.out, "  ready in %v; WEFT_CONTROL=%s\n", time.Since(d.start).Round(time.Millisecond), strings.Join(d.ready.Control, ","))

	file := filepath.Join(d.dir, "photo.bin")
	blob := make([]byte, 5<<20)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(file, blob, 0o600); err != nil {
		return err
	}
	cert := file + ".cert"
	d.say("store a 5 MiB file: encode, send each node its slivers, collect signatures, certify")
	t := time.Now()
	out, err := d.weft("store", file, "--cert-out", cert)
	if err != nil {
		return err
	}
	id := strings.TrimSpace(out)
	d.steps = append(d.steps, fmt.Sprintf("store 5 MiB: %v", time.Since(t).Round(time.Millisecond)))
	if err := d.readBack(id, blob, "read it back (bytes only after they re-encode to the blob ID)"); err != nil {
		return err
	}
	d.say("verify the availability certificate against the committee")
	if _, err := d.weft("verify", cert, "--blob", id); err != nil {
		return err
	}
	d.say("keep it 10 epochs longer, without sending it again (charged to the client's quota)")
	if _, err := d.weft("extend", "--epochs", "10", "--", id); err != nil {
		return err
	}
	if _, err := d.weft("quota"); err != nil {
		return err
	}

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

	d.say("two nodes leave the committee: their shards move to the others (handover)")
	op := []string{"--token", d.ready.OperatorToken}
	leaving := d.nodes()[5:]
	for _, p := range leaving {
		if _, err := d.weft(append([]string{"admin", "node", "stake", p.ID, "0"}, op...)...); err != nil {
			return err
		}
	}
	t = time.Now()
	out, err = d.weft(append([]string{"admin", "epoch", "advance", "-o", "json"}, op...)...)
	if err != nil {
		return err
	}
	var advanced struct {
		Epoch json.Number `json:"epoch"`
	}
	if err := json.Unmarshal([]byte(out), &advanced); err != nil {
		return fmt.Errorf("demo: epoch advance said %q: %w", out, err)
	}
	epoch, _ := advanced.Epoch.Int64()
	report, err := d.awaitStable(op, uint64(epoch))
	if err != nil {
		return err
	}
	d.steps = append(d.steps, fmt.Sprintf("handover of the leaving nodes' shards: %v", time.Since(t).Round(time.Millisecond)))
	if _, err := d.weft(append([]string{"admin", "epoch", "status"}, op...)...); err != nil {
		return err
	}
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
	if err := d.readBack(id, blob, "read after the original holders of the moved shards left"); err != nil {
		return err
	}

	var copied, rebuilt uint64
	for _, n := range report.Nodes {
		copied, rebuilt = copied+n.Copied, rebuilt+n.Rebuilt
	}
	d.say("summary")
	fmt.Fprintf(d.out, "  blob %s (5 MiB) stored, read 3 times, certificate valid\n", id)
	fmt.Fprintf(d.out, "  handover: %d bytes copied from the holders, %d bytes fetched to rebuild\n", copied, rebuilt)
	for _, s := range d.steps {
		fmt.Fprintln(d.out, "  "+s)
	}
	fmt.Fprintf(d.out, "  total %v\n", time.Since(d.start).Round(time.Millisecond))
	return nil
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
