package boltkv

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/topod-io/topod/pkg/kv"
)

func init() {
	kv.Register("bolt", "bolt:///path/to/topo.db", openURL)
}

// openURL opens bolt:///absolute/path.db or bolt://relative/path.db.
func openURL(_ context.Context, rawURL, _ string, opts kv.OpenOptions) (kv.Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", rawURL, err)
	}
	p := u.Path
	if u.Host != "" {
		p = filepath.Join(u.Host, u.Path)
	}
	if p == "" {
		return nil, fmt.Errorf("backend %q: no bolt file path", rawURL)
	}
	return Open(p, Options{ReadOnly: opts.ReadOnly})
}
