// Package monitoring holds topod's and vschemad's Grafana dashboard and
// Prometheus rules (README.md) and their tests: promtool's own checks and
// unit tests of the rules, and a check that every metric a rule or a
// dashboard panel reads is exported by a real topod and vschemad.
package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var (
	ruleFiles = []string{"rules/topod.yaml", "rules/vschemad.yaml"}
	// prometheusRuleFile is the Prometheus operator's PrometheusRule of
	// the same rules, generated from ruleFiles.
	prometheusRuleFile = "../examples/prometheusrule/prometheusrule.yaml"
)

// tool returns the path of a tool `make bin/promtool` installs: $NAME
// (make test sets PROMTOOL and PROMQLNAMES) or the repository's bin/. A
// missing tool fails the test: it is never skipped.
func tool(t *testing.T, name string) string {
	t.Helper()
	p := os.Getenv(strings.ToUpper(name))
	if p == "" {
		p, _ = filepath.Abs(filepath.Join("..", "..", "bin", name))
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found at %s: `make bin/promtool` builds it (and %s) from deploy/monitoring/tools: %v", name, p, map[string]string{"promtool": "promqlnames", "promqlnames": "promtool"}[name], err)
	}
	return p
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPromtoolCheckRules: promtool check rules accepts the rule files
// (syntax, PromQL, templates, duplicate names) with its lint checks.
func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, tool(t, "promtool"), append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, ruleFiles...)...)
	t.Log(out)
}

// TestPromtoolTestRules: promtool's unit tests of the rules (tests/):
// each alert fires on a synthetic series, with its labels and annotations.
func TestPromtoolTestRules(t *testing.T) {
	tests, err := filepath.Glob("tests/*.yaml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no unit tests in tests/: %v", err)
	}
	out := run(t, tool(t, "promtool"), append([]string{"test", "rules"}, tests...)...)
	t.Log(out)
}

// ruleGroups are rule files' groups, as promtool and the Prometheus
// operator read them.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record      string            `json:"record"`
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) ruleGroups {
	t.Helper()
	var all ruleGroups
	for _, f := range ruleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g ruleGroups
		if err := yaml.UnmarshalStrict(b, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all.Groups = append(all.Groups, g.Groups...)
	}
	return all
}

// TestEveryAlertIsTestedAndDocumented: every alert has a severity, a
// summary and a description, and a promtool unit test (tests/) that
// expects it to fire; no test names an alert that does not exist.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	alerts := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: wants a summary and a description", r.Alert)
			}
		}
	}
	fired := map[string]bool{}
	tests, _ := filepath.Glob("tests/*.yaml")
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var u struct {
			Tests []struct {
				AlertRuleTests []struct {
					Alertname string `json:"alertname"`
					ExpAlerts []any  `json:"exp_alerts"`
				} `json:"alert_rule_test"`
			} `json:"tests"`
		}
		if err := yaml.Unmarshal(b, &u); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range u.Tests {
			for _, a := range tc.AlertRuleTests {
				if !alerts[a.Alertname] {
					t.Errorf("%s tests %s, which no rule file defines", f, a.Alertname)
				}
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	for a := range alerts {
		if !fired[a] {
			t.Errorf("alert %s: no unit test in tests/ expects it to fire", a)
		}
	}
}

// query is a PromQL expression and where it is.
type query struct{ where, expr string }

// ruleQueries returns every rule's expression, and the recording rules'
// names.
func ruleQueries(t *testing.T) ([]query, map[string]bool) {
	var qs []query
	records := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			qs = append(qs, query{"rule " + name, r.Expr})
			if r.Record != "" {
				records[r.Record] = true
			}
		}
	}
	return qs, records
}

var (
	// Grafana's interval variables, replaced by durations before parsing.
	grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")
	// Any other variable ($job, ${instance}) stands for a label value.
	grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	// label_values(selector, label): a query variable's query.
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$`)
)

// dashboardQueries returns every PromQL expression of the dashboards:
// each panel target's, and each query variable's selector, with Grafana's
// variables replaced so that Prometheus's parser reads them.
func dashboardQueries(t *testing.T) []query {
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var qs []query
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			SchemaVersion int `json:"schemaVersion"`
			Panels        []struct {
				Title   string `json:"title"`
				Type    string `json:"type"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.SchemaVersion < 36 {
			t.Errorf("%s: schemaVersion %d", f, d.SchemaVersion)
		}
		for _, p := range d.Panels {
			if p.Type == "timeseries" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("%s panel %q", filepath.Base(f), p.Title), grafanaVariable.ReplaceAllString(grafanaIntervals.Replace(tg.Expr), "x")})
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := v.Query.(map[string]any)
			s, _ := q["query"].(string)
			m := labelValues.FindStringSubmatch(s)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", f, v.Name, s)
				continue
			}
			qs = append(qs, query{fmt.Sprintf("%s variable %s", filepath.Base(f), v.Name), grafanaVariable.ReplaceAllString(m[1], "x")})
		}
	}
	return qs
}

// selector is one vector selector of a query, as promqlnames reports it.
type selector struct {
	Metric   string `json:"metric"`
	Matchers []struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"matchers"`
}

// parse runs every query through promqlnames (Prometheus's parser).
func parse(t *testing.T, qs []query) [][]selector {
	t.Helper()
	var in bytes.Buffer
	for _, q := range qs {
		b, _ := json.Marshal(q.expr)
		in.Write(append(b, '\n'))
	}
	cmd := exec.Command(tool(t, "promqlnames"))
	cmd.Stdin = &in
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promqlnames: %v", err)
	}
	var res [][]selector
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for i := 0; sc.Scan(); i++ {
		var r struct {
			Error     string     `json:"error"`
			Selectors []selector `json:"selectors"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Error != "" {
			t.Errorf("%s: does not parse: %s\n%s", qs[i].where, r.Error, qs[i].expr)
		}
		res = append(res, r.Selectors)
	}
	if len(res) != len(qs) {
		t.Fatalf("promqlnames answered %d of %d queries", len(res), len(qs))
	}
	return res
}

// Label values the metric-name test cannot make appear cheaply, that the
// code does export: each names where.
var knownValues = map[string]map[string]string{
	"vschemad_writes_total": {"failed": "pkg/vschemaapi/metrics.go: a write answered 5xx (the topology or a cell failing)"},
	"topod_downstream_streams": {
		"campaign":     "pkg/toposerver/election.go: a Campaign stream",
		"watch_leader": "pkg/toposerver/election.go: a WatchLeader stream",
	},
}

// targetLabels are the labels Prometheus (or the operator's relabeling)
// adds to every scraped series: not the servers' own.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true, "service": true}

// literalAlternation matches a regular expression that is only literal
// alternatives (a|b|c): each can be checked as a value.
var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_./{}-]+(\|[A-Za-z0-9_./{}-]+)*$`)

// TestMetricNamesExist: every metric a rule or a dashboard panel reads is
// exported by a real topod and vschemad (scraped after being exercised:
// scrapeRealServers), or is a recording rule of ruleFiles, or is
// Prometheus's own `up`; every label a selector matches on is one those
// series carry (besides the target labels), and every value it matches
// with = (or a literal alternation) one they were seen with.
func TestMetricNamesExist(t *testing.T) {
	e := scrapeRealServers(t)
	rules, records := ruleQueries(t)
	qs := append(rules, dashboardQueries(t)...)
	used := map[string]bool{}
	for i, sels := range parse(t, qs) {
		where := qs[i].where
		if len(sels) == 0 {
			t.Errorf("%s: reads no metric: %s", where, qs[i].expr)
		}
		for _, s := range sels {
			switch {
			case s.Metric == "":
				t.Errorf("%s: a selector without a metric name (%v): name each metric so that it can be checked", where, s.Matchers)
				continue
			case records[s.Metric]:
				used[s.Metric] = true
				continue
			case s.Metric == "up":
				continue
			case e[s.Metric] == nil:
				t.Errorf("%s: metric %s is not exported by topod or vschemad", where, s.Metric)
				continue
			}
			used[s.Metric] = true
			for _, m := range s.Matchers {
				if targetLabels[m.Name] {
					continue
				}
				values, ok := e[s.Metric][m.Name]
				if !ok {
					t.Errorf("%s: %s has no label %s", where, s.Metric, m.Name)
					continue
				}
				var want []string
				switch {
				case m.Type == "=":
					want = []string{m.Value}
				case m.Type == "=~" && literalAlternation.MatchString(m.Value):
					want = strings.Split(m.Value, "|")
				}
				for _, v := range want {
					if !values[v] && knownValues[s.Metric][v] == "" {
						t.Errorf("%s: %s{%s=%q}: no series has that value (seen: %v)", where, s.Metric, m.Name, v, sorted(values))
					}
				}
			}
		}
	}
	for r := range records {
		if !used[r] {
			t.Logf("recording rule %s is read by no alert or panel (kept for ad-hoc queries)", r)
		}
	}
	t.Logf("%d queries checked against %d exported series names", len(qs), len(e))
}

func sorted(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// TestPrometheusRuleIsGenerated: the PrometheusRule example holds exactly
// the rule files' groups (-update writes it from them).
func TestPrometheusRuleIsGenerated(t *testing.T) {
	var b strings.Builder
	b.WriteString(`# The Prometheus operator's PrometheusRule of deploy/monitoring/rules/*.yaml
# (generated from them: go test ./deploy/monitoring/ -run TestPrometheusRuleIsGenerated -update).
# Give it the labels your Prometheus's ruleSelector asks for.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: topod
  labels:
    app.kubernetes.io/name: topod
    app.kubernetes.io/part-of: topod
spec:
  groups:
`)
	for _, f := range ruleFiles {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, body, ok := strings.Cut(string(src), "\ngroups:\n")
		if !ok {
			t.Fatalf("%s: no top-level groups:", f)
		}
		fmt.Fprintf(&b, "    # deploy/monitoring/%s\n", f)
		for _, line := range strings.SplitAfter(body, "\n") {
			if strings.TrimSpace(line) == "" {
				b.WriteString(line)
				continue
			}
			b.WriteString("  " + line)
		}
	}
	want := b.String()
	if *update {
		if err := os.WriteFile(prometheusRuleFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(have) != want {
		t.Fatalf("%s is not generated from %v: run go test ./deploy/monitoring/ -run TestPrometheusRuleIsGenerated -update", prometheusRuleFile, ruleFiles)
	}
	// And it reads as the same groups.
	var pr struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(have, &pr); err != nil {
		t.Fatal(err)
	}
	var fromPR, fromFiles ruleGroups
	if err := json.Unmarshal(pr.Spec, &fromPR); err != nil {
		t.Fatal(err)
	}
	fromFiles = readRules(t)
	if !reflect.DeepEqual(fromPR, fromFiles) {
		t.Fatal("the PrometheusRule's groups differ from the rule files'")
	}
}
