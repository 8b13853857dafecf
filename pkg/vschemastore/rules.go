package vschemastore

// This file reads and writes the global rules files that RebuildSrvVSchema
// copies into every SrvVSchema: routing rules, shard routing rules,
// keyspace routing rules and mirror rules.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtgate/vindexes"
)

// RulesKind names one of the rules files.
type RulesKind string

// The rules files.
const (
	RoutingRules         RulesKind = "routing-rules"
	ShardRoutingRules    RulesKind = "shard-routing-rules"
	KeyspaceRoutingRules RulesKind = "keyspace-routing-rules"
	MirrorRules          RulesKind = "mirror-rules"
)

// AllRules are the rules kinds, in SrvVSchema field order.
var AllRules = []RulesKind{RoutingRules, ShardRoutingRules, KeyspaceRoutingRules, MirrorRules}

// ParseRulesKind returns the kind named s.
func ParseRulesKind(s string) (RulesKind, error) {
	if k := RulesKind(s); slices.Contains(AllRules, k) {
		return k, nil
	}
	return "", fmt.Errorf("%w: no rules named %q", ErrBadRequest, s)
}

// File returns the kind's path in the global topology.
func (k RulesKind) File() string {
	switch k {
	case RoutingRules:
		return topo.RoutingRulesFile
	case ShardRoutingRules:
		return topo.ShardRoutingRulesFile
	case KeyspaceRoutingRules:
		return (&topo.Server{}).GetKeyspaceRoutingRulesPath()
	case MirrorRules:
		return topo.MirrorRulesFile
	}
	return ""
}

// New returns an empty message of the kind.
func (k RulesKind) New() proto.Message {
	switch k {
	case RoutingRules:
		return &vschemapb.RoutingRules{}
	case ShardRoutingRules:
		return &vschemapb.ShardRoutingRules{}
	case KeyspaceRoutingRules:
		return &vschemapb.KeyspaceRoutingRules{}
	case MirrorRules:
		return &vschemapb.MirrorRules{}
	}
	return nil
}

// deletesWhenEmpty reports whether Vitess's Save of the kind deletes the
// file rather than writing an empty message (all but keyspace routing
// rules).
func (k RulesKind) deletesWhenEmpty() bool { return k != KeyspaceRoutingRules }

// ParseRulesJSON parses rules of kind k in the JSON vtctldclient's
// Apply*Rules commands accept (protojson; unknown fields ignored, and
// reported as warnings).
func ParseRulesJSON(k RulesKind, data []byte) (proto.Message, *Validation, error) {
	m := k.New()
	if m == nil {
		return nil, nil, fmt.Errorf("%w: no rules named %q", ErrBadRequest, k)
	}
	if err := parseJSON(data, m); err != nil {
		return nil, nil, newValidationError(Problem{Code: CodeMalformed, Message: fmt.Sprintf("malformed %s JSON: %v", k, err)})
	}
	return m, unknownFields("", data, m), nil
}

// GetRules returns the rules of kind k and their version ("" when the file
// does not exist: the rules are then empty).
func (s *Store) GetRules(ctx context.Context, k RulesKind) (proto.Message, string, error) {
	conn, err := s.global(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("vschema: read %s: %w", k.File(), err)
	}
	m := k.New()
	data, v, err := conn.Get(ctx, k.File())
	if topo.IsErrType(err, topo.NoNode) {
		return m, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("vschema: read %s: %w", k.File(), err)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, "", fmt.Errorf("vschema: read %s: unmarshal: %w", k.File(), err)
	}
	return m, versionString(v), nil
}

// RulesResult is the outcome of PutRules.
type RulesResult struct {
	Kind       RulesKind   `json:"kind"`
	DryRun     bool        `json:"dry_run"`
	OldVersion string      `json:"old_version,omitempty"`
	NewVersion string      `json:"new_version,omitempty"`
	Changed    bool        `json:"changed"`
	Written    bool        `json:"written"`
	Diff       *RulesDiff  `json:"diff"`
	Validation *Validation `json:"validation"`
	// Cells and NoCells are as in ApplyResult.
	Cells   []CellResult `json:"cells,omitzero"`
	NoCells bool         `json:"no_cells,omitempty"`

	deleted bool // the write deleted the file
}

// Writes returns what r wrote to the global topology: the rules file, if
// written (or deleted).
func (r *RulesResult) Writes() []Write {
	if r == nil || !r.Written {
		return nil
	}
	return []Write{{Rules: r.Kind, Path: r.Kind.File(), Version: r.NewVersion, Deleted: r.deleted}}
}

// PutRules validates rules of kind k and, unless dryRun, writes them to the
// global topology as Vitess's Save*Rules does (an empty message deletes the
// file, except for keyspace routing rules), compare-and-set, then updates
// the rules in every cell's SrvVSchema (none, and NoCells in the result,
// when the topology has no cell). ifMatch is as in Change. An error after
// the rules were written is a *PartialError.
func (s *Store) PutRules(ctx context.Context, k RulesKind, rules proto.Message, ifMatch string, dryRun bool) (*RulesResult, error) {
	res := &RulesResult{Kind: k, DryRun: dryRun}
	v, err := s.validateRules(ctx, k, rules)
	if err != nil {
		return res, err
	}
	res.Validation = v
	unlock := s.lockKeyspaces([]string{"\x00rules"})
	defer unlock()
	conn, err := s.global(ctx)
	if err != nil {
		return res, fmt.Errorf("vschema: write %s: %w", k.File(), err)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(rules)
	if err != nil {
		return res, fmt.Errorf("vschema: write %s: marshal: %w", k.File(), err)
	}
	wait := casBackoff()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if err := pause(ctx, wait, attempt); err != nil {
			return res, fmt.Errorf("vschema: write %s: %w", k.File(), err)
		}
		old := k.New()
		oldData, ver, err := conn.Get(ctx, k.File())
		switch {
		case topo.IsErrType(err, topo.NoNode):
			ver = nil
		case err != nil:
			return res, fmt.Errorf("vschema: read %s: %w", k.File(), err)
		default:
			if err := proto.Unmarshal(oldData, old); err != nil {
				return res, fmt.Errorf("vschema: read %s: unmarshal: %w", k.File(), err)
			}
		}
		res.OldVersion = versionString(ver)
		if !matches(ifMatch, ver) {
			return res, fmt.Errorf("vschema: write %s: %w: If-Match %s, current version %q", k.File(), ErrVersionMismatch, ifMatch, res.OldVersion)
		}
		res.Diff = DiffRules(old, rules)
		deletes := len(data) == 0 && k.deletesWhenEmpty()
		res.Changed = !proto.Equal(old, rules) || (ver == nil && !deletes) || (ver != nil && deletes)
		if !v.OK() {
			return res, &ValidationError{Validation: v}
		}
		if dryRun {
			return res, nil
		}
		if !res.Changed {
			res.NewVersion = res.OldVersion
			break
		}
		var nv topo.Version
		switch {
		case deletes:
			err = conn.Delete(ctx, k.File(), ver)
		case ver == nil:
			nv, err = conn.Create(ctx, k.File(), data)
		default:
			nv, err = conn.Update(ctx, k.File(), data, ver)
		}
		if topo.IsErrType(err, topo.BadVersion) || topo.IsErrType(err, topo.NodeExists) || topo.IsErrType(err, topo.NoNode) {
			if ifMatch != "" {
				return res, fmt.Errorf("vschema: write %s: %w: changed concurrently since version %q", k.File(), ErrVersionMismatch, res.OldVersion)
			}
			continue
		}
		if err != nil {
			return res, fmt.Errorf("vschema: write %s: %w", k.File(), err)
		}
		res.Written, res.NewVersion, res.deleted = true, versionString(nv), deletes
		break
	}
	if !res.Written && res.Changed {
		return res, fmt.Errorf("vschema: write %s: %w: written by others during each of %d attempts; try again", k.File(), ErrContention, maxAttempts)
	}
	cells, err := s.syncCells(ctx, syncKeys{rules: true})
	res.Cells = cells
	res.NoCells = err == nil && len(cells) == 0
	if res.Written {
		err = partial(err, res.Writes())
	}
	return res, err
}

// validateRules checks rules of kind k against the keyspaces they name,
// read from the global topology (only those), with Vitess's own
// vindexes.BuildVSchema for routing and mirror rules.
func (s *Store) validateRules(ctx context.Context, k RulesKind, rules proto.Message) (*Validation, error) {
	v := &Validation{}
	targets := map[string][]string{} // keyspace -> fields naming it
	add := func(ks, field string) {
		if ks != "" {
			targets[ks] = append(targets[ks], field)
		}
	}
	srv := &vschemapb.SrvVSchema{Keyspaces: map[string]*vschemapb.Keyspace{}}
	switch r := rules.(type) {
	case *vschemapb.RoutingRules:
		srv.RoutingRules = r
		for i, rule := range r.Rules {
			for j, to := range rule.ToTables {
				if ks, _, ok := strings.Cut(to, "."); ok {
					add(strings.Trim(ks, "`"), fmt.Sprintf("rules[%d].to_tables[%d]", i, j))
				}
			}
		}
	case *vschemapb.MirrorRules:
		srv.MirrorRules = r
		for i, rule := range r.Rules {
			for _, t := range []struct{ name, field string }{{rule.FromTable, "from_table"}, {rule.ToTable, "to_table"}} {
				if ks, _, ok := strings.Cut(t.name, "."); ok {
					add(strings.Trim(strings.SplitN(ks, "@", 2)[0], "`"), fmt.Sprintf("rules[%d].%s", i, t.field))
				}
			}
		}
	case *vschemapb.ShardRoutingRules:
		for i, rule := range r.Rules {
			add(rule.ToKeyspace, fmt.Sprintf("rules[%d].to_keyspace", i))
			if _, _, err := topo.ValidateShardName(rule.Shard); err != nil {
				v.errorf(Problem{Field: fmt.Sprintf("rules[%d].shard", i), Code: CodeRuleInvalid}, "bad shard name %q: %v", rule.Shard, err)
			}
		}
	case *vschemapb.KeyspaceRoutingRules:
		for i, rule := range r.Rules {
			add(rule.ToKeyspace, fmt.Sprintf("rules[%d].to_keyspace", i))
			if rule.FromKeyspace == "" {
				v.errorf(Problem{Field: fmt.Sprintf("rules[%d].from_keyspace", i), Code: CodeRuleInvalid}, "empty from_keyspace")
			}
		}
	default:
		return nil, fmt.Errorf("%w: rules of type %T", ErrBadRequest, rules)
	}
	for _, ks := range slices.Sorted(maps.Keys(targets)) {
		if err := ValidateKeyspaceName(ks); err != nil {
			for _, f := range targets[ks] {
				v.errorf(Problem{Field: f, Code: CodeBadName}, "%v", err)
			}
			continue
		}
		vs, exists, err := s.resolve(ctx, ks)
		if err != nil {
			return nil, err
		}
		if !exists {
			for _, f := range targets[ks] {
				v.errorf(Problem{Keyspace: ks, Field: f, Code: CodeMissingKeyspace}, "keyspace %q does not exist in the topology", ks)
			}
			continue
		}
		if vs == nil {
			vs = &vschemapb.Keyspace{}
		}
		srv.Keyspaces[ks] = vs
	}
	if !v.OK() {
		return v, nil
	}
	built := vindexes.BuildVSchema(srv, s.parser)
	for _, from := range slices.Sorted(maps.Keys(built.RoutingRules)) {
		if rr := built.RoutingRules[from]; rr != nil && rr.Error != nil {
			v.errorf(Problem{Field: "rules[from_table=" + from + "]", Code: CodeRuleInvalid}, "%s", vitessMessage(rr.Error))
		}
	}
	for _, from := range slices.Sorted(maps.Keys(built.MirrorRules)) {
		if mr := built.MirrorRules[from]; mr != nil && mr.Error != nil {
			v.errorf(Problem{Field: "rules[from_table=" + from + "]", Code: CodeRuleInvalid}, "%s", vitessMessage(mr.Error))
		}
	}
	return v, nil
}
