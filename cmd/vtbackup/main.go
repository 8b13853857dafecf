// Command vtbackup is Vitess 24's vtbackup (vitess.io/vitess/go/cmd/vtbackup/cli,
// unchanged) with the topod topo plugin linked in, so that
// --topo-implementation topod works beside every implementation stock
// vtbackup has (etcd2, zk2, consul). vtbackup reads its shard's tablets and
// backups from the topology to take a backup without a serving tablet.
//
// Vitess 24 keeps the plugins of its mains in the cli package itself, so
// importing it links the same set stock vtbackup links; plugins.go adds
// topod.
package main

import (
	"fmt"

	"vitess.io/vitess/go/cmd/vtbackup/cli"
	"vitess.io/vitess/go/exit"
	"vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/utils"
)

func main() {
	defer exit.Recover()

	cli.Main.SetGlobalNormalizationFunc(utils.NormalizeUnderscoresToDashes)
	if err := cli.Main.Execute(); err != nil {
		log.Error(fmt.Sprint(err))
		exit.Return(1)
	}
}
