package main

import (
	"net/http"

	"vitess.io/vitess/go/vt/servenv"
)

// As in stock vtorc: anything unrecognized is redirected to the status page.
func init() {
	servenv.HTTPHandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/debug/status", http.StatusFound)
	})
}
