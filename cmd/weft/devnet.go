package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/api/wire"
	"github.com/weftstore/weft/crypto"
	"github.com/weftstore/weft/devnet"
	"github.com/weftstore/weft/internal/atomicfile"
)

// devnetProcess is one child of `weft devnet`, as the ready file lists it.
type devnetProcess struct {
	Role    string   `json:"role"` // control, node or gateway
	ID      string   `json:"id"`
	Address string   `json:"address"`
	PID     int      `json:"pid"`
	Args    []string `json:"args"` // the weft command line, to restart it
	Log     string   `json:"log"`
	// Metrics is its Prometheus endpoint (with --metrics).
	Metrics string `json:"metrics,omitempty"`
}

// devnetReady is the ready file: everything a test or a newcomer needs to
// use the network.
type devnetReady struct {
	Control       []string `json:"control"`
	Gateway       string   `json:"gateway"`
	OperatorToken string   `json:"operator_token"`
	ClientToken   string   `json:"client_token"`
	DataDir       string   `json:"data_dir"`
	// TLS (with --tls): the devnet CA every process trusts, and the
	// certificate and key the storage nodes and the gateway serve and
	// present. Each voter has its own, naming it (wire.VoterURI: only
	// voters may speak Raft), on its command line (Args).
	TLSCA     string          `json:"tls_ca,omitempty"`
	TLSCert   string          `json:"tls_cert,omitempty"`
	TLSKey    string          `json:"tls_key,omitempty"`
	Processes []devnetProcess `json:"processes"`
}

// tlsEnv is what a devnet process needs in its environment to speak TLS
// (nothing without --tls).
func (r devnetReady) tlsEnv() []string {
	if r.TLSCA == "" {
		return nil
	}
	return []string{"WEFT_TLS_CA=" + r.TLSCA, "WEFT_TLS_CERT=" + r.TLSCert, "WEFT_TLS_KEY=" + r.TLSKey}
}

type devnetOptions struct {
	nodes, shards int
	dataDir       string
	readyFile     string
	tls           bool
	// For measuring (`make scale`) and watching: a metrics endpoint per
	// voter, node and the gateway, unequal stakes as a real network has,
	// and a start-up bound that a hundred nodes on a small machine need.
	metrics         bool
	pprof           bool
	unequalStakes   bool
	startTimeout    time.Duration
	challengeWindow time.Duration
	epochDuration   time.Duration
	// For slow- and flapping-node tests: node ID listens on nodeListen[ID]
	// and registers nodePublic[ID] (a proxy to it) as the address clients
	// and peers dial.
	nodeListen, nodePublic map[string]string
}

func newDevnetCommand() *cobra.Command {
	var o devnetOptions
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a whole network on loopback: 3 control-plane voters, N storage nodes and a gateway",
		Long: "Starts each role as a child process of this binary, stakes the nodes, advances to a Stable\n" +
			"epoch, prints the endpoints and credentials, and writes --ready-file (JSON, with every\n" +
			"process's role, ID, address and PID). Data lives in --data-dir (default: a temporary\n" +
			"directory, removed on exit). Ctrl-C or SIGTERM stops everything; a child killed on purpose\n" +
			"stays down until `weft devnet restart ID --ready-file FILE`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDevnet(ctx, cmd, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 7, "storage nodes")
	f.IntVar(&o.shards, "shards", 100, "shards n")
	f.StringVar(&o.dataDir, "data-dir", "", "data directory (default: temporary, removed on exit)")
	f.StringVar(&o.readyFile, "ready-file", "", "write the network's description here (JSON) once it is Stable")
	f.BoolVar(&o.tls, "tls", false, "every connection over TLS: makes a throwaway CA and certificate in the data directory")
	f.BoolVar(&o.metrics, "metrics", false, "give every voter, node and the gateway a Prometheus endpoint (listed in --ready-file as \"metrics\")")
	f.BoolVar(&o.pprof, "pprof", false, "with --metrics, also serve each process's Go profiler at /debug/pprof/ on its metrics address")
	f.BoolVar(&o.unequalStakes, "unequal-stakes", false, "stake node-i with 100 + 10·(i mod 10) instead of 100 each")
	f.DurationVar(&o.startTimeout, "start-timeout", 2*time.Minute, "how long the network may take to become Stable")
	f.DurationVar(&o.challengeWindow, "challenge-window", 10*time.Second, "how long a storage-challenge round stays open (a hundred nodes on a few cores need minutes)")
	f.DurationVar(&o.epochDuration, "epoch-duration", 0, "the voters advance the epoch this often once it is Stable (0: only `weft admin epoch advance`)")
	f.StringToStringVar(&o.nodeListen, "node-listen", nil, "ID=ADDR: storage node ID listens on ADDR (default: a free loopback port)")
	f.StringToStringVar(&o.nodePublic, "node-public-addr", nil, "ID=ADDR: storage node ID registers ADDR as the address clients and peers dial, e.g. a proxy to its --node-listen address (default: where it listens)")
	cmd.AddCommand(newDevnetRestartCommand(), newDevnetAddNodeCommand(), newDevnetDemoCommand())
	return cmd
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// devnet is the parent's view of its children.
type devnetRun struct {
	exe, dir string
	ready    devnetReady
	cmds     map[string]*exec.Cmd
	ca       *wire.DevCA // with --tls: issues the voters' certificates
	// --metrics, --pprof and --unequal-stakes.
	metrics, pprof, unequalStakes  bool
	challengeWindow, epochDuration time.Duration
	nodeListen, nodePublic         map[string]string // --node-listen, --node-public-addr
}

// metricsFlags gives a child a metrics endpoint with --metrics: the flags
// for its command line and the address for the ready file.
func (d *devnetRun) metricsFlags() ([]string, string, error) {
	if !d.metrics {
		return nil, "", nil
	}
	addr, err := devnet.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	if d.pprof {
		return []string{"--metrics-addr", addr, "--pprof"}, addr, nil
	}
	return []string{"--metrics-addr", addr}, addr, nil
}

// stakeOf is node i's stake: equal by default; with --unequal-stakes ten
// levels from 100 to 190, so stake moves are not all multiples of a node.
func (d *devnetRun) stakeOf(i int) uint64 {
	if d.unequalStakes {
		return 100 + 10*uint64(i%10)
	}
	return 100
}

// start runs one child, its output in a log file beside its data.
func (d *devnetRun) start(p devnetProcess, env ...string) (devnetProcess, error) {
	log, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return p, err
	}
	defer log.Close()
	cmd := exec.Command(d.exe, p.Args...)
	cmd.Env = append(append(os.Environ(), d.ready.tlsEnv()...), env...)
	cmd.Stdout, cmd.Stderr = log, log
	// Children die with the parent, however it dies.
	cmd.SysProcAttr = diesWithParent()
	if err := cmd.Start(); err != nil {
		return p, err
	}
	go cmd.Wait() // reap it whenever it ends; a killed child stays down
	p.PID = cmd.Process.Pid
	d.cmds[p.ID] = cmd
	d.ready.Processes = append(d.ready.Processes, p)
	return p, nil
}

func runDevnet(ctx context.Context, cmd *cobra.Command, o devnetOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &devnetRun{exe: exe, dir: o.dataDir, cmds: map[string]*exec.Cmd{}, metrics: o.metrics, pprof: o.pprof, unequalStakes: o.unequalStakes, challengeWindow: o.challengeWindow, epochDuration: o.epochDuration,
		nodeListen: o.nodeListen, nodePublic: o.nodePublic}
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "weft-devnet-"); err != nil {
			return err
		}
		defer os.RemoveAll(d.dir)
	} else if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	d.ready.DataDir, d.ready.OperatorToken = d.dir, randomToken()
	if o.tls {
		if err := d.makeCertificates(ctx); err != nil {
			return err
		}
	}
	defer d.stopAll(o.readyFile)
	startCtx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	if err := d.startControl(startCtx, o.shards); err != nil {
		return err
	}
	if err := d.startNodes(startCtx, o.nodes); err != nil {
		return err
	}
	if err := d.startGateway(startCtx); err != nil {
		return err
	}
	if o.readyFile != "" {
		if err := writeReady(o.readyFile, d.ready); err != nil {
			return err
		}
	}
	d.print(cmd)
	<-ctx.Done()
	return nil
}

// devHosts are the names the devnet's certificates are good for.
var devHosts = []string{"127.0.0.1", "localhost"}

// makeCertificates writes the devnet's CA and the certificate of every
// process but the voters, and makes this process (which dials the voters
// and nodes) and its children use them.
func (d *devnetRun) makeCertificates(ctx context.Context) error {
	dir := filepath.Join(d.dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var err error
	if d.ca, err = wire.NewDevCA(dir); err != nil {
		return err
	}
	files, err := d.ca.Issue("shared", "", devHosts...)
	if err != nil {
		return err
	}
	*tlsOf(ctx) = files
	d.ready.TLSCA, d.ready.TLSCert, d.ready.TLSKey = files.CA, files.Cert, files.Key
	return nil
}

// startControl starts three voters that bootstrap together, then creates
// the client credential.
func (d *devnetRun) startControl(ctx context.Context, shards int) error {
	var grpcs, rafts []string
	for range 3 {
		g, err := devnet.FreeAddr()
		if err != nil {
			return err
		}
		r, err := devnet.FreeAddr()
		if err != nil {
			return err
		}
		grpcs, rafts = append(grpcs, g), append(rafts, r)
	}
	d.ready.Control = grpcs
	for i := range 3 {
		id := fmt.Sprintf("control-%d", i+1)
		certFlags, err := d.voterCertificate(id)
		if err != nil {
			return err
		}
		metricsFlags, metricsAddr, err := d.metricsFlags()
		if err != nil {
			return err
		}
		certFlags = append(certFlags, metricsFlags...)
		_, err = d.start(devnetProcess{Role: "control", ID: id, Address: grpcs[i], Log: filepath.Join(d.dir, id+".log"), Metrics: metricsAddr,
			Args: append([]string{"control", "--id", id, "--data-dir", filepath.Join(d.dir, id), "--raft-addr", rafts[i],
				"--grpc-addr", grpcs[i], "--bootstrap-expect", "3", "--join", strings.Join(grpcs, ","), "--shards", fmt.Sprint(shards),
				// A storage-challenge round per epoch, as in production, but
				// one a killed node keeps open (its sampled blobs unreadable)
				// for seconds, not minutes (by default).
				"--challenge-window", d.challengeWindow.String(), "--epoch-duration", d.epochDuration.String()}, certFlags...)},
			"WEFT_TOKEN="+d.ready.OperatorToken)
		if err != nil {
			return err
		}
	}
	return d.retry(ctx, "adding the client credential", func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := weftv1.NewAdminClient(conn).AddClient(ctx, &weftv1.AddClientRequest{Client: "devnet", Quota: 1 << 62})
		if err == nil {
			d.ready.ClientToken = resp.Token
		}
		return err
	})
}

// voterCertificate issues voter id's certificate (with --tls) and
// returns the flags that make it serve and present it instead of the
// shared one: in Args, so `devnet restart` starts it with them again.
func (d *devnetRun) voterCertificate(id string) ([]string, error) {
	if d.ca == nil {
		return nil, nil
	}
	files, err := d.ca.Issue(id, id, devHosts...)
	if err != nil {
		return nil, err
	}
	return []string{"--tls-cert", files.Cert, "--tls-key", files.Key}, nil
}

// retry calls the control plane (any voter, with the operator token)
// until f succeeds or ctx ends.
func (d *devnetRun) retry(ctx context.Context, what string, f func(ctx context.Context, conn *grpc.ClientConn) error) error {
	conn, err := dialControl(ctx, d.ready.Control)
	if err != nil {
		return err
	}
	defer conn.Close()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.ready.OperatorToken)
	for {
		err := f(actx, conn)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devnet: %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startNodes starts the storage nodes, stakes them, advances the epoch and
// waits until it is Stable and every node serves it.
func (d *devnetRun) startNodes(ctx context.Context, count int) error {
	var ids []string
	for i := range count {
		id := fmt.Sprintf("node-%d", i)
		key := filepath.Join(d.dir, id+".key")
		if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
			sk, err := crypto.GenerateKey(nil)
			if err != nil {
				return err
			}
			if err := crypto.WriteKeyFile(key, sk); err != nil {
				return err
			}
		}
		addr := d.nodeListen[id]
		if addr == "" {
			var err error
			if addr, err = devnet.FreeAddr(); err != nil {
				return err
			}
		}
		metricsFlags, metricsAddr, err := d.metricsFlags()
		if err != nil {
			return err
		}
		p := devnetNodeProcess(d.dir, id, key, addr, d.ready.Control)
		p.Metrics, p.Args = metricsAddr, append(p.Args, metricsFlags...)
		if public := d.nodePublic[id]; public != "" {
			// Clients, peers and the ready file reach it there only.
			p.Address, p.Args = public, append(p.Args, "--public-addr", public)
		}
		if _, err := d.start(p); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		err := d.retry(ctx, "staking "+id, func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := weftv1.NewAdminClient(conn).SetStake(ctx, &weftv1.SetStakeRequest{Node: id, Stake: d.stakeOf(i)})
			return err
		})
		if err != nil {
			return err
		}
	}
	err := d.retry(ctx, "advancing the epoch", func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := weftv1.NewAdminClient(conn).AdvanceEpoch(ctx, &weftv1.AdvanceEpochRequest{})
		return err
	})
	if err != nil {
		return err
	}
	return d.retry(ctx, "waiting for a Stable epoch served by every node", func(ctx context.Context, conn *grpc.ClientConn) error {
		st, err := weftv1.NewWatchClient(conn).WatchState(ctx, &weftv1.WatchStateRequest{})
		if err != nil {
			return err
		}
		if st.Epoch == 0 || st.Phase != "stable" {
			return fmt.Errorf("epoch %d is %s", st.Epoch, st.Phase)
		}
		for _, p := range d.ready.Processes {
			if p.Role != "node" {
				continue
			}
			ns, err := nodeStatus(ctx, p.Address)
			if err != nil {
				return fmt.Errorf("%s: %w", p.ID, err)
			}
			if ns.Epoch != st.Epoch {
				return fmt.Errorf("%s is in epoch %d", p.ID, ns.Epoch)
			}
		}
		return nil
	})
}

func (d *devnetRun) startGateway(ctx context.Context) error {
	addr, err := devnet.FreeAddr()
	if err != nil {
		return err
	}
	httpc := http.DefaultClient
	d.ready.Gateway = "http://" + addr
	if files := tlsOf(ctx); files.CA != "" {
		cfg, err := files.ClientConfig()
		if err != nil {
			return err
		}
		httpc = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		d.ready.Gateway = "https://" + addr
	}
	metricsFlags, metricsAddr, err := d.metricsFlags()
	if err != nil {
		return err
	}
	if _, err := d.start(devnetProcess{Role: "gateway", ID: "gateway", Address: addr, Log: filepath.Join(d.dir, "gateway.log"), Metrics: metricsAddr,
		Args: append([]string{"gateway", "--listen", addr, "--control", strings.Join(d.ready.Control, ",")}, metricsFlags...)}); err != nil {
		return err
	}
	for {
		resp, err := httpc.Get(d.ready.Gateway + "/v1/blobs/not-an-id/status")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devnet: the gateway did not come up: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *devnetRun) print(cmd *cobra.Command) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "weft devnet is up (data in %s)\n\n", d.dir)
	for _, p := range d.ready.Processes {
		fmt.Fprintf(out, "  %-8s %-10s %-22s pid %d\n", p.Role, p.ID, p.Address, p.PID)
	}
	fmt.Fprintf(out, "\nexport WEFT_CONTROL=%s\n", strings.Join(d.ready.Control, ","))
	if d.ready.TLSCA != "" {
		fmt.Fprintf(out, "export WEFT_TLS_CA=%s   # every endpoint speaks TLS\n", d.ready.TLSCA)
	}
	fmt.Fprintf(out, "client token (weft store --token …):   %s\n", d.ready.ClientToken)
	fmt.Fprintf(out, "operator token (weft admin --token …): %s\n", d.ready.OperatorToken)
	fmt.Fprintf(out, "gateway: %s/v1/blobs (PUT with Authorization: Bearer CLIENT_TOKEN)\n", d.ready.Gateway)
}

// stopAll stops every process the ready file lists (children and those
// `devnet restart` started), politely first.
func (d *devnetRun) stopAll(readyFile string) {
	procs := d.ready.Processes
	if readyFile != "" {
		if r, err := readReady(readyFile); err == nil {
			procs = r.Processes
		}
	}
	for _, p := range procs {
		if proc, err := os.FindProcess(p.PID); err == nil {
			_ = proc.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for time.Now().Before(deadline) && running(p.PID) && !reaped(d.cmds[p.ID]) {
			time.Sleep(50 * time.Millisecond)
		}
		_ = killPID(p.PID)
	}
}

// running reports whether a process exists and has not exited. A process
// `devnet restart` started is nobody's child once that command returns:
// when it dies it stays a zombie until init reaps it, which some
// containers' init does late or never, and a zombie still answers
// kill(pid, 0). So a zombie counts as gone, or a restart right after a
// kill would be refused as "running".
func running(pid int) bool {
	if !exists(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(pid, 0)
	}
	// pid (comm) state …: comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		switch b[i+2] {
		case 'Z', 'X':
			return false
		}
	}
	return true
}

// reaped reports whether a child of this process has exited.
func reaped(c *exec.Cmd) bool { return c != nil && c.ProcessState != nil }

func writeReady(path string, r devnetReady) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

func readReady(path string) (devnetReady, error) {
	var r devnetReady
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func newDevnetRestartCommand() *cobra.Command {
	var readyFile string
	cmd := &cobra.Command{
		Use:   "restart ID",
		Short: "Start a devnet process again (after it was killed), with its original command line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if readyFile == "" {
				return errors.New("--ready-file is required")
			}
			r, err := readReady(readyFile)
			if err != nil {
				return err
			}
			for i, p := range r.Processes {
				if p.ID != args[0] {
					continue
				}
				if running(p.PID) {
					return fmt.Errorf("%s is running (pid %d)", p.ID, p.PID)
				}
				pid, err := startDetached(r, p)
				if err != nil {
					return err
				}
				r.Processes[i].PID = pid
				if err := writeReady(readyFile, r); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s restarted (pid %d)\n", p.ID, pid)
				return nil
			}
			return fmt.Errorf("no process %q in %s", args[0], readyFile)
		},
	}
	cmd.Flags().StringVar(&readyFile, "ready-file", "", "the ready file `weft devnet` wrote")
	return cmd
}

// startDetached starts a devnet process of the ready file r with its
// command line, logging to its log: it outlives the command that started
// it, and `weft devnet` stops it with the rest (stopAll reads the ready
// file).
func startDetached(r devnetReady, p devnetProcess) (pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	log, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	c := exec.Command(exe, p.Args...)
	env := append(os.Environ(), r.tlsEnv()...)
	if p.Role == "control" {
		env = append(env, "WEFT_TOKEN="+r.OperatorToken)
	}
	c.Env, c.Stdout, c.Stderr = env, log, log
	c.SysProcAttr = detached()
	if err := c.Start(); err != nil {
		return 0, err
	}
	pid = c.Process.Pid
	return pid, c.Process.Release()
}

func newDevnetAddNodeCommand() *cobra.Command {
	var readyFile string
	var stake uint64
	cmd := &cobra.Command{
		Use:   "add-node",
		Short: "Start one more storage node in a running devnet and stake it (it gets shards at the next epoch)",
		Long: "Starts node-K (K: the next free number) like the devnet's own nodes, adds it to --ready-file\n" +
			"(so `weft devnet restart` and the devnet's shutdown know it) and sets its stake. Its shards\n" +
			"come with the next epoch: `weft admin epoch advance`, or the voters' --epoch-duration.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if readyFile == "" {
				return errors.New("--ready-file is required")
			}
			r, err := readReady(readyFile)
			if err != nil {
				return err
			}
			p, err := newDevnetNode(r)
			if err != nil {
				return err
			}
			if p.PID, err = startDetached(r, p); err != nil {
				return err
			}
			r.Processes = append(r.Processes, p)
			if err := writeReady(readyFile, r); err != nil {
				return err
			}
			if err := stakeDevnetNode(cmd.Context(), r, p.ID, stake); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s started (pid %d) at %s with stake %d\n", p.ID, p.PID, p.Address, stake)
			return nil
		},
	}
	cmd.Flags().StringVar(&readyFile, "ready-file", "", "the ready file `weft devnet` wrote")
	cmd.Flags().Uint64Var(&stake, "stake", 100, "the new node's stake")
	return cmd
}

// newDevnetNode describes the next storage node of the devnet r: its key
// (made now), data directory and addresses, with a metrics endpoint if
// the devnet's nodes have them.
func newDevnetNode(r devnetReady) (devnetProcess, error) {
	next, metrics := 0, false
	for _, p := range r.Processes {
		var k int
		if _, err := fmt.Sscanf(p.ID, "node-%d", &k); err == nil && p.Role == "node" {
			next = max(next, k+1)
			metrics = metrics || p.Metrics != ""
		}
	}
	id := fmt.Sprintf("node-%d", next)
	key := filepath.Join(r.DataDir, id+".key")
	sk, err := crypto.GenerateKey(nil)
	if err != nil {
		return devnetProcess{}, err
	}
	if err := crypto.WriteKeyFile(key, sk); err != nil {
		return devnetProcess{}, err
	}
	addr, err := devnet.FreeAddr()
	if err != nil {
		return devnetProcess{}, err
	}
	p := devnetNodeProcess(r.DataDir, id, key, addr, r.Control)
	if metrics {
		if p.Metrics, err = devnet.FreeAddr(); err != nil {
			return devnetProcess{}, err
		}
		p.Args = append(p.Args, "--metrics-addr", p.Metrics)
	}
	return p, nil
}

// devnetNodeProcess is storage node id of the devnet in dir: its command
// line (data directory dir/id, the key file, the voters, the address) and
// its log, as both the devnet's first nodes and add-node start them.
func devnetNodeProcess(dir, id, key, addr string, control []string) devnetProcess {
	return devnetProcess{Role: "node", ID: id, Address: addr, Log: filepath.Join(dir, id+".log"),
		Args: []string{"node", "--id", id, "--data-dir", filepath.Join(dir, id), "--key-file", key,
			"--control", strings.Join(control, ","), "--listen", addr, "--recovery-delay", "1s"}}
}

// stakeDevnetNode sets a node's stake once it has registered.
func stakeDevnetNode(ctx context.Context, r devnetReady, id string, stake uint64) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if r.TLSCA != "" {
		// The devnet's own CA and certificate, as its processes use.
		ctx = context.WithValue(ctx, tlsKey{}, &wire.TLSFiles{CA: r.TLSCA, Cert: r.TLSCert, Key: r.TLSKey})
	}
	conn, err := dialControl(ctx, r.Control, grpc.WithChainUnaryInterceptor(retryUnavailable))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.OperatorToken)
	for {
		_, err := weftv1.NewAdminClient(conn).SetStake(ctx, &weftv1.SetStakeRequest{Node: id, Stake: stake})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("staking %s: %w", id, err)
		case <-time.After(200 * time.Millisecond): // not registered yet
		}
	}
}
