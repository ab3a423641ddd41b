package deploy

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// dsRef is a panel's or a query's data source.
type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *dsRef `json:"datasource"`
	Targets    []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		RefID        string `json:"refId"`
		Datasource   *dsRef `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

type dashboardJSON struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"` // a string, or {"query": …}
			Datasource *dsRef `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// dashQuery is one PromQL query of the dashboard: a panel's target or a
// templating variable's query.
type dashQuery struct {
	where  string // panel "title" (refId) or variable $name
	expr   string
	legend string
	q      promQuery
}

// The data source every query names: the dashboard's own variable, so that
// it imports (Dashboards → Import) and provisions without inputs.
const datasourceVar = "${datasource}"

// loadDashboard reads deploy/grafana/weft.json, checks its shape and
// returns every query in it, read.
func loadDashboard(t *testing.T) []dashQuery {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "weft.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("weft.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("weft.json: uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	var queries []dashQuery
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type != "query" {
			continue
		}
		text, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			text, _ = m["query"].(string)
		}
		if v.Datasource == nil || v.Datasource.UID != datasourceVar {
			t.Errorf("variable $%s: data source %+v, want uid %s", v.Name, v.Datasource, datasourceVar)
		}
		q, err := parseVariableQuery(text)
		if err != nil {
			t.Errorf("variable $%s: %v", v.Name, err)
			continue
		}
		queries = append(queries, dashQuery{where: "variable $" + v.Name, expr: text, q: q})
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("templating: variables %v, want datasource, job and instance", vars)
	}
	ids := map[int]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if other, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no queries", p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != datasourceVar {
				t.Errorf("panel %q: data source %+v, want uid %s", p.Title, p.Datasource, datasourceVar)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("panel %q (%s)", p.Title, tg.RefID)
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: missing or repeated refId", where)
				}
				refs[tg.RefID] = true
				if tg.Datasource == nil || tg.Datasource.UID != datasourceVar {
					t.Errorf("%s: data source %+v, want uid %s", where, tg.Datasource, datasourceVar)
				}
				for _, v := range []string{"$job", "$instance"} {
					if !strings.Contains(tg.Expr, v) {
						t.Errorf("%s: %s does not filter by %s", where, tg.Expr, v)
					}
				}
				q, err := parsePromQL(tg.Expr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if len(q.metrics) == 0 {
					t.Errorf("%s: %s names no metric", where, tg.Expr)
				}
				queries = append(queries, dashQuery{where: where, expr: tg.Expr, legend: tg.LegendFormat, q: q})
			}
		}
	}
	walk(d.Panels)
	if t.Failed() {
		t.FailNow()
	}
	return queries
}

// family is one metric family as the processes serve it.
type family struct {
	typ    dto.MetricType
	labels map[string]map[string]bool // label → values seen
	roles  map[string]bool            // control, node, gateway
}

// exported are the families of every process scraped, by name.
type exported map[string]*family

func (e exported) add(role string, fams map[string]*dto.MetricFamily) {
	for name, mf := range fams {
		f := e[name]
		if f == nil {
			f = &family{typ: mf.GetType(), labels: map[string]map[string]bool{}, roles: map[string]bool{}}
			e[name] = f
		}
		f.roles[role] = true
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if f.labels[lp.GetName()] == nil {
					f.labels[lp.GetName()] = map[string]bool{}
				}
				f.labels[lp.GetName()][lp.GetValue()] = true
			}
		}
	}
}

// resolve finds the family a name in a query is a series of: itself, or a
// histogram's (summary's) _bucket, _sum or _count.
func (e exported) resolve(name string) (f *family, bucket bool) {
	if f := e[name]; f != nil {
		return f, false
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f := e[base]; f != nil && (f.typ == dto.MetricType_HISTOGRAM || (f.typ == dto.MetricType_SUMMARY && suffix != "_bucket")) {
			return f, suffix == "_bucket"
		}
	}
	return nil, false
}

// check lists what the queries refer to that the processes do not serve:
// metric names; label names in matchers, grouping clauses and legends;
// label values matched for equality. job and instance are Prometheus's
// target labels.
func check(queries []dashQuery, e exported) []string {
	var problems []string
	for _, dq := range queries {
		valid := map[string]bool{"job": true, "instance": true}
		var fams []*family
		for _, name := range keys(dq.q.metrics) {
			f, bucket := e.resolve(name)
			if f == nil {
				problems = append(problems, fmt.Sprintf("%s: no process serves %s", dq.where, name))
				continue
			}
			fams = append(fams, f)
			for l := range f.labels {
				valid[l] = true
			}
			if bucket {
				valid["le"] = true
			}
		}
		if len(fams) < len(dq.q.metrics) {
			continue // its labels cannot be checked
		}
		for _, l := range keys(dq.q.labels) {
			if !valid[l] {
				problems = append(problems, fmt.Sprintf("%s: no series of %s has a label %s", dq.where, strings.Join(keys(dq.q.metrics), ", "), l))
			}
		}
		for _, lv := range dq.q.equals {
			seen := slices.ContainsFunc(fams, func(f *family) bool { return f.labels[lv.label][lv.value] })
			if !seen && lv.label != "job" && lv.label != "instance" {
				problems = append(problems, fmt.Sprintf("%s: no series of %s has %s=%q", dq.where, strings.Join(keys(dq.q.metrics), ", "), lv.label, lv.value))
			}
		}
		for _, l := range legendLabels(dq.legend) {
			switch {
			case dq.q.aggregated && !dq.q.by[l]:
				problems = append(problems, fmt.Sprintf("%s: legend {{%s}} but the aggregation keeps only %v", dq.where, l, keys(dq.q.by)))
			case !dq.q.aggregated && !valid[l]:
				problems = append(problems, fmt.Sprintf("%s: legend {{%s}}: no such label", dq.where, l))
			}
		}
	}
	return problems
}

// readyFile is the part of `weft devnet --ready-file` this test reads.
type readyFile struct {
	Gateway     string `json:"gateway"`
	ClientToken string `json:"client_token"`
	Processes   []struct {
		Role    string `json:"role"`
		ID      string `json:"id"`
		Metrics string `json:"metrics"`
	} `json:"processes"`
}

// scrapeAll reads every process's /metrics.
func scrapeAll(r readyFile) (exported, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	e := exported{}
	for _, p := range r.Processes {
		if p.Metrics == "" {
			return nil, fmt.Errorf("%s has no metrics endpoint in the ready file", p.ID)
		}
		resp, err := hc.Get("http://" + p.Metrics + "/metrics")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.ID, err)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: parsing /metrics: %w", p.ID, err)
		}
		e.add(p.Role, fams)
	}
	return e, nil
}

// Every query of the dashboard names only metrics, labels and label values
// that real processes serve: `weft devnet --metrics` (3 voters, 4 nodes
// and the gateway, each a process with a metrics endpoint), after a blob
// stored and read twice through the gateway so that the labelled series
// exist, every /metrics scraped over HTTP. Series that only a decided
// storage-challenge round creates can take seconds more (the devnet's
// challenge window is 10 s): the scrape is repeated until nothing is
// missing, for up to 30 s.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	queries := loadDashboard(t)
	start := time.Now()
	dir := t.TempDir()
	bin := filepath.Join(dir, "weft")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/weft").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built in %v", time.Since(start).Round(time.Millisecond))

	ready := filepath.Join(dir, "ready.json")
	logPath := filepath.Join(dir, "devnet.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	dn := exec.Command(bin, "devnet", "--data-dir", filepath.Join(dir, "data"), "--ready-file", ready,
		"--nodes", "4", "--shards", "12", "--metrics")
	dn.Stdout, dn.Stderr = log, log
	if err := dn.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- dn.Wait() }()
	// SIGTERM: the devnet stops its children, then itself.
	t.Cleanup(func() {
		dn.Process.Signal(syscall.SIGTERM) // an error if it is gone already
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			dn.Process.Kill()
			<-exited
		}
	})
	devnetLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	launched := time.Now()
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("weft devnet exited: %v\n%s", err, devnetLog())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(launched) > time.Minute {
			t.Fatalf("no ready file after a minute\n%s", devnetLog())
		}
	}
	b, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	var r readyFile
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, p := range r.Processes {
		roles[p.Role]++
	}
	if roles["control"] != 3 || roles["node"] != 4 || roles["gateway"] != 1 {
		t.Fatalf("ready file lists %v, want 3 voters, 4 nodes and a gateway", roles)
	}
	t.Logf("devnet ready in %v", time.Since(launched).Round(time.Millisecond))

	storeAndRead(t, r)

	var (
		e        exported
		problems []string
		scrapes  int
	)
	for deadline := time.Now().Add(30 * time.Second); ; {
		scrapes++
		if e, err = scrapeAll(r); err != nil {
			t.Fatalf("scrape: %v\n%s", err, devnetLog())
		}
		if problems = check(queries, e); len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(problems) > 0 {
		t.Errorf("the dashboard queries what no weft process serves (%d scrapes):\n  %s", scrapes, strings.Join(problems, "\n  "))
	}
	t.Logf("%d queries checked against %d metric families (%d scrapes), %v in all", len(queries), len(e), scrapes, time.Since(start).Round(time.Millisecond))

	// The check is not vacuous: a name, a label or a value no process
	// serves is reported.
	bogus := []string{
		`rate(weft_storage_no_such_bytes_total{job=~"$job"}[5m])`,
		`sum by (no_such_label) (weft_storage_shards)`,
		`weft_storage_shards{state="no-such-state"}`,
		`rate(weft_storage_bytes_stored_total_bucket[5m])`, // a counter has no buckets
	}
	for _, expr := range bogus {
		q, err := parsePromQL(expr)
		if err != nil {
			t.Fatal(err)
		}
		if p := check([]dashQuery{{where: "bogus", expr: expr, q: q}}, e); len(p) == 0 {
			t.Errorf("%s: not reported", expr)
		}
	}
	if p := check([]dashQuery{{where: "bogus", legend: "{{instance}}", q: promQuery{metrics: map[string]bool{"weft_storage_shards": true},
		by: map[string]bool{"state": true}, aggregated: true}}}, e); len(p) == 0 {
		t.Error("a legend naming a label the aggregation drops: not reported")
	}
}

// storeAndRead stores a blob through the gateway and reads it twice (a
// cache miss, then a hit).
func storeAndRead(t *testing.T, r readyFile) {
	t.Helper()
	blob := make([]byte, 100_000)
	rand.Read(blob)
	req, err := http.NewRequest(http.MethodPut, r.Gateway+"/v1/blobs", bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.ClientToken)
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var put struct {
		BlobID string `json:"blob_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&put)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil || put.BlobID == "" {
		t.Fatalf("PUT: %s %v %+v", resp.Status, err, put)
	}
	for range 2 {
		resp, err := hc.Get(r.Gateway + "/v1/blobs/" + put.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("GET: %s %v, %d bytes", resp.Status, err, len(got))
		}
	}
}

// composeFile is the part of docker-compose.yml this test reads.
type composeFile struct {
	Services map[string]struct {
		Command []string `yaml:"command"`
	} `yaml:"services"`
}

type prometheusConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		Scheme        string `yaml:"scheme"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// jobOf is the scrape job of each weft role.
var jobOf = map[string]string{"control": "weft-voter", "node": "weft-node", "gateway": "weft-gateway"}

// prometheus.yml parses and has a job per role whose targets are exactly
// the compose services of that role at the port of their --metrics-addr,
// which every one of them sets, on an address other containers reach.
func TestPrometheusScrapesComposeServices(t *testing.T) {
	var compose composeFile
	readYAML(t, filepath.Join("..", "docker-compose.yml"), &compose)
	want := map[string][]string{}
	for name, svc := range compose.Services {
		if len(svc.Command) == 0 || jobOf[svc.Command[0]] == "" {
			continue // the operator-token one-shot
		}
		var addr string
		for _, arg := range svc.Command {
			if a, ok := strings.CutPrefix(arg, "--metrics-addr="); ok {
				addr = a
			}
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("service %s: --metrics-addr %q: %v", name, addr, err)
			continue
		}
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			t.Errorf("service %s: --metrics-addr %s: loopback, unreachable from Prometheus", name, addr)
		}
		job := jobOf[svc.Command[0]]
		want[job] = append(want[job], net.JoinHostPort(name, port))
	}
	var prom prometheusConfig
	readYAML(t, filepath.Join("prometheus", "prometheus.yml"), &prom)
	got := map[string][]string{}
	for _, sc := range prom.ScrapeConfigs {
		if _, dup := got[sc.JobName]; dup {
			t.Errorf("job %s twice", sc.JobName)
		}
		got[sc.JobName] = []string{}
		if sc.Scheme != "" && sc.Scheme != "http" || sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s: scheme %q, metrics_path %q: the compose network serves http://…/metrics", sc.JobName, sc.Scheme, sc.MetricsPath)
		}
		for _, s := range sc.StaticConfigs {
			got[sc.JobName] = append(got[sc.JobName], s.Targets...)
		}
	}
	for _, job := range []string{"weft-voter", "weft-node", "weft-gateway"} {
		slices.Sort(want[job])
		slices.Sort(got[job])
		if len(want[job]) == 0 || !slices.Equal(got[job], want[job]) {
			t.Errorf("job %s: targets %q, want the compose services %q", job, got[job], want[job])
		}
	}
}

// The Grafana provisioning files parse and point at the dashboard.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join("grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("datasources: %+v", ds)
	}
	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join("grafana", "provisioning", "dashboards", "weft.yml"), &dash)
	if dash.APIVersion != 1 || len(dash.Providers) != 1 || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path == "" {
		t.Errorf("dashboard providers: %+v", dash)
	}
}

// readYAML decodes a YAML file into v (merge keys and anchors included, as
// docker-compose.yml uses them).
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
