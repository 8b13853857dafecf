package toposerver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// listPaged answers a paged List, a page of at most MaxListPageBytes of
// paths and contents (and req.Limit files) at a time. The first page (no
// page token) is read as an unpaged List is: from the mirror once it has
// reached the backend's revision and min_revision, else from the backend;
// its revision is the listing's. Each later page holds the files after
// the previous page's last, at that same revision, so that the pages
// together are one snapshot whatever is written between them: from the
// mirror while it is still at exactly that revision, else from the
// backend's history (a range at a past revision). Once the backend no
// longer holds the revision (etcd compacted it; bolt keeps 20 versions of
// each key and 10,000 revisions of deleted keys) the page is refused with
// OutOfRange: the client lists again from the first page.
func (s *Server) listPaged(ctx context.Context, req *topodv1.ListRequest) (*topodv1.ListResponse, error) {
	if req.Limit < 0 {
		return nil, toStatus(invalid(fmt.Errorf("list %s: negative limit %d", req.Prefix, req.Limit)))
	}
	page := kvmirror.Page{Keys: int(min(req.Limit, math.MaxInt32)), Bytes: s.opts.MaxListPageBytes}
	end := kvmirror.PrefixEnd(req.Prefix)
	if end == "" {
		end = "\x00" // every key from the prefix on
	}
	var (
		kvs  []kv.KV
		rev  int64
		more bool
		err  error
	)
	if len(req.PageToken) == 0 {
		minRev := req.MinRevision
		if req.Linearizable {
			minRev = -1
		}
		if kvs, rev, more, err = s.firstPage(ctx, req.Prefix, end, minRev, page); err != nil {
			return nil, toStatus(err)
		}
		if len(kvs) == 0 {
			return nil, toStatus(fmt.Errorf("list %s: %w", req.Prefix, kv.ErrNotFound))
		}
	} else {
		var tok topodv1.ListPageToken
		if err := proto.Unmarshal(req.PageToken, &tok); err != nil || tok.Prefix != req.Prefix || !strings.HasPrefix(tok.After, req.Prefix) || tok.Revision <= 0 {
			return nil, toStatus(invalid(fmt.Errorf("list %s: page_token is not one of a listing of %s: pass the previous page's next_page_token unchanged", req.Prefix, req.Prefix)))
		}
		rev = tok.Revision
		if kvs, more, err = s.nextPage(ctx, req.Prefix, tok.After, end, rev, page); err != nil {
			return nil, err
		}
	}
	resp := listResponse(kvs, rev)
	if more {
		tok, err := proto.Marshal(&topodv1.ListPageToken{Prefix: req.Prefix, After: kvs[len(kvs)-1].Key, Revision: rev})
		if err != nil {
			return nil, toStatus(err)
		}
		resp.NextPageToken = tok
	}
	return resp, nil
}

// firstPage reads the first page of [prefix, end) as list does, and the
// revision it reflects.
func (s *Server) firstPage(ctx context.Context, prefix, end string, minRev int64, page kvmirror.Page) ([]kv.KV, int64, bool, error) {
	if m := s.mirrorFor(prefix); m != nil && minRev >= 0 {
		kvs, rev, more, ok, err := m.RangePage(ctx, prefix, end, s.consistentRev(ctx, m, minRev), 0, page)
		if err != nil {
			return nil, 0, false, fmt.Errorf("list %s: %w", prefix, err)
		}
		// A page emptied by keys deleted while their values were read
		// (the mirror over its memory bound) has no last key to go on
		// from: the backend answers it.
		ok = ok && (len(kvs) > 0 || !more)
		s.metrics.cacheRead("list", ok)
		if ok {
			return kvs, rev, more, nil
		}
	}
	all, rev, err := s.backend.List(ctx, prefix, false)
	if err != nil {
		return nil, 0, false, err
	}
	kvs, more := page.Cut(all)
	return kvs, rev, more, nil
}

// nextPage reads the page of the keys of (after, end) at revision rev, of
// a listing of prefix. It returns a status.
func (s *Server) nextPage(ctx context.Context, prefix, after, end string, rev int64, page kvmirror.Page) ([]kv.KV, bool, error) {
	from := after + "\x00" // the first key after it
	if m := s.mirrorFor(prefix); m != nil {
		kvs, _, more, ok, err := m.RangePage(ctx, from, end, 0, rev, page)
		if err != nil {
			return nil, false, toStatus(fmt.Errorf("list after %s: %w", after, err))
		}
		ok = ok && (len(kvs) > 0 || !more)
		s.metrics.cacheRead("list", ok)
		if ok {
			return kvs, more, nil
		}
	}
	res, err := s.backend.Txn(ctx, kv.Txn{Success: []kv.Op{{Type: kv.OpRange, Key: from, End: end, Rev: rev}}})
	switch {
	case errors.Is(err, kv.ErrCompacted), errors.Is(err, kv.ErrFutureRevision):
		return nil, false, status.Errorf(codes.OutOfRange, "list: the page after %s at revision %d: the store does not hold that revision any more (%v); list again from the first page", after, rev, err)
	case err != nil:
		return nil, false, toStatus(err)
	}
	kvs, more := page.Cut(res.Responses[0].Range)
	return kvs, more, nil
}
