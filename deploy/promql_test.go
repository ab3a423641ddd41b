package deploy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// promQuery is what a dashboard query refers to: enough of PromQL to check
// its names against the metric families processes serve, not a parser of
// its whole grammar (github.com/prometheus/prometheus, which has one, is a
// module of hundreds of dependencies).
type promQuery struct {
	metrics map[string]bool // metric names, _bucket/_sum/_count as written
	labels  map[string]bool // label names in matchers and grouping clauses
	by      map[string]bool // label names in by (…) clauses
	// aggregated: an aggregation operator (sum, max, …) is applied, so only
	// the labels of its by clauses are left for a legend.
	aggregated bool
	equals     []labelValue // label="constant" matchers
}

type labelValue struct{ label, value string }

// Aggregation operators: an identifier that is one of these is not a
// metric, whether a by clause or its parenthesis follows.
var aggregators = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true,
	"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true,
	"count_values": true, "limitk": true, "limit_ratio": true,
}

// Keywords that take a parenthesised list of label names.
var grouping = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// Other keywords: binary operators and modifiers.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || ('0' <= c && c <= '9') }

var plainName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// parsePromQL reads a PromQL expression, with Grafana's variables ($job,
// ${job}, $__rate_interval) in it, for the names it refers to.
func parsePromQL(expr string) (promQuery, error) {
	q := promQuery{metrics: map[string]bool{}, labels: map[string]bool{}, by: map[string]bool{}}
	s := expr
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
			i++
		}
	}
	ident := func() string {
		start := i
		for i < len(s) && isIdentChar(s[i]) {
			i++
		}
		return s[start:i]
	}
	// str reads a quoted string at s[i] and returns its contents.
	str := func() (string, error) {
		quote := s[i]
		var b strings.Builder
		for i++; i < len(s); i++ {
			switch {
			case s[i] == '\\' && quote != '`' && i+1 < len(s):
				i++
				b.WriteByte(s[i])
			case s[i] == quote:
				i++
				return b.String(), nil
			default:
				b.WriteByte(s[i])
			}
		}
		return "", fmt.Errorf("unterminated string in %q", expr)
	}
	// labelList reads "(a, b)" after a grouping keyword.
	labelList := func(into ...map[string]bool) error {
		skipSpace()
		if i >= len(s) || s[i] != '(' {
			return fmt.Errorf("no label list after a grouping keyword at %d in %q", i, expr)
		}
		for i++; ; {
			skipSpace()
			switch {
			case i >= len(s):
				return fmt.Errorf("unterminated label list in %q", expr)
			case s[i] == ')':
				i++
				return nil
			case s[i] == ',':
				i++
			case isIdentStart(s[i]):
				l := ident()
				for _, m := range into {
					m[l] = true
				}
			default:
				return fmt.Errorf("unexpected %q in a label list of %q", s[i], expr)
			}
		}
	}
	// matchers reads "{a="x", b=~"y"}".
	matchers := func() error {
		for i++; ; {
			skipSpace()
			if i >= len(s) {
				return fmt.Errorf("unterminated matchers in %q", expr)
			}
			if s[i] == '}' {
				i++
				return nil
			}
			if s[i] == ',' {
				i++
				continue
			}
			if !isIdentStart(s[i]) {
				return fmt.Errorf("unexpected %q in the matchers of %q", s[i], expr)
			}
			label := ident()
			skipSpace()
			var op string
			for _, o := range []string{"=~", "!~", "!=", "="} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return fmt.Errorf("no match operator after %s in %q", label, expr)
			}
			i += len(op)
			skipSpace()
			if i >= len(s) || !strings.ContainsRune(`"'`+"`", rune(s[i])) {
				return fmt.Errorf("no string after %s%s in %q", label, op, expr)
			}
			value, err := str()
			if err != nil {
				return err
			}
			switch {
			case label == "__name__" && (op == "=" || op == "=~"):
				// Names alternated in a regular expression: each must be a
				// plain name, or it could not be checked.
				for _, name := range strings.Split(value, "|") {
					if !plainName.MatchString(name) {
						return fmt.Errorf("__name__%s%q: %q is not a plain metric name", op, value, name)
					}
					q.metrics[name] = true
				}
			case label == "__name__":
				return fmt.Errorf("__name__%s in %q: a negative name match cannot be checked", op, expr)
			default:
				q.labels[label] = true
				if op == "=" && !strings.Contains(value, "$") {
					q.equals = append(q.equals, labelValue{label, value})
				}
			}
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return q, nil
		}
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if _, err := str(); err != nil {
				return q, err
			}
		case c == '$': // a Grafana variable
			i++
			if i < len(s) && s[i] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return q, fmt.Errorf("unterminated ${ in %q", expr)
				}
				i += end + 1
			} else {
				ident()
			}
		case c == '[': // a range or subquery: durations and variables
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return q, fmt.Errorf("unterminated [ in %q", expr)
			}
			i += end + 1
		case c == '{':
			if err := matchers(); err != nil {
				return q, err
			}
		case '0' <= c && c <= '9' || c == '.': // a number or a duration
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			word := ident()
			lower := strings.ToLower(word)
			switch {
			case grouping[lower]:
				into := []map[string]bool{q.labels}
				if lower == "by" {
					into = append(into, q.by)
				}
				if err := labelList(into...); err != nil {
					return q, err
				}
			case aggregators[lower]:
				q.aggregated = true
			case keywords[lower]:
			default:
				skipSpace()
				if i < len(s) && s[i] == '(' {
					continue // a function
				}
				q.metrics[word] = true
			}
		default: // operators, parentheses, commas
			i++
		}
	}
}

// labelValuesQuery matches Grafana's label_values(selector, label).
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// parseVariableQuery reads a Grafana Prometheus variable's query:
// label_values(selector, label) (the label counts as used) or an expression
// (query_result(expr) and the like: the function name is skipped).
func parseVariableQuery(query string) (promQuery, error) {
	if m := labelValuesQuery.FindStringSubmatch(query); m != nil {
		q, err := parsePromQL(m[1])
		if err == nil {
			q.labels[m[2]] = true
		}
		return q, err
	}
	return parsePromQL(query)
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// legendLabels are the labels a legend format names ({{instance}}).
func legendLabels(format string) []string {
	var out []string
	for _, m := range legendLabel.FindAllStringSubmatch(format, -1) {
		out = append(out, m[1])
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The reader finds the metrics and only the metrics: not functions,
// aggregations, keywords, label names, strings, durations or variables.
func TestParsePromQL(t *testing.T) {
	cases := []struct {
		expr            string
		metrics, labels []string
		by              []string
		aggregated      bool
		equals          []labelValue
	}{
		{expr: `histogram_quantile(0.99, sum by (le, method) (rate(weft_storage_rpc_seconds_bucket{job=~"$job", code!="OK"}[$__rate_interval])))`,
			metrics: []string{"weft_storage_rpc_seconds_bucket"}, labels: []string{"code", "job", "le", "method"},
			by: []string{"le", "method"}, aggregated: true},
		{expr: `max(increase(a_total[5m] offset 1h)) / on(instance) group_left(kind) b:ratio * 1e3 - Inf`,
			metrics: []string{"a_total", "b:ratio"}, labels: []string{"instance", "kind"}, aggregated: true},
		{expr: `sum(rate(x{a="by", b='sum(y)', c=~"${v}"}[1m:30s])) by (z) and bool w`,
			metrics: []string{"w", "x"}, labels: []string{"a", "b", "c", "z"}, by: []string{"z"}, aggregated: true,
			equals: []labelValue{{"a", "by"}, {"b", "sum(y)"}}},
		{expr: `{__name__=~"x_total|y", job=~"$job"}`, metrics: []string{"x_total", "y"}, labels: []string{"job"}},
		{expr: `weft_control_raft_leader{instance=~"$instance"} == 1`,
			metrics: []string{"weft_control_raft_leader"}, labels: []string{"instance"}},
		{expr: `rate(process_cpu_seconds_total{state="a\"b"}[$__rate_interval]) > 0.5`,
			metrics: []string{"process_cpu_seconds_total"}, labels: []string{"state"}, equals: []labelValue{{"state", `a"b`}}},
	}
	for _, c := range cases {
		q, err := parsePromQL(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if got := keys(q.metrics); !slices.Equal(got, c.metrics) {
			t.Errorf("%s: metrics %q, want %q", c.expr, got, c.metrics)
		}
		if got := keys(q.labels); !slices.Equal(got, c.labels) {
			t.Errorf("%s: labels %q, want %q", c.expr, got, c.labels)
		}
		if got := keys(q.by); !slices.Equal(got, c.by) {
			t.Errorf("%s: by %q, want %q", c.expr, got, c.by)
		}
		if q.aggregated != c.aggregated {
			t.Errorf("%s: aggregated %v, want %v", c.expr, q.aggregated, c.aggregated)
		}
		if !slices.Equal(q.equals, c.equals) {
			t.Errorf("%s: equality matchers %q, want %q", c.expr, q.equals, c.equals)
		}
	}
	for _, bad := range []string{`x{a="b}`, `sum by (a x`, `x{__name__=~"weft_.*"}`, `x{__name__!="y"}`, `x{a b}`, `x[5m`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	q, err := parseVariableQuery(`label_values({__name__=~"a|b", job=~"$job"}, instance)`)
	if err != nil || !slices.Equal(keys(q.metrics), []string{"a", "b"}) || !slices.Equal(keys(q.labels), []string{"instance", "job"}) {
		t.Errorf("label_values: %v %q %q", err, keys(q.metrics), keys(q.labels))
	}
	if got := legendLabels("{{instance}} {{ kind }} p99"); !slices.Equal(got, []string{"instance", "kind"}) {
		t.Errorf("legend labels %q", got)
	}
}
