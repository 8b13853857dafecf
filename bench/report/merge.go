package report

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Merge returns one run made of runs: separate invocations of the same
// profile and settings, each with topologies of its own, in order. Every
// topology already ran on its own fresh servers, so a run per topology
// measures what one run of them all does, with a fresh driver process
// each. The merged run's checks are left to the caller (they are computed
// from the topologies); its notes and machine loads are every run's.
func Merge(runs ...*Run) (*Run, error) {
	if len(runs) == 0 {
		return nil, errors.New("report: merge: no run")
	}
	first := runs[0]
	out := *first
	out.Topologies = nil
	out.Notes = nil
	out.Checks = nil
	out.Seconds = 0
	var loads []string
	seen := map[string]bool{}
	for i, r := range runs {
		if r.Profile != first.Profile {
			return nil, fmt.Errorf("report: merge: run %d is of profile %+v, run 0 of %+v", i, r.Profile, first.Profile)
		}
		// Which topologies and scenarios a run had is not a setting the
		// figures depend on: each topology lists its own.
		if a, b := settingsBut(r.Settings, "topologies", "scenarios"), settingsBut(first.Settings, "topologies", "scenarios"); !slices.Equal(a, b) {
			return nil, fmt.Errorf("report: merge: run %d has settings %v, run 0 %v", i, a, b)
		}
		for _, t := range r.Topologies {
			if seen[t.Name] {
				return nil, fmt.Errorf("report: merge: topology %q is in more than one run", t.Name)
			}
			seen[t.Name] = true
			out.Topologies = append(out.Topologies, t)
		}
		for _, n := range r.Notes {
			if !slices.Contains(out.Notes, n) {
				out.Notes = append(out.Notes, n)
			}
		}
		if r.Started.Before(out.Started) {
			out.Started = r.Started
		}
		if r.Finished.After(out.Finished) {
			out.Finished = r.Finished
		}
		out.Seconds += r.Seconds
		out.Machine.DriverPeak = max(out.Machine.DriverPeak, r.Machine.DriverPeak)
		loads = append(loads, fmt.Sprintf("%s / %s", r.Machine.LoadBefore, r.Machine.LoadAfter))
	}
	if len(runs) > 1 {
		out.Machine.LoadBefore = first.Machine.LoadBefore
		out.Machine.LoadAfter = runs[len(runs)-1].Machine.LoadAfter
		out.Notes = append(out.Notes, fmt.Sprintf("merged from %d runs, one after the other (load average before / after each: %s); seconds are their sum", len(runs), strings.Join(loads, "; ")))
	}
	var names []string
	for _, r := range runs {
		for _, s := range r.Settings {
			if s.Name == "topologies" {
				names = append(names, s.Value)
			}
		}
	}
	out.Settings = settingsBut(first.Settings, "scenarios")
	for i := range out.Settings {
		if out.Settings[i].Name == "topologies" {
			out.Settings[i].Value = strings.Join(names, ",")
		}
	}
	return &out, nil
}

func settingsBut(ss []Setting, skip ...string) []Setting {
	return slices.DeleteFunc(slices.Clone(ss), func(s Setting) bool { return slices.Contains(skip, s.Name) })
}
