// Command promqlnames reads PromQL expressions, one JSON string per line on
// standard input, parses each with Prometheus's own parser
// (promql/parser) and writes, one JSON line per expression, its parse
// error or every vector selector in it: the metric name and the label
// matchers. deploy/monitoring's test runs it over every rule and
// dashboard query to check that each metric they read exists.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // =, !=, =~, !~
	Value string `json:"value"`
}

type selector struct {
	Metric   string    `json:"metric"` // "" when the selector has no metric name
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	p := parser.NewParser(parser.Options{})
	for in.Scan() {
		var expr string
		if err := json.Unmarshal(in.Bytes(), &expr); err != nil {
			fmt.Fprintln(os.Stderr, "promqlnames: a line is not a JSON string:", err)
			os.Exit(2)
		}
		res := result{Selectors: []selector{}}
		e, err := p.ParseExpr(expr)
		if err != nil {
			res.Error = err.Error()
		} else {
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				s := selector{Matchers: []matcher{}}
				for _, m := range vs.LabelMatchers {
					if m.Name == labels.MetricName {
						if m.Type == labels.MatchEqual {
							s.Metric = m.Value
							continue
						}
					}
					s.Matchers = append(s.Matchers, matcher{Name: m.Name, Type: m.Type.String(), Value: m.Value})
				}
				res.Selectors = append(res.Selectors, s)
				return nil
			})
		}
		if err := out.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "promqlnames:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "promqlnames:", err)
		os.Exit(1)
	}
}
