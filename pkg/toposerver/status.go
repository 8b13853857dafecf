package toposerver

import (
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DebugHandler serves /metrics (Prometheus) and /debug/status (a plain-text
// page of mirrors, their watchers, and caches).
func (s *Server) DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/status", s.serveStatus)
	return mux
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "topod\n\nopen streams: %d\n\n", s.ActiveStreams())
	fmt.Fprintln(tw, "mirrored prefix\tready\tserving reads\tkeys\tbytes\tmax bytes\tvalues not held\trevision\twatchers")
	for _, m := range s.mirrors {
		st := m.Stats()
		fmt.Fprintf(tw, "%s\t%v\t%v\t%d\t%d\t%d\t%d\t%d\t%d\n", st.Prefix, st.Ready, st.Serving, st.Keys, st.Bytes, st.MaxBytes, st.EvictedValues, st.Revision, st.Subscriptions)
	}
	bs := s.cache.Stats()
	fmt.Fprintf(tw, "\nblob cache\t%d entries\t%d bytes\thits %d\tmisses %d\tevictions %d\n", bs.Entries, bs.Bytes, bs.Hits, bs.Misses, bs.Evictions)
	tw.Flush()
}
