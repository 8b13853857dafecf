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
