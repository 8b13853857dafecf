package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/topod-io/topod/internal/jd"
)

// stockHeadroom is left under etcd's request limit when sizing the
// side-by-side SrvVSchema: the request's envelope and the columns the
// changes add must fit too.
const stockHeadroom = 8 << 10

// stockProbeRoot is where the size search writes, removed afterwards.
const stockProbeRoot = "/etcd2probe"

// stockKeyspaces returns the number of keyspaces of the side-by-side
// SrvVSchema, and a note saying how it was chosen: --stock-keyspaces, or the
// largest JD-profile size whose SrvVSchema stock etcd2 stores under etcd's
// default request limit, found by searching the marshalled sizes and
// confirmed by writing it through etcd2topo.
func (e *env) stockKeyspaces(ctx context.Context, stock *etcd2Side) (int, string, error) {
	if n := e.cfg.StockKeyspaces; n > 0 {
		return n, fmt.Sprintf("side-by-side SrvVSchema: JD profile sized to %d keyspaces (--stock-keyspaces)", n), nil
	}
	conn, err := stock.dial(stockProbeRoot)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	defer e.etcd.deletePrefix(ctx, stockProbeRoot+"/") //nolint:errcheck // best effort

	limit := int(embed.DefaultMaxRequestBytes)
	budget := limit - stockHeadroom
	sizes := map[int][]byte{}
	file := func(n int) ([]byte, error) {
		if b, ok := sizes[n]; ok {
			return b, nil
		}
		b, err := marshal(jd.JD().Sized(n).SrvVSchema())
		if err != nil {
			return nil, err
		}
		sizes[n] = b
		return b, nil
	}
	fits := func(n int) (bool, error) {
		b, err := file(n)
		return err == nil && len(b) <= budget, err
	}

	// Binary search for where the size crosses the budget. Sizes grow with
	// the keyspaces only roughly (table counts are drawn per profile), so
	// then look a little past the crossing for the largest fitting size.
	lo, hi := 1, jd.JD().Keyspaces
	if ok, err := fits(lo); err != nil || !ok {
		return 0, "", errors.Join(err, fmt.Errorf("a 1-keyspace SrvVSchema is over %d bytes", budget))
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		ok, err := fits(mid)
		if err != nil {
			return 0, "", err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	best := lo
	for n := min(hi+32, jd.JD().Keyspaces); n > lo; n-- {
		ok, err := fits(n)
		if err != nil {
			return 0, "", err
		}
		if ok {
			best = n
			break
		}
	}
	// Confirm by writing it, as etcd2topo writes a SrvVSchema.
	for ; best > 0; best-- {
		b, err := file(best)
		if err != nil {
			return 0, "", err
		}
		if _, err = conn.Update(ctx, srvVSchemaFile, b, nil); err == nil {
			break
		}
		if !tooLarge(err) {
			return 0, "", fmt.Errorf("write a %d-byte SrvVSchema through etcd2topo: %w", len(b), err)
		}
	}
	if best == 0 {
		return 0, "", errors.New("etcd2topo stores no JD-profile SrvVSchema")
	}
	note := fmt.Sprintf("side-by-side SrvVSchema: JD profile sized to %d keyspaces, %s: the largest size found that stock etcd2 stores under etcd's %s request limit (%s spare for the changes); written through etcd2topo",
		best, fmtBytes(float64(len(sizes[best]))), fmtBytes(float64(limit)), fmtBytes(stockHeadroom))
	if n := e.cfg.JDKeyspaces; n > 0 {
		b, err := marshal(jdProfile(n).SrvVSchema())
		if err != nil {
			return 0, "", err
		}
		_, err = conn.Update(ctx, srvVSchemaFile, b, nil)
		switch {
		case err == nil:
			note += fmt.Sprintf("; the %d-keyspace one (%s) was stored too", n, fmtBytes(float64(len(b))))
		default:
			note += fmt.Sprintf("; the %d-keyspace one (%s) is refused: %v", n, fmtBytes(float64(len(b))), oneLine(err))
		}
	}
	return best, note, nil
}

// tooLarge reports whether err is etcd (server or client) refusing a
// request for its size.
func tooLarge(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "request is too large") || strings.Contains(msg, "larger than max")
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
