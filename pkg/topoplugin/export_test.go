package topoplugin

import "github.com/topod-io/topod/pkg/vschemastore"

// Conn is the record-level access vschemad's store uses.
var _ vschemastore.RecordConn = (*Conn)(nil)

// SeenRevision is the highest revision the connection has written or read:
// what its reads ask topod for at least.
func (c *Conn) SeenRevision() int64 { return c.seen.Load() }
