// Package vtadminweb tests VTAdmin's web UI, as `make demo` serves it, in a
// real browser: Debian's chromium, headless, driven over the DevTools
// protocol (chromedp). `make test-browser` starts the demo and runs it;
// without VTADMIN_WEB_URL the test is skipped.
package vtadminweb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"k8s.io/apimachinery/pkg/util/wait"
)

// cluster is the demo's cluster in VTAdmin (cmd/topod-demo).
const cluster = "local"

// TestVTAdminWeb opens the pages of VTAdmin's web UI against the demo (2,001
// keyspaces: commerce on four tablets, 2,000 vschema-only) and checks what
// they show:
//
//   - the keyspaces page lists every keyspace (its count, its first page
//     and its last page), and how long it takes to show them;
//   - commerce's shards page shows -80 and 80-, each SERVING with a primary
//     and a replica;
//   - the tablets page shows commerce's four tablets SERVING;
//   - the schema page of commerce's table customer shows its vindex;
//   - the topology browser opens the global Keyspace record of commerce,
//     and the cell's SrvVSchema path.
//
// VTADMIN_WEB_URL is vtadmin-web's address (http://127.0.0.1:14201);
// VTADMIN_KEYSPACES the number of keyspaces (2001); VTADMIN_SCREENSHOTS, if
// set, a directory to write a PNG of each page into; CHROMIUM the browser
// (chromium on PATH).
func TestVTAdminWeb(t *testing.T) {
	web := strings.TrimSuffix(os.Getenv("VTADMIN_WEB_URL"), "/")
	if web == "" {
		t.Skip("VTADMIN_WEB_URL is not set: `make test-browser` runs this test against `make demo`")
	}
	want := 2001
	if n := os.Getenv("VTADMIN_KEYSPACES"); n != "" {
		if _, err := fmt.Sscan(n, &want); err != nil {
			t.Fatalf("VTADMIN_KEYSPACES=%q: %v", n, err)
		}
	}
	shots := os.Getenv("VTADMIN_SCREENSHOTS")
	if shots != "" {
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t)
	b.web, b.shots = web, shots

	t.Run("keyspaces", func(t *testing.T) {
		b.t = t
		// The first load and a second one: vtadmin-api caches no keyspace,
		// each load reads all of them through vtctld.
		for i, name := range []string{"first", "second"} {
			start := time.Now()
			b.navigate("/keyspaces")
			b.waitText(fmt.Sprintf("of %d", want), time.Minute)
			took := time.Since(start)
			api := b.resourceTiming("/api/keyspaces")
			t.Logf("keyspaces page, %s load: %d keyspaces shown %v after navigating (GET /api/keyspaces took %s)",
				name, want, took.Round(time.Millisecond), api)
			if i == 0 {
				b.screenshot("vtadmin-keyspaces.png")
			}
		}
		rows := b.column(0)
		if len(rows) != 50 || !strings.HasPrefix(rows[0], "commerce") {
			t.Errorf("first page: %d rows from %q, want 50 from commerce", len(rows), first(rows))
		}
		last := (want + 49) / 50
		b.navigate(fmt.Sprintf("/keyspaces?page=%d", last))
		b.waitText(fmt.Sprintf("of %d", want), time.Minute)
		rows = b.column(0)
		lastName := fmt.Sprintf("ks%04d", want-1)
		if len(rows) == 0 || !strings.HasPrefix(rows[len(rows)-1], lastName) {
			t.Errorf("last page (%d): rows %q, want the last one %s", last, rows, lastName)
		}
	})

	t.Run("commerce shards", func(t *testing.T) {
		b.t = t
		b.navigate("/keyspace/" + cluster + "/commerce/shards")
		b.waitText("commerce/80-", time.Minute)
		b.waitText("PRIMARY", time.Minute)
		b.screenshot("vtadmin-commerce-shards.png")
		rows := b.rows()
		if len(rows) != 2 {
			t.Fatalf("shards: %q, want -80 and 80-", rows)
		}
		for i, shard := range []string{"commerce/-80", "commerce/80-"} {
			r := rows[i]
			if len(r) < 3 || r[0] != shard || !strings.Contains(r[1], "SERVING") || strings.Contains(r[1], "NOT SERVING") ||
				!strings.Contains(r[2], "1 PRIMARY") || !strings.Contains(r[2], "1 REPLICA") {
				t.Errorf("shard row %d: %q, want %s SERVING with 1 PRIMARY and 1 REPLICA", i, r, shard)
			}
		}
	})

	t.Run("commerce tablets", func(t *testing.T) {
		b.t = t
		b.navigate("/tablets?filter=commerce")
		b.waitText("zone1-201", time.Minute)
		b.screenshot("vtadmin-commerce-tablets.png")
		serving := 0
		for _, r := range b.rows() {
			// Keyspace, Shard, Alias, Type, Tablet State, Hostname.
			if len(r) >= 5 && strings.HasPrefix(r[0], "commerce") && strings.TrimSpace(r[4]) == "SERVING" {
				serving++
			}
		}
		if serving != 4 {
			t.Errorf("%d SERVING tablets of commerce, want 4: %q", serving, b.rows())
		}
	})

	t.Run("customer vindex", func(t *testing.T) {
		b.t = t
		b.navigate("/schema/" + cluster + "/commerce/customer")
		b.waitText("Vindexes", time.Minute)
		b.screenshot("vtadmin-customer-schema.png")
		var vindexes [][]string
		b.eval(`[...document.querySelectorAll('section')].filter(s => s.querySelector('h3')?.textContent === 'Vindexes')
			.flatMap(s => [...s.querySelectorAll('tbody tr')].map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim())))`, &vindexes)
		// Vindex (Primary), Columns, Type.
		if len(vindexes) != 1 || !strings.HasPrefix(vindexes[0][0], "hash") || vindexes[0][1] != "customer_id" || vindexes[0][2] != "hash" {
			t.Errorf("customer's vindexes: %q, want hash on customer_id", vindexes)
		}
	})

	t.Run("topology", func(t *testing.T) {
		b.t = t
		b.navigate("/topologytree/" + cluster)
		for _, node := range []string{"global", "keyspaces", "commerce", "Keyspace"} {
			b.openNode(node)
		}
		// The Keyspace record, as vtctld's GetTopologyPath decodes it (text
		// format, whose spacing varies from build to build).
		b.waitMatch(`durability_policy:\s*"none"`, time.Minute)
		b.screenshot("vtadmin-topology-keyspace.png")

		b.openNode("zone1")
		b.openNode("SrvVSchema")
		// The cell's SrvVSchema: vtctld's GetTopologyPath returns the file
		// decoded to text, 32.6 MB at 2,001 keyspaces, over the 16 MiB a
		// stock vtadmin-api takes in one gRPC message; the demo's vtctld
		// and vtadmin (cmd/vtadmin) take up to vtlocal.GRPCMaxMessageSize.
		var res struct {
			Ok     bool
			Result struct{ Cell struct{ Data string } }
			Error  struct{ Message string }
		}
		start := time.Now()
		b.fetchAPI("/api/cluster/"+cluster+"/topology?path=/zone1/SrvVSchema", &res)
		if !res.Ok {
			t.Fatalf("the SrvVSchema of zone1 does not open: vtadmin-api: %s", res.Error.Message)
		}
		b.waitMatch(`key:\s*"commerce"`, 2*time.Minute)
		t.Logf("the SrvVSchema of zone1 opens: %d bytes of text, shown %v after asking", len(res.Result.Cell.Data), time.Since(start).Round(time.Millisecond))
		b.eval(`[...document.querySelectorAll('div.cursor-pointer')].find(d => d.textContent.trim() === '▼ zone1')?.scrollIntoView() ?? true`, new(any))
		b.screenshot("vtadmin-topology-srvvschema.png")
	})
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// browser is a headless chromium and its one tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	web   string
	shots string
}

func newBrowser(t *testing.T) *browser {
	path := os.Getenv("CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Fatalf("no chromium (`make test-browser` installs Debian's): %v", err)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1400, 1000))
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses root.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first run starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return &browser{t: t, ctx: ctx}
}

// run runs a in b's tab, failing the test on an error.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (b *browser) navigate(path string) {
	b.t.Helper()
	run(b, "open "+b.web+path, chromedp.Navigate(b.web+path))
}

// eval evaluates js in the page into res (decoded from JSON).
func (b *browser) eval(js string, res any) {
	b.t.Helper()
	raw := run(b, "evaluate "+js, chromedp.Evaluate[json.RawMessage](js))
	if err := json.Unmarshal(raw, res); err != nil {
		b.t.Fatalf("evaluate %s: %v: %.300s", js, err, raw)
	}
}

// waitText waits until the page's text has s.
func (b *browser) waitText(s string, timeout time.Duration) {
	b.t.Helper()
	b.waitMatch(regexp.QuoteMeta(s), timeout)
}

// waitMatch waits until the page's text matches the regular expression re
// (JavaScript's syntax; Go's for what waitText quotes).
func (b *browser) waitMatch(re string, timeout time.Duration) {
	b.t.Helper()
	q, _ := json.Marshal(re)
	if !b.poll(timeout, func() bool {
		var ok bool
		b.eval(fmt.Sprintf("new RegExp(%s).test(document.body.innerText)", q), &ok)
		return ok
	}) {
		var text string
		b.eval("document.body.innerText", &text)
		b.t.Fatalf("%s: no %q after %v; the page says:\n%.2000s", b.location(), re, timeout, text)
	}
}

// poll asks cond every 50 ms until it holds (true) or timeout passes
// (false).
func (b *browser) poll(timeout time.Duration, cond func() bool) bool {
	return wait.PollUntilContextTimeout(b.ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	}) == nil
}

func (b *browser) location() string {
	var l string
	b.eval("location.href", &l)
	return l
}

// rows returns the cells' text of the rows of the page's first table body.
func (b *browser) rows() [][]string {
	b.t.Helper()
	var rows [][]string
	b.eval(`[...(document.querySelector('table tbody')?.rows ?? [])].map(tr => [...tr.cells].map(td => td.innerText.trim()))`, &rows)
	return rows
}

// column returns column i of rows.
func (b *browser) column(i int) []string {
	var col []string
	for _, r := range b.rows() {
		if i < len(r) {
			col = append(col, r[i])
		}
	}
	return col
}

// openNode clicks the closed node named name of the topology tree and
// waits until it is open.
func (b *browser) openNode(name string) {
	b.t.Helper()
	title, _ := json.Marshal("► " + name)
	if !b.poll(time.Minute, func() bool {
		var clicked bool
		b.eval(fmt.Sprintf(`(() => {
			const n = [...document.querySelectorAll('div.cursor-pointer')].find(d => d.textContent.trim() === %s);
			if (!n) return false;
			n.click();
			return true;
		})()`, title), &clicked)
		return clicked
	}) {
		b.t.Fatalf("topology: no node %s to open", title)
	}
	b.waitText("▼ "+name, time.Minute)
}

// resourceTiming describes the page's last request whose URL has part.
func (b *browser) resourceTiming(part string) string {
	b.t.Helper()
	q, _ := json.Marshal(part)
	// vtadmin-api is another origin and sends no Timing-Allow-Origin: the
	// browser gives the request's duration, not its size.
	var ms float64
	b.eval(fmt.Sprintf(`performance.getEntriesByType('resource').filter(e => e.name.includes(%s)).pop()?.duration ?? -1`, q), &ms)
	if ms < 0 {
		return "not requested"
	}
	return (time.Duration(ms * float64(time.Millisecond))).Round(time.Millisecond).String()
}

// fetchAPI fetches path from vtadmin-api, from the page (the address the
// page's configuration names), into res.
func (b *browser) fetchAPI(path string, res any) {
	b.t.Helper()
	q, _ := json.Marshal(path)
	body := run(b, "fetch "+path, chromedp.Evaluate[string](
		fmt.Sprintf(`fetch(window.env.VITE_VTADMIN_API_ADDRESS + %s).then(r => r.text())`, q), chromedp.EvalAwaitPromise))
	if err := json.Unmarshal([]byte(body), res); err != nil {
		b.t.Fatalf("GET %s: %v: %.500s", path, err, body)
	}
}

// screenshot writes a PNG of the page into the screenshot directory, if
// there is one, once the page has loaded what it asked for.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	if !b.poll(time.Minute, func() bool {
		var loading bool
		b.eval(`document.body.innerText.includes("Loading...")`, &loading)
		return !loading
	}) {
		b.t.Fatalf("%s: still loading after a minute", b.location())
	}
	png := run(b, "screenshot", chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(b.shots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
