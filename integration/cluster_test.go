//go:build cluster

// The network of docker-compose.yml (3 control-plane voters, 7 storage
// nodes, the HTTP gateway), each in its own container, partitioned for real
// with `docker network disconnect` and healed with `docker network connect`.
// `make cluster-test` builds the binary and the image and runs this; it needs
// Docker and docker-compose (v1) and fails, never skips, without them.
//
// The harness initializes the network as an operator would: it generates
// the nodes' keys into a directory the containers mount, starts the voters
// and the nodes (which register themselves), stakes the nodes, advances to
// epoch 1, issues a client token with `weft admin client add` (its PUTs
// through the gateway send it) and starts the gateway. Operator commands run in a voter's container
// (`docker exec … /weft admin …`); blobs go through the gateway's published
// port; a node's storage API is reached through its published port to ask
// for its confirmation of a blob (it signs only over slivers on its disk).
//
// Environment: WEFT_IMAGE (weft:dev), WEFT_CLUSTER_PROJECT (the compose
// project; default a fresh name), WEFT_NET (first three octets of the /24 to
// use; default a free one in 172.28.0.0/16), WEFT_CLUSTER_KEEP=1 leaves the
// containers running after the test. The voters run with 30 s storage-
// challenge rounds (WEFT_CHALLENGE_WINDOW), so that a read of a sampled
// blob waits less.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	weftv1 "github.com/weftstore/weft/api/weft/v1"
	"github.com/weftstore/weft/coding"
	"github.com/weftstore/weft/crypto"
)

var (
	clusterVoters = []string{"control-1", "control-2", "control-3"}
	clusterNodes  = []string{"node-0", "node-1", "node-2", "node-3", "node-4", "node-5", "node-6"}
)

// clusterBlob is a blob the gateway certified, with its bytes.
type clusterBlob struct {
	id   string
	data []byte
	what string // the scenario that stored it
}

// cluster is one docker-compose project of docker-compose.yml.
type cluster struct {
	t        *testing.T
	project  string
	network  string // the compose network's name
	prefix   string // its /24, first three octets
	composeF string
	env      []string
	ids      map[string]string // service → container ID
	gateway  string            // host:port of the published gateway
	token    string            // the client token PUTs through the gateway are charged to
	http     *http.Client

	mu     sync.Mutex
	cut    map[string]bool // services disconnected from the network
	paused map[string]bool // services frozen
	blobs  []clusterBlob   // every blob certified so far
}

func TestCluster(t *testing.T) {
	c := startCluster(t)
	c.storeAndRemember("setup", 1<<20)
	c.storeAndRemember("setup", 3<<20+12345)

	// Each scenario heals its partitions however it ends, and the next
	// one runs even if it failed: every blob certified in any of them
	// must read back at the end.
	for _, s := range []struct {
		name string
		run  func()
	}{
		{"LeaderCutOff", c.leaderCutOff},
		{"MinorityCutOffDuringWrite", c.minorityCutOffDuringWrite},
		{"MinorityCutOffDuringHandover", c.minorityCutOffDuringHandover},
		{"EveryBlobReadsBack", c.everyBlobReadsBack},
	} {
		t.Run(s.name, func(st *testing.T) {
			c.t = st
			defer func() { c.healAll(); c.t = t }()
			s.run()
		})
	}
}

// ---- scenarios --------------------------------------------------------

// a. The control-plane leader is cut off: the other two voters elect a
// new leader, stores and an epoch change go on; reconnected, the old
// leader follows the new one and catches up.
func (c *cluster) leaderCutOff() {
	t := c.t
	old := c.leader()
	var rest []string
	for _, v := range clusterVoters {
		if v != old {
			rest = append(rest, v)
		}
	}
	before := c.epochStatus(rest[0])
	t.Logf("leader is %s (epoch %d); cutting it off", old, before.Epoch)
	c.disconnect(old)
	defer c.healAll()

	var newLeader string
	c.waitUntil(90*time.Second, "the other voters to elect a new leader", []string{old, rest[0], rest[1]}, func() (bool, string) {
		var views []string
		leaders := map[string]bool{}
		for _, v := range rest {
			st, err := c.voterStatus(v)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", v, err)
			}
			views = append(views, fmt.Sprintf("%s: %s, leader %q", v, st.RaftState, st.LeaderID))
			leaders[st.LeaderID] = true
		}
		if len(leaders) != 1 {
			return false, strings.Join(views, "; ")
		}
		for l := range leaders {
			newLeader = l
		}
		return newLeader != "" && newLeader != old, strings.Join(views, "; ")
	})
	t.Logf("%s leads now", newLeader)

	var ids []string
	for i := range 2 {
		ids = append(ids, c.storeAndRemember("leader cut off", 2<<20+i*4099))
	}
	out, err := c.admin(rest[0], "epoch", "advance")
	if err != nil {
		c.fatalf(rest, "epoch advance with the leader cut off: %v\n%s", err, out)
	}
	c.awaitStable(rest[0], before.Epoch+1, 2*time.Minute)
	// Every storage node follows, those that followed the control plane
	// through the old leader too.
	c.awaitNodesIn(before.Epoch+1, 2*time.Minute)
	ids = append(ids, c.storeAndRemember("leader cut off, new epoch", 1<<20+77))

	lead, err := c.voterStatus(newLeader)
	if err != nil {
		c.fatalf(rest, "status of %s: %v", newLeader, err)
	}
	c.connect(old)
	c.waitUntil(2*time.Minute, old+" to rejoin as a follower and catch up", []string{old, newLeader}, func() (bool, string) {
		st, err := c.voterStatus(old)
		if err != nil {
			return false, err.Error()
		}
		msg := fmt.Sprintf("%s: %s, leader %q, applied %d (the leader had applied %d), epoch %d %s",
			old, st.RaftState, st.LeaderID, st.AppliedIndex, lead.AppliedIndex, st.Epoch, st.Phase)
		return st.RaftState == "Follower" && st.LeaderID != "" && st.LeaderID != old &&
			st.AppliedIndex >= lead.AppliedIndex && st.Epoch == before.Epoch+1, msg
	})
	// Nodes that followed the old leader may have missed the first
	// writes while they moved to another voter: they recover them.
	c.awaitHeld(clusterNodes, ids, before.Epoch+1, 3*time.Minute)
	// Every voter reports the others with no lag once the log is shared.
	c.waitUntil(time.Minute, "every voter in step", clusterVoters, func() (bool, string) {
		var peers struct {
			Peers []struct {
				ID      string `json:"id"`
				Leader  bool   `json:"leader"`
				Lag     string `json:"lag"`
				Error   string `json:"error"`
				Applied string `json:"appliedIndex"`
			} `json:"peers"`
		}
		out, err := c.admin(old, "peers", "list", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &peers) != nil {
			return false, fmt.Sprintf("peers list on %s: %v %s", old, err, out)
		}
		if len(peers.Peers) != 3 {
			return false, out
		}
		for _, p := range peers.Peers {
			if p.Error != "" || (p.Lag != "0" && p.Lag != "") {
				return false, out
			}
			if p.Leader && p.ID == old {
				return false, out
			}
		}
		return true, out
	})
}

// b. Storage nodes owning at most f shards are cut off while a large blob
// is being written: it is certified without them; so are the blobs stored
// while they are away; healed, they recover their slivers of all of them.
//
// The victims are frozen (docker pause) before the write starts and cut
// off once the gateway has registered the blob, i.e. while it sends the
// slivers, then thawed: however fast the write, they cannot have taken part
// in it before the cut. The write waits half its quorum time (at least
// 100 ms) for stragglers once the quorum has confirmed, so the cut
// usually lands while it is in flight (the log says so when a slow
// `docker network disconnect` missed it).
func (c *cluster) minorityCutOffDuringWrite() {
	t := c.t
	voter := c.connectedVoter()
	n, owned := c.shardOwnership(voter)
	f := (n - 1) / 3
	victims := clusterPickMinority(owned, f, 2, nil)
	if len(victims) == 0 {
		c.fatalf(nil, "no storage node owns at most f=%d of the %d shards: %v", f, n, owned)
	}
	t.Logf("n=%d, f=%d; cutting off %v (%d shards) during a write", n, f, victims, clusterShardSum(owned, victims))

	blob := clusterRandom(24<<20 + 31)
	id := clusterBlobID(t, n, blob)
	c.pause(victims...)
	defer c.healAll()
	type putResult struct {
		resp clusterStoreResponse
		err  error
	}
	done := make(chan putResult, 1)
	go func() {
		r, err := c.put(blob, 4*time.Minute)
		done <- putResult{r, err}
	}()
	var atCut string
	c.waitEvery(3*time.Minute, 20*time.Millisecond, "the gateway to register the large blob", []string{"gateway"}, func() (bool, string) {
		select {
		case r := <-done:
			done <- r
			return true, "the store ended"
		default:
		}
		st, err := c.gatewayStatus(id)
		atCut = st
		return err == nil && st != "", fmt.Sprint(err)
	})
	c.disconnect(victims...)
	c.unpause(victims...)
	after, _ := c.gatewayStatus(id)
	t.Logf("blob %s was %s when the cut began, %s once it had taken effect", id, atCut, after)
	if after != "registered" {
		t.Logf("note: the write had finished before the cut took effect (the victims were frozen all along)")
	}
	r := <-done
	if r.err != nil {
		c.fatalf(append([]string{"gateway"}, victims...), "the store during the cut: %v", r.err)
	}
	if r.resp.BlobID != id {
		c.fatalf(nil, "the gateway answered blob ID %s, the blob's is %s", r.resp.BlobID, id)
	}
	c.remember(clusterBlob{id: id, data: blob, what: "minority cut off during the write"})
	ids := []string{id}
	for i := range 2 {
		ids = append(ids, c.storeAndRemember("minority cut off", 1<<20+i*65537))
	}

	c.connect(victims...)
	c.awaitHeld(victims, ids, c.epochStatus(voter).Epoch, 3*time.Minute)
}

// c. A node's stake goes to 0 and the epoch advances; two of the nodes that
// take over its shards (at most f shards' worth) are cut off while they
// sync them. The others finish; the handover waits for the victims; stores
// go on; healed, the victims finish and the epoch becomes Stable.
//
// A handover of this little data takes milliseconds, less than a cut takes
// to start: the nodes that take over are frozen (docker pause) before the
// advance, the victims are cut off, then all are thawed, so the victims
// learn of the new epoch (its announcement is in their sockets) and start
// syncing with the network gone.
func (c *cluster) minorityCutOffDuringHandover() {
	t := c.t
	voter := c.connectedVoter()
	n, owned := c.shardOwnership(voter)
	f := (n - 1) / 3
	leaving := "node-6"
	if owned[leaving] == 0 {
		c.fatalf(nil, "%s owns no shard: %v", leaving, owned)
	}
	for i := range 2 {
		c.storeAndRemember("before the handover", 4<<20+i*1031)
	}
	before := c.epochStatus(voter)
	var takers []string
	for _, nd := range clusterNodes {
		if nd != leaving && owned[nd] > 0 {
			takers = append(takers, nd)
		}
	}
	if out, err := c.admin(voter, "node", "stake", leaving, "0"); err != nil {
		c.fatalf(nil, "stake %s 0: %v\n%s", leaving, err, out)
	}
	c.pause(takers...)
	defer c.healAll()
	out, err := c.admin(voter, "epoch", "advance")
	if err != nil {
		c.fatalf(nil, "epoch advance: %v\n%s", err, out)
	}
	_, future := c.shardOwnership(voter)
	var pending []string
	for _, nd := range takers {
		if future[nd] > owned[nd] {
			pending = append(pending, nd)
		}
	}
	eligible := map[string]int{}
	for _, nd := range pending {
		eligible[nd] = future[nd]
	}
	victims := clusterPickMinority(eligible, f, 2, nil)
	if len(victims) == 0 {
		c.fatalf(nil, "no node taking over shards would own at most f=%d shards: now %v, before %v", f, future, owned)
	}
	time.Sleep(time.Second) // the announcement reaches the frozen nodes' sockets
	c.disconnect(victims...)
	c.unpause(takers...)
	t.Logf("epoch %d: %s's shards move to %v; %v (%d shards in the new map) cut off",
		before.Epoch+1, leaving, pending, victims, clusterShardSum(future, victims))

	// The others finish their part; the victims' shards stay pending and
	// the epoch is not Stable without them.
	var mid clusterEpochReport
	c.waitUntil(2*time.Minute, "the nodes not cut off to sync their shards", takers, func() (bool, string) {
		var out string
		var err error
		mid, out, err = c.tryEpochStatus(voter)
		if err != nil {
			return false, fmt.Sprintf("%v: %s", err, out)
		}
		for _, nd := range mid.Nodes {
			if !slices.Contains(victims, nd.Node) && len(nd.Pending) > 0 {
				return false, out
			}
		}
		return true, out
	})
	onVictims := 0
	for _, nd := range mid.Nodes {
		if slices.Contains(victims, nd.Node) {
			onVictims += len(nd.Pending)
		}
	}
	if mid.Epoch != before.Epoch+1 || mid.Phase == "stable" || onVictims == 0 {
		c.fatalf(victims, "epoch %d (%s) with %v cut off: %d shards pending on them (want epoch %d, not Stable, some pending)",
			mid.Epoch, mid.Phase, victims, onVictims, before.Epoch+1)
	}
	t.Logf("epoch %d is %s: %d shards pending on %v, %v", mid.Epoch, mid.Phase, onVictims, victims, mid.Stuck)
	c.storeAndRemember("minority cut off during the handover", 2<<20+5)

	c.connect(victims...)
	c.awaitStable(voter, mid.Epoch, 3*time.Minute)
	c.awaitNodesIn(mid.Epoch, time.Minute)
	if _, after := c.shardOwnership(voter); after[leaving] != 0 {
		c.fatalf(nil, "%s still owns %d shards with stake 0", leaving, after[leaving])
	}
}

// d. Every blob certified in any scenario reads back, byte for byte.
func (c *cluster) everyBlobReadsBack() {
	t := c.t
	c.healAll()
	c.mu.Lock()
	blobs := slices.Clone(c.blobs)
	c.mu.Unlock()
	for _, b := range blobs {
		start := time.Now()
		got, err := c.get(b.id, 5*time.Minute)
		if took := time.Since(start); took > 10*time.Second {
			t.Logf("slow read: %s (%d bytes, stored: %s) took %v", b.id, len(b.data), b.what, took.Round(time.Millisecond))
		}
		if err != nil {
			c.fatalf([]string{"gateway"}, "read %s (stored: %s): %v", b.id, b.what, err)
		}
		if !bytes.Equal(got, b.data) {
			c.fatalf([]string{"gateway"}, "read %s (stored: %s): %d bytes differ from the %d stored", b.id, b.what, len(got), len(b.data))
		}
	}
	t.Logf("all %d blobs read back byte for byte", len(blobs))
}

// ---- setting up -------------------------------------------------------

func startCluster(t *testing.T) *cluster {
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("cluster tests need %s on PATH (Docker Engine and docker-compose v1): %v", tool, err)
		}
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("cannot reach the Docker daemon (docker info): %v\n%s", err, out)
	}
	image := os.Getenv("WEFT_IMAGE")
	if image == "" {
		image = "weft:dev"
	}
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", image).CombinedOutput(); err != nil {
		t.Fatalf("no image %s (make cluster-test builds it: make build && docker build -t %s .): %v\n%s", image, image, err, out)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	project := os.Getenv("WEFT_CLUSTER_PROJECT")
	if project == "" {
		project = fmt.Sprintf("weftct%d%04d", time.Now().Unix()%100000, mrand.IntN(10000))
	}
	prefix := os.Getenv("WEFT_NET")
	if prefix == "" {
		prefix = clusterFreeSubnet(t)
	}
	keys := t.TempDir()
	for _, n := range clusterNodes {
		sk, err := crypto.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := crypto.WriteKeyFile(filepath.Join(keys, n+".key"), sk); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{
		t: t, project: project, network: project + "_weft", prefix: prefix,
		composeF: filepath.Join(root, "docker-compose.yml"),
		env: append(os.Environ(), "WEFT_IMAGE="+image, "WEFT_NET="+prefix, "WEFT_KEYS_DIR="+keys,
			"WEFT_OPERATOR_TOKEN="+clusterToken(), "WEFT_GATEWAY_BIND=127.0.0.1:", "WEFT_CLIENT_TOKEN=",
			// A blob sampled by an open challenge round reads only once the
			// round closes: rounds shorter than the default 2m keep the
			// final read-back short.
			"WEFT_CHALLENGE_WINDOW=30s"),
		ids:  map[string]string{},
		http: &http.Client{},
		cut:  map[string]bool{}, paused: map[string]bool{},
	}
	t.Logf("compose project %s on %s.0/24, image %s", project, prefix, image)
	t.Cleanup(c.teardown)

	// The voters first: each node then connects to the first voter it
	// lists (they list them in different orders), so every voter, the
	// leader too, has storage nodes following the control plane through it.
	start := time.Now()
	if out, err := c.compose(5*time.Minute, append([]string{"up", "-d", "--no-color"}, clusterVoters...)...); err != nil {
		c.fatalf(nil, "docker-compose up: %v\n%s", err, out)
	}
	for _, s := range clusterVoters {
		c.container(s)
	}
	c.waitUntil(2*time.Minute, "a control-plane leader", clusterVoters, func() (bool, string) {
		l, err := c.tryLeader()
		return err == nil && l != "", fmt.Sprint(err)
	})
	if out, err := c.compose(5*time.Minute, append([]string{"up", "-d", "--no-color"}, clusterNodes...)...); err != nil {
		c.fatalf(nil, "docker-compose up: %v\n%s", err, out)
	}
	for _, s := range clusterNodes {
		c.container(s)
	}
	c.waitUntil(2*time.Minute, "every storage node registered", clusterNodes, func() (bool, string) {
		nodes, err := c.listNodes(clusterVoters[0])
		return err == nil && len(nodes) == len(clusterNodes), fmt.Sprintf("%d registered, %v", len(nodes), err)
	})
	for _, n := range clusterNodes {
		if out, err := c.admin(clusterVoters[0], "node", "stake", n, "100"); err != nil {
			c.fatalf(nil, "stake %s: %v\n%s", n, err, out)
		}
	}
	if out, err := c.admin(clusterVoters[0], "epoch", "advance"); err != nil {
		c.fatalf(nil, "epoch advance: %v\n%s", err, out)
	}
	c.awaitStable(clusterVoters[0], 1, 2*time.Minute)
	c.awaitNodesIn(1, 2*time.Minute)

	out, err := c.admin(clusterVoters[0], "client", "add", "cluster-test", "--quota", "1000000000000000", "-o", "json")
	var added struct {
		Token string `json:"token"`
	}
	if err != nil || json.Unmarshal([]byte(out), &added) != nil || added.Token == "" {
		c.fatalf(nil, "client add: %v\n%s", err, out)
	}
	c.token = added.Token
	if out, err := c.compose(2*time.Minute, "up", "-d", "--no-color", "gateway"); err != nil {
		c.fatalf(nil, "docker-compose up gateway: %v\n%s", err, out)
	}
	c.container("gateway")
	out, err = c.compose(30*time.Second, "port", "gateway", "8080")
	if err != nil {
		c.fatalf([]string{"gateway"}, "docker-compose port gateway: %v\n%s", err, out)
	}
	c.gateway = strings.TrimSpace(out)
	c.waitUntil(time.Minute, "the gateway to answer", []string{"gateway"}, func() (bool, string) {
		resp, err := c.http.Get("http://" + c.gateway + "/v1/blobs/x/status")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusBadRequest, resp.Status
	})
	t.Logf("network up and Stable in epoch 1 in %v; gateway at http://%s", time.Since(start).Round(time.Second), c.gateway)
	return c
}

// teardown dumps the logs' tails when the test failed, then removes the
// containers, the network and the volumes.
func (c *cluster) teardown() {
	t := c.t
	c.healAll()
	if t.Failed() {
		for _, s := range append(append(slices.Clone(clusterVoters), clusterNodes...), "gateway") {
			t.Logf("---- docker logs %s (last 40 lines) ----\n%s", s, c.logs(s, 40))
		}
	}
	if os.Getenv("WEFT_CLUSTER_KEEP") == "1" {
		t.Logf("WEFT_CLUSTER_KEEP=1: leaving project %s running (docker-compose -p %s down -v)", c.project, c.project)
		return
	}
	if out, err := c.compose(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
		t.Errorf("docker-compose down: %v\n%s", err, out)
	}
}

// clusterFreeSubnet picks a /24 in 172.28.0.0/16 that no Docker network
// uses.
func clusterFreeSubnet(t *testing.T) string {
	out, err := exec.Command("sh", "-c", `docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' $(docker network ls -q)`).CombinedOutput()
	if err != nil {
		t.Fatalf("listing Docker networks: %v\n%s", err, out)
	}
	var used []*net.IPNet
	for _, s := range strings.Fields(string(out)) {
		if _, n, err := net.ParseCIDR(s); err == nil {
			used = append(used, n)
		}
	}
	start := mrand.IntN(200)
	for i := range 250 {
		prefix := fmt.Sprintf("172.28.%d", (start+i)%250+1)
		_, mine, _ := net.ParseCIDR(prefix + ".0/24")
		free := true
		for _, u := range used {
			if u.Contains(mine.IP) || mine.Contains(u.IP) {
				free = false
				break
			}
		}
		if free {
			return prefix
		}
	}
	t.Fatalf("no free /24 in 172.28.0.0/16 among Docker's networks (%s); set WEFT_NET", strings.TrimSpace(string(out)))
	return ""
}

func clusterToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- docker -----------------------------------------------------------

func (c *cluster) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = c.env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no answer in %v", name, strings.Join(args, " "), timeout)
	}
	return string(out), err
}

func (c *cluster) compose(timeout time.Duration, args ...string) (string, error) {
	return c.run(timeout, "docker-compose", append([]string{"-p", c.project, "-f", c.composeF}, args...)...)
}

func (c *cluster) docker(timeout time.Duration, args ...string) (string, error) {
	return c.run(timeout, "docker", args...)
}

// container is the ID of a service's container.
func (c *cluster) container(service string) string {
	c.mu.Lock()
	id, ok := c.ids[service]
	c.mu.Unlock()
	if ok {
		return id
	}
	out, err := c.compose(time.Minute, "ps", "-q", service)
	id = strings.TrimSpace(out)
	if err != nil || id == "" {
		c.fatalf(nil, "no container for %s: %v\n%s", service, err, out)
	}
	c.mu.Lock()
	c.ids[service] = id
	c.mu.Unlock()
	return id
}

// ip is a service's fixed address (docker-compose.yml).
func (c *cluster) ip(service string) string {
	switch {
	case strings.HasPrefix(service, "control-"):
		return c.prefix + ".1" + strings.TrimPrefix(service, "control-")
	case strings.HasPrefix(service, "node-"):
		return c.prefix + ".2" + strings.TrimPrefix(service, "node-")
	}
	return c.prefix + ".30"
}

func (c *cluster) logs(service string, lines int) string {
	c.mu.Lock()
	id, ok := c.ids[service]
	c.mu.Unlock()
	if !ok {
		return "(no container)"
	}
	out, err := c.docker(30*time.Second, "logs", "--tail", fmt.Sprint(lines), id)
	if err != nil {
		return fmt.Sprintf("docker logs: %v\n%s", err, out)
	}
	return out
}

// disconnect cuts services off the network (all at once).
func (c *cluster) disconnect(services ...string) {
	c.parallel(services, func(s string) error {
		if out, err := c.docker(time.Minute, "network", "disconnect", c.network, c.container(s)); err != nil {
			return fmt.Errorf("docker network disconnect %s: %v\n%s", s, err, out)
		}
		c.mu.Lock()
		c.cut[s] = true
		c.mu.Unlock()
		return nil
	})
	c.t.Logf("cut off: %v", services)
}

// connect puts services back on the network with their own addresses.
func (c *cluster) connect(services ...string) {
	c.parallel(services, func(s string) error {
		out, err := c.docker(time.Minute, "network", "connect", "--ip", c.ip(s), "--alias", s, c.network, c.container(s))
		if err != nil && !strings.Contains(out, "already exists") {
			return fmt.Errorf("docker network connect %s: %v\n%s", s, err, out)
		}
		c.mu.Lock()
		delete(c.cut, s)
		c.mu.Unlock()
		return nil
	})
	c.t.Logf("reconnected: %v", services)
}

// pause freezes services' processes (docker pause); their sockets stay
// open and the kernel still receives for them.
func (c *cluster) pause(services ...string) {
	c.parallel(services, func(s string) error {
		if out, err := c.docker(time.Minute, "pause", c.container(s)); err != nil {
			return fmt.Errorf("docker pause %s: %v\n%s", s, err, out)
		}
		c.mu.Lock()
		c.paused[s] = true
		c.mu.Unlock()
		return nil
	})
	c.t.Logf("frozen: %v", services)
}

func (c *cluster) unpause(services ...string) {
	c.parallel(services, func(s string) error {
		if out, err := c.docker(time.Minute, "unpause", c.container(s)); err != nil && !strings.Contains(out, "not paused") {
			return fmt.Errorf("docker unpause %s: %v\n%s", s, err, out)
		}
		c.mu.Lock()
		delete(c.paused, s)
		c.mu.Unlock()
		return nil
	})
	c.t.Logf("thawed: %v", services)
}

// healAll thaws and reconnects whatever is still frozen or cut off (after
// a failure too).
func (c *cluster) healAll() {
	c.mu.Lock()
	var paused, cut []string
	for s := range c.paused {
		paused = append(paused, s)
	}
	for s := range c.cut {
		cut = append(cut, s)
	}
	c.mu.Unlock()
	sort.Strings(paused)
	sort.Strings(cut)
	if len(paused) > 0 {
		c.unpause(paused...)
	}
	if len(cut) > 0 {
		c.connect(cut...)
	}
}

// connectedVoter is a voter that is not cut off.
func (c *cluster) connectedVoter() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range clusterVoters {
		if !c.cut[v] {
			return v
		}
	}
	return clusterVoters[0]
}

func (c *cluster) parallel(services []string, f func(string) error) {
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, s := range services {
		wg.Go(func() { errs[i] = f(s) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.fatalf(services, "%v", err)
	}
}

// fatalf fails the test with the tails of the named containers' logs.
func (c *cluster) fatalf(services []string, format string, args ...any) {
	c.t.Helper()
	msg := fmt.Sprintf(format, args...)
	for _, s := range services {
		msg += fmt.Sprintf("\n---- docker logs %s (last 30 lines) ----\n%s", s, c.logs(s, 30))
	}
	c.t.Fatal(msg)
}

// waitUntil polls cond until it holds; on the deadline it fails with
// cond's last word and the named containers' logs.
func (c *cluster) waitUntil(d time.Duration, what string, services []string, cond func() (bool, string)) {
	c.t.Helper()
	c.waitEvery(d, 500*time.Millisecond, what, services, cond)
}

func (c *cluster) waitEvery(d, every time.Duration, what string, services []string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.fatalf(services, "timed out after %v waiting for %s; last: %s", d, what, detail)
		}
		time.Sleep(every)
	}
}

// ---- the operator -----------------------------------------------------

// admin runs `weft admin` in a voter's container, against that voter.
func (c *cluster) admin(voter string, args ...string) (string, error) {
	full := append([]string{"exec", c.container(voter), "/weft", "admin", "--timeout", "20s"}, args...)
	return c.docker(time.Minute, full...)
}

type clusterVoterStatus struct {
	ID           string `json:"id"`
	RaftState    string `json:"raftState"`
	LeaderID     string `json:"leaderId"`
	AppliedIndex uint64 `json:"appliedIndex,string"`
	Epoch        uint64 `json:"epoch,string"`
	Phase        string `json:"phase"`
	Shards       int    `json:"shards"`
}

func (c *cluster) voterStatus(voter string) (clusterVoterStatus, error) {
	var st clusterVoterStatus
	out, err := c.admin(voter, "status", "-o", "json")
	if err != nil {
		return st, fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("%v: %s", err, out)
	}
	return st, nil
}

// tryLeader is the leader every connected voter agrees on.
func (c *cluster) tryLeader() (string, error) {
	leaders := map[string]bool{}
	for _, v := range clusterVoters {
		c.mu.Lock()
		cut := c.cut[v]
		c.mu.Unlock()
		if cut {
			continue
		}
		st, err := c.voterStatus(v)
		if err != nil {
			return "", fmt.Errorf("%s: %w", v, err)
		}
		leaders[st.LeaderID] = true
	}
	if len(leaders) != 1 {
		return "", fmt.Errorf("the voters name different leaders: %v", leaders)
	}
	for l := range leaders {
		return l, nil
	}
	return "", errors.New("no voter")
}

func (c *cluster) leader() string {
	var l string
	c.waitUntil(time.Minute, "the voters to agree on a leader", clusterVoters, func() (bool, string) {
		var err error
		l, err = c.tryLeader()
		return err == nil && l != "", fmt.Sprint(err)
	})
	return l
}

type clusterEpochReport struct {
	Epoch   uint64   `json:"epoch"`
	Phase   string   `json:"phase"`
	Pending []uint32 `json:"pending_shards"`
	Nodes   []struct {
		Node    string   `json:"node"`
		Pending []uint32 `json:"pending_shards"`
		Error   string   `json:"error"`
	} `json:"nodes"`
	Stuck []string `json:"stuck"`
}

func (c *cluster) tryEpochStatus(voter string) (clusterEpochReport, string, error) {
	var r clusterEpochReport
	out, err := c.admin(voter, "epoch", "status", "-o", "json")
	if err == nil {
		err = json.Unmarshal([]byte(out), &r)
	}
	return r, out, err
}

func (c *cluster) epochStatus(voter string) clusterEpochReport {
	var r clusterEpochReport
	c.waitUntil(time.Minute, "epoch status from "+voter, []string{voter}, func() (bool, string) {
		var out string
		var err error
		r, out, err = c.tryEpochStatus(voter)
		return err == nil, fmt.Sprintf("%v: %s", err, out)
	})
	return r
}

// awaitStable waits for the epoch to be Stable, as the voter reports it.
func (c *cluster) awaitStable(voter string, epoch uint64, d time.Duration) {
	c.t.Helper()
	services := append([]string{voter}, clusterNodes...)
	c.waitUntil(d, fmt.Sprintf("epoch %d Stable", epoch), services, func() (bool, string) {
		r, out, err := c.tryEpochStatus(voter)
		return err == nil && r.Epoch == epoch && r.Phase == "stable", fmt.Sprintf("%v: %s", err, out)
	})
}

// awaitNodesIn waits for every storage node to serve the epoch (each as
// it reports itself, through its published port).
func (c *cluster) awaitNodesIn(epoch uint64, d time.Duration) {
	c.t.Helper()
	c.waitUntil(d, fmt.Sprintf("every storage node in epoch %d", epoch), clusterNodes, func() (bool, string) {
		var behind []string
		for _, nd := range clusterNodes {
			ns, err := c.nodeStatus(nd)
			if err != nil || ns.Epoch != epoch {
				behind = append(behind, fmt.Sprintf("%s: %v %v", nd, clusterNodeSummary(ns), err))
			}
		}
		return len(behind) == 0, strings.Join(behind, "; ")
	})
}

type clusterNode struct {
	ID          string `json:"id"`
	Stake       string `json:"stake"`
	ShardsOwned int    `json:"shardsOwned"`
}

func (c *cluster) listNodes(voter string) ([]clusterNode, error) {
	var r struct {
		Nodes []clusterNode `json:"nodes"`
	}
	out, err := c.admin(voter, "node", "list", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return r.Nodes, json.Unmarshal([]byte(out), &r)
}

// shardOwnership is n and the shards each staked node owns.
func (c *cluster) shardOwnership(voter string) (int, map[string]int) {
	st, err := c.voterStatus(voter)
	if err != nil {
		c.fatalf(nil, "status: %v", err)
	}
	nodes, err := c.listNodes(voter)
	if err != nil {
		c.fatalf(nil, "node list: %v", err)
	}
	owned := map[string]int{}
	for _, n := range nodes {
		if n.ShardsOwned > 0 {
			owned[n.ID] = n.ShardsOwned
		}
	}
	return st.Shards, owned
}

// clusterPickMinority picks up to max nodes, fewest shards first, whose
// shards add up to at most f.
func clusterPickMinority(owned map[string]int, f, max int, exclude []string) []string {
	var ids []string
	for id := range owned {
		if !slices.Contains(exclude, id) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		if owned[ids[i]] != owned[ids[j]] {
			return owned[ids[i]] < owned[ids[j]]
		}
		return ids[i] < ids[j]
	})
	var out []string
	sum := 0
	for _, id := range ids {
		if len(out) == max || sum+owned[id] > f {
			break
		}
		out, sum = append(out, id), sum+owned[id]
	}
	return out
}

func clusterShardSum(owned map[string]int, ids []string) int {
	sum := 0
	for _, id := range ids {
		sum += owned[id]
	}
	return sum
}

// gatewayStatus is the blob's registry status (registered, certified…)
// as the gateway reports it; "" when it is not registered.
func (c *cluster) gatewayStatus(id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.gateway+"/v1/blobs/"+id+"/status", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return "", nil
	case http.StatusOK:
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return "", fmt.Errorf("%v: %s", err, body)
		}
		return st.Status, nil
	}
	return "", fmt.Errorf("%s: %s", resp.Status, body)
}

// ---- storage nodes, through their published ports --------------------

func (c *cluster) nodeConn(node string) (*grpc.ClientConn, error) {
	out, err := c.docker(30*time.Second, "port", c.container(node), "7101/tcp")
	if err != nil {
		return nil, fmt.Errorf("docker port %s: %v: %s", node, err, strings.TrimSpace(out))
	}
	addr := strings.TrimSpace(strings.Split(strings.TrimSpace(out), "\n")[0])
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func (c *cluster) nodeStatus(node string) (*weftv1.NodeStatusResponse, error) {
	conn, err := c.nodeConn(node)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return weftv1.NewStorageClient(conn).NodeStatus(ctx, &weftv1.NodeStatusRequest{})
}

// confirms asks a node to sign that it stores a blob in an epoch: it signs
// only when all its slivers of the blob are on its disk.
func (c *cluster) confirms(node, id string, epoch uint64) error {
	bid, err := crypto.ParseBlobID(id)
	if err != nil {
		return err
	}
	conn, err := c.nodeConn(node)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = weftv1.NewStorageClient(conn).GetConfirmation(ctx, &weftv1.GetConfirmationRequest{BlobId: bid[:], Epoch: epoch})
	return err
}

// awaitHeld waits until every one of nodes confirms every blob in the
// epoch: each holds its slivers of them on its disk.
func (c *cluster) awaitHeld(nodes, ids []string, epoch uint64, d time.Duration) {
	c.t.Helper()
	for _, nd := range nodes {
		for _, id := range ids {
			c.waitUntil(d, nd+" to hold its slivers of "+id, []string{nd}, func() (bool, string) {
				if err := c.confirms(nd, id, epoch); err != nil {
					ns, serr := c.nodeStatus(nd)
					return false, fmt.Sprintf("confirmation: %v; node status: %v %v", err, clusterNodeSummary(ns), serr)
				}
				return true, ""
			})
		}
	}
	c.t.Logf("%v hold their slivers of all %d blobs", nodes, len(ids))
}

func clusterNodeSummary(ns *weftv1.NodeStatusResponse) string {
	if ns == nil {
		return "(no status)"
	}
	return fmt.Sprintf("epoch %d, state index %d, event %d, recovery backlog %d, syncing %v",
		ns.Epoch, ns.StateIndex, ns.AppliedEvent, ns.RecoveryBacklog, ns.ShardsSyncing)
}

// ---- blobs, through the gateway ---------------------------------------

type clusterStoreResponse struct {
	BlobID      string `json:"blob_id"`
	Certificate string `json:"certificate"`
	Epoch       uint64 `json:"epoch"`
}

func clusterRandom(size int) []byte {
	b := make([]byte, size)
	rand.Read(b)
	return b
}

// clusterBlobID is the blob's ID as the gateway computes it (the default
// encoding for n shards).
func clusterBlobID(t *testing.T, n int, blob []byte) string {
	codec, err := coding.New(n)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := codec.Encode(blob)
	if err != nil {
		t.Fatal(err)
	}
	return enc.ID.String()
}

// put stores a blob through the gateway, trying again (as a client
// should: the same PUT resumes) after 5xx answers until d has passed.
func (c *cluster) put(blob []byte, d time.Duration) (clusterStoreResponse, error) {
	var r clusterStoreResponse
	deadline := time.Now().Add(d)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+c.gateway+"/v1/blobs?epochs=100", bytes.NewReader(blob))
		if err != nil {
			cancel()
			return r, err
		}
		req.Header.Set("Authorization", "Bearer "+c.token) // the gateway charges the caller
		resp, err := c.http.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		switch {
		case err == nil && (resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK):
			if err := json.Unmarshal(body, &r); err != nil || r.BlobID == "" || r.Certificate == "" {
				return r, fmt.Errorf("PUT answered %s: %s", resp.Status, body)
			}
			cert, err := base64.StdEncoding.DecodeString(r.Certificate)
			var cc crypto.Certificate
			if err != nil || cc.UnmarshalBinary(cert) != nil {
				return r, fmt.Errorf("PUT answered an unreadable certificate: %s", body)
			}
			if attempt > 1 {
				c.t.Logf("PUT of %d bytes certified on attempt %d", len(blob), attempt)
			}
			return r, nil
		case err == nil && resp.StatusCode < 500:
			return r, fmt.Errorf("PUT answered %s: %s", resp.Status, body)
		}
		if err == nil {
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("PUT of %d bytes: %d attempts in %v, the last: %w", len(blob), attempt, d, err)
		}
		c.t.Logf("PUT of %d bytes, attempt %d: %v; again", len(blob), attempt, err)
		time.Sleep(2 * time.Second)
	}
}

// get reads a blob through the gateway, trying again after 5xx answers
// until d has passed.
func (c *cluster) get(id string, d time.Duration) ([]byte, error) {
	deadline := time.Now().Add(d)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.gateway+"/v1/blobs/"+id, nil)
		if err != nil {
			cancel()
			return nil, err
		}
		resp, err := c.http.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		switch {
		case err == nil && resp.StatusCode == http.StatusOK:
			return body, nil
		case err == nil && resp.StatusCode < 500:
			return nil, fmt.Errorf("GET answered %s: %s", resp.Status, body)
		}
		if err == nil {
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("GET %s: %d attempts in %v, the last: %w", id, attempt, d, err)
		}
		c.t.Logf("GET %s, attempt %d: %v; again", id, attempt, err)
		time.Sleep(2 * time.Second)
	}
}

func (c *cluster) remember(b clusterBlob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blobs = append(c.blobs, b)
}

// storeAndRemember stores a random blob of size bytes through the gateway
// and keeps it for the final read-back; the store must certify.
func (c *cluster) storeAndRemember(what string, size int) string {
	c.t.Helper()
	blob := clusterRandom(size)
	r, err := c.put(blob, 3*time.Minute)
	if err != nil {
		c.fatalf([]string{"gateway"}, "store (%s): %v", what, err)
	}
	c.remember(clusterBlob{id: r.BlobID, data: blob, what: what})
	return r.BlobID
}
