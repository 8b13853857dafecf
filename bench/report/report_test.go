package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		stock, topod float64
		want         string
	}{
		{100, 10, "10x"},
		{3, 2, "1.50x"},
		{0, 2, "-"},
		{2, 0, "-"},
	} {
		if got := ratio(tc.stock, tc.topod); got != tc.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", tc.stock, tc.topod, got, tc.want)
		}
	}
}

func TestWrite(t *testing.T) {
	sc := func(name string, req float64) Scenario {
		return Scenario{Name: name, Seconds: 10, Etcd: Etcd{RequestsPerSec: req, Requests: map[string]float64{"Range": req * 10}},
			Client: Client{Change: &Delivery{What: "x", Watchers: 2, Seen: 2, P50: 0.1, Max: 0.2, Samples: []float64{0.1, 0.2}}}}
	}
	r := &Run{
		Profile: Profile{Name: "test", Keyspaces: 2},
		Topologies: []Topology{
			{Name: "stock etcd2", Kind: "etcd2", Scenarios: []Scenario{sc("steady", 100)}, Series: []Sample{{T: 1, EtcdReqPerSec: 100}, {T: 2, EtcdReqPerSec: 90}}},
			{Name: "topod x1", Kind: "topod", TopodReplicas: 1, Scenarios: []Scenario{sc("steady", 10)}, Series: []Sample{{T: 1, EtcdReqPerSec: 10}, {T: 2, EtcdReqPerSec: 9}}},
		},
		Checks: []Check{{Topology: "topod x1", Name: "c", OK: true}},
	}
	dir := t.TempDir()
	if err := Write(r, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| **steady** | etcd requests/s | 100 | 10.0 | 10x |", "![etcd requests/s (all members)](etcd_requests.png)", "delivery_steady.png"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	back, err := ReadJSON(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Topologies) != 2 || back.Topologies[1].Scenario("steady").Etcd.RequestsPerSec != 10 {
		t.Errorf("report.json round trip: %+v", back.Topologies)
	}
}

func TestMerge(t *testing.T) {
	run := func(topologies string, names ...string) *Run {
		r := &Run{Profile: Profile{Name: "jd", Keyspaces: 1911}, Seconds: 10,
			Settings: []Setting{{Name: "topologies", Value: topologies}, {Name: "steady", Value: "45s"}}}
		for _, n := range names {
			r.Topologies = append(r.Topologies, Topology{Name: n})
		}
		return r
	}
	other := run("topod1", "topod x1")
	other.Profile.Keyspaces = 478
	slow := run("topod1", "topod x1")
	slow.Settings[1].Value = "60s"
	more := run("topod1,topod3", "topod x1", "topod x3")
	more.Settings = append(more.Settings, Setting{Name: "scenarios", Value: "layout,etcd-leader-kill"})
	for _, tc := range []struct {
		name    string
		runs    []*Run
		want    []string // topology names
		wantErr string
	}{
		{"two runs", []*Run{run("stock", "stock etcd2"), run("topod1,topod3", "topod x1", "topod x3")}, []string{"stock etcd2", "topod x1", "topod x3"}, ""},
		{"other scenarios", []*Run{run("stock", "stock etcd2"), more}, []string{"stock etcd2", "topod x1", "topod x3"}, ""},
		{"none", nil, nil, "no run"},
		{"another profile", []*Run{run("stock", "stock etcd2"), other}, nil, "profile"},
		{"other settings", []*Run{run("stock", "stock etcd2"), slow}, nil, "settings"},
		{"a topology twice", []*Run{run("stock", "stock etcd2"), run("stock", "stock etcd2")}, nil, "more than one run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Merge(tc.runs...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Merge: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, top := range got.Topologies {
				names = append(names, top.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Errorf("topologies %v, want %v", names, tc.want)
			}
			if got.Seconds != 20 || got.Settings[0].Value != "stock,topod1,topod3" {
				t.Errorf("seconds %v, topologies setting %q", got.Seconds, got.Settings[0].Value)
			}
			if tc.runs[0].Topologies[0].Name != "stock etcd2" || len(tc.runs[0].Topologies) != 1 {
				t.Error("Merge changed its input")
			}
		})
	}
}
