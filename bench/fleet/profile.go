// Package fleet is the fleet of the JD etcd load benchmark (issue 12): a
// profile of a Vitess deployment (keyspaces, shards, tablets, cells,
// vtgates, VTOrcs) laid out as a complete topology, and goroutine clients
// that do to the topology what each Vitess component does, through
// Vitess's own code where it can be called as a library (topo.Server,
// srvtopo.ResilientServer, discovery.TopologyWatcher, topotools) and a
// faithful re-creation of the call sequence where it cannot (VTOrc's
// refresh, vttablet's start, PlannedReparentShard's topology writes).
// Run lays the topology out on each topology under test (stock etcd2,
// topod on the same etcd, topod per cell), drives the scenarios and
// measures etcd, topod and the clients into a report.Run.
package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/topod-io/topod/internal/jd"
)

// Profile is the fleet: the topology's totals (a jd.Profile) and the
// clients that use it.
type Profile struct {
	Name           string     `json:"name"`
	Topo           jd.Profile `json:"topology"`
	VtgatesPerCell int        `json:"vtgates_per_cell"`
	VTOrcs         int        `json:"vtorcs"`
}

// The JD fleet's clients.
const (
	JDVtgatesPerCell = 25
	JDVTOrcs         = 3
)

// JD returns the JD fleet: the JD topology (jd.JD), 25 vtgates per cell
// (200) and 3 VTOrcs.
func JD() Profile {
	return Profile{Name: "jd", Topo: jd.JD(), VtgatesPerCell: JDVtgatesPerCell, VTOrcs: JDVTOrcs}
}

// JD10x returns the 10x JD fleet: ten times the keyspaces, shards, tablets
// and tables (jd.JD().Scale(10)) and ten times the vtgates.
func JD10x() Profile {
	return Profile{Name: "jd10x", Topo: jd.JD().Scale(10), VtgatesPerCell: 10 * JDVtgatesPerCell, VTOrcs: JDVTOrcs}
}

// Scaled returns p at f times its keyspaces (shards, tablets and tables in
// proportion, jd.Profile.Sized) and vtgates (at least one a cell); cells
// and VTOrcs stay. f = 1 is p.
func (p Profile) Scaled(f float64) (Profile, error) {
	if f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return p, fmt.Errorf("fleet: scale %v: want a positive number", f)
	}
	if f == 1 {
		return p, nil
	}
	n := int(math.Round(float64(p.Topo.Keyspaces) * f))
	if n < 1 {
		return p, fmt.Errorf("fleet: scale %v leaves no keyspace of %d", f, p.Topo.Keyspaces)
	}
	q := p
	q.Name = fmt.Sprintf("%s@%g", p.Name, f)
	q.Topo = p.Topo.Sized(n)
	q.VtgatesPerCell = max(1, int(math.Round(float64(p.VtgatesPerCell)*f)))
	return q, q.Validate()
}

// Vtgates returns the number of vtgates.
func (p Profile) Vtgates() int { return p.VtgatesPerCell * p.Topo.Cells }

// Validate says what is wrong with p, if anything.
func (p Profile) Validate() error {
	if err := p.Topo.Validate(); err != nil {
		return fmt.Errorf("fleet: profile %q: %w", p.Name, err)
	}
	if p.VtgatesPerCell < 1 {
		return fmt.Errorf("fleet: profile %q: vtgates_per_cell is %d, want at least 1", p.Name, p.VtgatesPerCell)
	}
	if p.VTOrcs < 0 {
		return fmt.Errorf("fleet: profile %q: vtorcs is %d, want 0 or more", p.Name, p.VTOrcs)
	}
	return nil
}

// FileProfile is the JSON of a profile file: a user's fleet, by its
// averages. Shards and tablets may be fractional averages (2.32 shards per
// keyspace); the totals are rounded.
//
//	{"name": "ours", "keyspaces": 300, "shards_per_keyspace": 4,
//	 "tablets_per_shard": 3, "cells": 3, "vtgates_per_cell": 10,
//	 "tables_per_keyspace": 120, "vtorcs": 1}
type FileProfile struct {
	Name              string  `json:"name"`
	Keyspaces         int     `json:"keyspaces"`
	ShardsPerKeyspace float64 `json:"shards_per_keyspace"`
	TabletsPerShard   float64 `json:"tablets_per_shard"`
	Cells             int     `json:"cells"`
	VtgatesPerCell    int     `json:"vtgates_per_cell"`
	TablesPerKeyspace float64 `json:"tables_per_keyspace"`
	// Optional.
	VTOrcs    *int  `json:"vtorcs,omitempty"`     // default 1
	MaxShards int   `json:"max_shards,omitempty"` // shards of the largest keyspace; default min(72, keyspaces' shards)
	Seed      int64 `json:"seed,omitempty"`       // default 1
}

// ParseProfile parses a profile file's JSON. Unknown fields, missing or
// out-of-range values are errors that name the field.
func ParseProfile(data []byte) (Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f FileProfile
	if err := dec.Decode(&f); err != nil {
		return Profile{}, fmt.Errorf("profile: %w", err)
	}
	if dec.More() {
		return Profile{}, errors.New("profile: more than one JSON value")
	}
	var errs []error
	need := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	need(f.Keyspaces >= 1, "keyspaces is %d, want at least 1", f.Keyspaces)
	need(f.ShardsPerKeyspace >= 1, "shards_per_keyspace is %v, want at least 1", f.ShardsPerKeyspace)
	need(f.TabletsPerShard >= 1, "tablets_per_shard is %v, want at least 1", f.TabletsPerShard)
	need(f.Cells >= 1, "cells is %d, want at least 1", f.Cells)
	need(f.VtgatesPerCell >= 1, "vtgates_per_cell is %d, want at least 1", f.VtgatesPerCell)
	need(f.TablesPerKeyspace >= 1, "tables_per_keyspace is %v, want at least 1", f.TablesPerKeyspace)
	need(f.MaxShards >= 0, "max_shards is %d, want at least 1 (or absent)", f.MaxShards)
	need(f.VTOrcs == nil || *f.VTOrcs >= 0, "vtorcs is negative")
	if len(errs) > 0 {
		return Profile{}, fmt.Errorf("profile: %w", errors.Join(errs...))
	}
	shards := int(math.Round(float64(f.Keyspaces) * f.ShardsPerKeyspace))
	p := Profile{
		Name: f.Name,
		Topo: jd.Profile{
			Keyspaces: f.Keyspaces,
			Shards:    shards,
			Tablets:   int(math.Round(float64(shards) * f.TabletsPerShard)),
			Tables:    int(math.Round(float64(f.Keyspaces) * f.TablesPerKeyspace)),
			Cells:     f.Cells,
			MaxShards: f.MaxShards,
			Seed:      f.Seed,
		},
		VtgatesPerCell: f.VtgatesPerCell,
		VTOrcs:         1,
	}
	if p.Name == "" {
		p.Name = "file"
	}
	if f.VTOrcs != nil {
		p.VTOrcs = *f.VTOrcs
	}
	if p.Topo.Seed == 0 {
		p.Topo.Seed = 1
	}
	if p.Topo.MaxShards == 0 {
		p.Topo.MaxShards = max(1, min(jd.JDMaxShards, shards-f.Keyspaces+1))
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// LoadProfile reads a profile file (see FileProfile).
func LoadProfile(path string) (Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Profile{}, fmt.Errorf("profile: %w", err)
	}
	p, err := ParseProfile(data)
	if err != nil {
		return Profile{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
