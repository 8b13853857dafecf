// Command vttablet is Vitess 24's vttablet (vitess.io/vitess/go/cmd/vttablet/cli,
// unchanged) with the topod topo plugin linked in, so that
// --topo-implementation topod works beside every implementation stock
// vttablet has (etcd2, zk2, consul): one binary serves both sides of a
// migration from etcd2 to topod.
//
// Vitess 24 keeps the plugins of its mains (topo implementations, gRPC
// services and the rest) in the cli package itself, so importing it links
// the same set stock vttablet links; plugins.go adds topod.
package main

import (
	"fmt"
	"os"

	"vitess.io/vitess/go/cmd/vttablet/cli"
	"vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/utils"
)

func main() {
	cli.Main.SetGlobalNormalizationFunc(utils.NormalizeUnderscoresToDashes)
	if err := cli.Main.Execute(); err != nil {
		log.Error(fmt.Sprint(err))
		os.Exit(1)
	}
}
