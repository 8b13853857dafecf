package main

// Stock vtbackup links its plugins through its cli package; this adds the
// topod topo plugin (--topo-implementation topod).
import _ "github.com/topod-io/topod/pkg/topoplugin"
