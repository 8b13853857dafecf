package kvmirror

import "strings"

// subSet is a set of subscriptions.
type subSet map[*Subscription]struct{}

// watcherGroup indexes a mirror's subscriptions by what they watch, so that
// a changed key reaches only its own watchers (as etcd's watcherGroup does
// with a key map and an interval tree): exact keys in a map; directory
// prefixes (ending in '/', what every recursive topo watch is) in a map
// probed with each '/'-ancestor of the changed key, so finding them costs
// the depth of the key, not the number of watchers; any other prefix in a
// set scanned per change (topod never makes one: it is there for
// completeness of Subscribe's contract).
type watcherGroup struct {
	keys  map[string]subSet
	dirs  map[string]subSet
	other subSet
	n     int
}

func newWatcherGroup() watcherGroup {
	return watcherGroup{keys: map[string]subSet{}, dirs: map[string]subSet{}, other: subSet{}}
}

// index returns the map a subscription belongs in, nil for the scanned set.
func (g *watcherGroup) index(s *Subscription) map[string]subSet {
	switch {
	case !s.prefix:
		return g.keys
	case strings.HasSuffix(s.key, "/"):
		return g.dirs
	}
	return nil
}

func (g *watcherGroup) add(s *Subscription) {
	g.n++
	idx := g.index(s)
	if idx == nil {
		g.other[s] = struct{}{}
		return
	}
	set := idx[s.key]
	if set == nil {
		set = subSet{}
		idx[s.key] = set
	}
	set[s] = struct{}{}
}

// remove takes s out; it reports whether s was there.
func (g *watcherGroup) remove(s *Subscription) bool {
	idx := g.index(s)
	if idx == nil {
		if _, ok := g.other[s]; !ok {
			return false
		}
		delete(g.other, s)
		g.n--
		return true
	}
	set := idx[s.key]
	if _, ok := set[s]; !ok {
		return false
	}
	delete(set, s)
	if len(set) == 0 {
		delete(idx, s.key)
	}
	g.n--
	return true
}

// each calls fn with every subscription watching key.
func (g *watcherGroup) each(key string, fn func(*Subscription)) {
	for s := range g.keys[key] {
		fn(s)
	}
	if len(g.dirs) > 0 {
		for i := 0; i < len(key); i++ {
			if key[i] == '/' {
				for s := range g.dirs[key[:i+1]] {
					fn(s)
				}
			}
		}
	}
	for s := range g.other {
		if strings.HasPrefix(key, s.key) {
			fn(s)
		}
	}
}

// all calls fn with every subscription.
func (g *watcherGroup) all(fn func(*Subscription)) {
	for _, idx := range []map[string]subSet{g.keys, g.dirs} {
		for _, set := range idx {
			for s := range set {
				fn(s)
			}
		}
	}
	for s := range g.other {
		fn(s)
	}
}
