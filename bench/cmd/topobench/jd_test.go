package main

import (
	"strings"
	"testing"
)

func TestParseJDFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // error substring; "" for none
	}{
		{[]string{"--profile", "jd", "--out", "x"}, ""},
		{[]string{"--profile", "jd", "--scale", "0.02", "--out", "x"}, ""},
		{[]string{"--profile", "jd"}, "--out is required"},
		{[]string{"--profile", "jd", "--out", "x", "--scale", "0"}, "scale"},
		{[]string{"--profile", "jd", "--out", "x", "--topologies", "stock,zk"}, "unknown topology"},
		{[]string{"--profile", "jd", "--out", "x", "--restart-cell", "zone9"}, "not a cell"},
		{[]string{"--profile", "/nonexistent.json", "--out", "x"}, "no such file"},
	} {
		_, err := parseJDFlags(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one with %q", tc.args, err, tc.want)
		}
	}
	if !isJD([]string{"--profile=jd"}) || isJD([]string{"--watchers", "10"}) {
		t.Error("isJD")
	}
}
