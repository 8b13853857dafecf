package topoplugin

// SeenRevision is the highest revision the connection has written or read:
// what its reads ask topod for at least.
func (c *Conn) SeenRevision() int64 { return c.seen.Load() }
