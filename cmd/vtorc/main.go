// Command vtorc is Vitess 24's VTOrc (vitess.io/vitess/go/cmd/vtorc/cli,
// unchanged) with the topod topo plugin linked in, so that
// --topo-implementation topod works beside every implementation stock VTOrc
// has (etcd2, zk2, consul). VTOrc reads every keyspace, shard and tablet of
// the topology on each refresh and takes shard locks to repair them.
//
// Vitess 24 keeps the plugins of its mains in the cli package itself, so
// importing it links the same set stock vtorc links; plugins.go adds topod.
package main

import (
	"fmt"
	"os"

	"vitess.io/vitess/go/cmd/vtorc/cli"
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
