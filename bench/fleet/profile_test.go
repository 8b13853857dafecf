package fleet

import (
	"strings"
	"testing"
)

func TestParseProfile(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       string // error substring; "" for none
	}{
		{"ok", `{"keyspaces": 300, "shards_per_keyspace": 4, "tablets_per_shard": 3, "cells": 3, "vtgates_per_cell": 10, "tables_per_keyspace": 120}`, ""},
		{"fractional", `{"keyspaces": 1911, "shards_per_keyspace": 2.3224, "tablets_per_shard": 2.5723, "cells": 8, "vtgates_per_cell": 25, "tables_per_keyspace": 288.9, "vtorcs": 3}`, ""},
		{"unknown field", `{"keyspace": 3}`, "unknown field"},
		{"not json", `keyspaces: 3`, "invalid character"},
		{"missing", `{"keyspaces": 3}`, "shards_per_keyspace is 0"},
		{"negative", `{"keyspaces": -1, "shards_per_keyspace": 1, "tablets_per_shard": 1, "cells": 1, "vtgates_per_cell": 1, "tables_per_keyspace": 1}`, "keyspaces is -1"},
		{"too sharded", `{"keyspaces": 2, "shards_per_keyspace": 100, "tablets_per_shard": 1, "cells": 1, "vtgates_per_cell": 1, "tables_per_keyspace": 1, "max_shards": 4}`, "more than"},
		{"two values", `{"keyspaces": 1, "shards_per_keyspace": 1, "tablets_per_shard": 1, "cells": 1, "vtgates_per_cell": 1, "tables_per_keyspace": 1} {}`, "more than one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseProfile([]byte(tc.json))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Validate(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestScaled(t *testing.T) {
	for _, tc := range []struct {
		f                        float64
		keyspaces, vtgates, orcs int
	}{
		{1, 1911, 200, 3},
		{0.02, 38, 8, 3},
		{0.5, 956, 104, 3},
	} {
		p, err := JD().Scaled(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if p.Topo.Keyspaces != tc.keyspaces || p.Vtgates() != tc.vtgates || p.VTOrcs != tc.orcs {
			t.Errorf("scale %v: %d keyspaces, %d vtgates, %d vtorcs; want %d, %d, %d", tc.f, p.Topo.Keyspaces, p.Vtgates(), p.VTOrcs, tc.keyspaces, tc.vtgates, tc.orcs)
		}
	}
	if _, err := JD().Scaled(0.0001); err == nil {
		t.Error("scale 0.0001: no error")
	}
}

func TestStockLayoutFits(t *testing.T) {
	p, err := JD().Scaled(0.2)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLayout(p, EtcdRequestLimit-stockSpare)
	if l.FullSize <= EtcdRequestLimit || l.SrvVSSize > EtcdRequestLimit-stockSpare || l.Note == "" {
		t.Errorf("full %d, stock %d bytes, note %q: want a full SrvVSchema over etcd's limit and a stock one under it", l.FullSize, l.SrvVSSize, l.Note)
	}
	if full := NewLayout(p, 0); full.SrvVSSize != full.FullSize || full.Note != "" {
		t.Errorf("unlimited layout: %d of %d bytes, note %q", full.SrvVSSize, full.FullSize, full.Note)
	}
}
