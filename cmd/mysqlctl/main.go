// Command mysqlctl is Vitess 24's mysqlctl (vitess.io/vitess/go/cmd/mysqlctl/command,
// unchanged): it initializes, starts and stops a tablet's mysqld. It never
// opens the topology, so it links no topo plugin; it is built here so that
// bin/ and the images carry it from the same Vitess version as the
// vttablet it serves.
package main

import (
	"fmt"
	"os"

	"vitess.io/vitess/go/cmd/mysqlctl/command"
	"vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/utils"
)

func main() {
	command.Root.SetGlobalNormalizationFunc(utils.NormalizeUnderscoresToDashes)
	if err := command.Root.Execute(); err != nil {
		log.Error(fmt.Sprint(err))
		os.Exit(1)
	}
}
