// Command mysqlctld is Vitess 24's mysqlctld (vitess.io/vitess/go/cmd/mysqlctld/cli,
// unchanged): the daemon that starts or initializes a tablet's mysqld and
// lets vttablet stop and start it over gRPC from another container. It
// never opens the topology, so it links no topo plugin; it is built here so
// that bin/ and the images carry it from the same Vitess version as the
// vttablet it serves.
package main

import (
	"fmt"
	"os"

	"vitess.io/vitess/go/cmd/mysqlctld/cli"
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
