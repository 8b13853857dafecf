package toposerver_test

import (
	"context"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// watchOne opens a WatchStream carrying one watch (id 1) of p. recv returns
// the watch's next message; when topod ends the watch, its status (io.EOF
// for an end with OK). The stream ends with ctx.
func watchOne(ctx context.Context, client topodv1.TopoClient, p string, recursive bool, after int64) (recv func() (*topodv1.WatchResponse, error), err error) {
	stream, err := client.WatchStream(ctx)
	if err != nil {
		return nil, err
	}
	create := &topodv1.WatchCreate{WatchId: 1, Path: p, Recursive: recursive, AfterRevision: after}
	if err := stream.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: create}}); err != nil {
		return nil, err
	}
	var pending []*topodv1.WatchUpdate
	return func() (*topodv1.WatchResponse, error) {
		for len(pending) == 0 {
			msg, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			pending = msg.Updates
		}
		u := pending[0]
		pending = pending[1:]
		switch {
		case u.Response != nil:
			if u.Ended {
				// Its last message; the end comes with the next call.
				pending = append([]*topodv1.WatchUpdate{{WatchId: u.WatchId, Ended: true, Code: u.Code, Error: u.Error}}, pending...)
			}
			return u.Response, nil
		case u.Code != int32(codes.OK):
			return nil, status.Error(codes.Code(u.Code), u.Error)
		default:
			return nil, io.EOF
		}
	}, nil
}
