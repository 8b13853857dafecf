// Package topoerr is the error contract between topod (pkg/toposerver) and
// its Vitess plugin (pkg/topoplugin): which gRPC status code carries each
// kind of Vitess topo error (topo.ErrorCode) over the wire, and which kind
// the plugin makes of each code it receives.
//
// One table (wire) holds the contract. The server builds statuses from a
// kind with Status and Errorf; the plugin turns what it receives back into
// an *Error with FromError. An *Error is the Vitess topo error of its kind
// where the code maps to one (topo.IsErrType works), and it keeps the
// status (status.Code, status.FromError and errors.As see topod's code and
// message) and the error it was made from (errors.Is(err,
// context.Canceled) works).
//
// Kinds Vitess only uses inside a process (PartialResult, NoUpdateNeeded,
// NoReadOnlyImplementation) have no code: topod never sends them. Codes
// that are no topo kind (INVALID_ARGUMENT, PERMISSION_DENIED, OUT_OF_RANGE,
// DATA_LOSS, ...) reach Vitess as an *Error that is no topo.Error, with its
// code. A record that refers to a blob that is not stored is
// FAILED_PRECONDITION, as NodeNotEmpty is, told apart by an ErrorInfo detail
// with reason BlobNotStoredReason: it is no topo error (see BlobNotStored).
package topoerr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"
)

// wire is the contract: each topo error kind topod sends and the code that
// carries it. A kind appears once, a code once.
var wire = []struct {
	kind topo.ErrorCode
	code codes.Code
}{
	{topo.NodeExists, codes.AlreadyExists},
	{topo.NoNode, codes.NotFound},
	// gRPC's own example of FAILED_PRECONDITION is a directory to delete
	// that is not empty.
	{topo.NodeNotEmpty, codes.FailedPrecondition},
	{topo.Timeout, codes.DeadlineExceeded},
	{topo.Interrupted, codes.Canceled},
	{topo.BadVersion, codes.Aborted},
	{topo.NoImplementation, codes.Unimplemented},
	{topo.ResourceExhausted, codes.ResourceExhausted},
}

// received are the codes the plugin reads as a kind besides those of wire:
// an unreachable topod (UNAVAILABLE) is a timeout to Vitess, as an
// unreachable etcd is with etcd2topo.
var received = map[codes.Code]topo.ErrorCode{
	codes.Unavailable: topo.Timeout,
}

// Kinds are every topo.ErrorCode of the Vitess this module builds with, in
// their order; the package's tests check that the one after the last is
// unknown to Vitess, so a kind added by a Vitess upgrade is noticed.
var Kinds = []topo.ErrorCode{
	topo.NodeExists,
	topo.NoNode,
	topo.NodeNotEmpty,
	topo.Timeout,
	topo.Interrupted,
	topo.BadVersion,
	topo.PartialResult,
	topo.NoUpdateNeeded,
	topo.NoImplementation,
	topo.NoReadOnlyImplementation,
	topo.ResourceExhausted,
}

// Code is the gRPC code that carries kind from topod to the plugin; ok is
// false for a kind topod never sends.
func Code(kind topo.ErrorCode) (code codes.Code, ok bool) {
	for _, w := range wire {
		if w.kind == kind {
			return w.code, true
		}
	}
	return codes.Unknown, false
}

// Kind is the topo error kind the plugin makes of a status with code; ok is
// false for a code that is no topo error.
func Kind(code codes.Code) (kind topo.ErrorCode, ok bool) {
	for _, w := range wire {
		if w.code == code {
			return w.kind, true
		}
	}
	kind, ok = received[code]
	return kind, ok
}

// Status is err as the status carrying kind: its message is err's. A kind
// topod never sends (see Code) is UNKNOWN.
func Status(kind topo.ErrorCode, err error) error {
	code, _ := Code(kind)
	return status.Error(code, err.Error())
}

// Errorf is the status carrying kind with a formatted message.
func Errorf(kind topo.ErrorCode, format string, args ...any) error {
	return Status(kind, fmt.Errorf(format, args...))
}

// Domain and BlobNotStoredReason name the ErrorInfo detail of the status
// BlobNotStored builds.
const (
	Domain              = "topod.io"
	BlobNotStoredReason = "BLOB_NOT_STORED"
)

// BlobNotStored is topod's answer to a write whose record refers to a blob
// that is not stored (blobs are uploaded before the record):
// FAILED_PRECONDITION with an ErrorInfo detail of reason
// BlobNotStoredReason, which the plugin does not read as NodeNotEmpty. The
// writer uploads the blob and writes again.
func BlobNotStored(format string, args ...any) error {
	st := status.Newf(codes.FailedPrecondition, format, args...)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: BlobNotStoredReason, Domain: Domain})
	if err != nil {
		// Only a detail that does not marshal fails; ErrorInfo does.
		panic(fmt.Sprintf("topoerr: ErrorInfo detail: %v", err))
	}
	return withInfo.Err()
}

// IsBlobNotStored reports whether err is, or wraps, the status
// BlobNotStored builds.
func IsBlobNotStored(err error) bool {
	return reason(err) == BlobNotStoredReason
}

// reason is the reason of the topod ErrorInfo detail of err's status, or "".
func reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == Domain {
			return info.Reason
		}
	}
	return ""
}

// Error is an error of a request to topod as the plugin returns it to
// Vitess: the topo error of its kind where it has one, the gRPC status, and
// the error it was made from.
type Error struct {
	// Node is the path the request was about.
	Node string
	// topo is topo.NewError(kind, Node), or nil for a status that is no
	// topo error.
	topo error
	st   *status.Status
	// cause is the error FromError was given.
	cause error
}

// FromError is err (a gRPC status, or a context error, or wrapping one) as
// the plugin returns it, about node: an *Error. A context error is the
// status of the same code (Canceled is Interrupted, DeadlineExceeded is
// Timeout). Any other error is returned as is.
func FromError(err error, node string) error {
	if err == nil {
		return nil
	}
	var st *status.Status
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Checked first: a gRPC call ended by its context returns a
		// status of the same code, but a context error of the plugin's
		// own (waiting for a lock, say) is no status.
		if errors.Is(err, context.Canceled) {
			st = status.New(codes.Canceled, err.Error())
		} else {
			st = status.New(codes.DeadlineExceeded, err.Error())
		}
	default:
		var ok bool
		if st, ok = status.FromError(err); !ok {
			return err
		}
	}
	e := &Error{Node: node, st: st, cause: err}
	if kind, ok := Kind(st.Code()); ok && reason(err) == "" {
		e.topo = topo.NewError(kind, node)
	}
	return e
}

// Error is the topo error's message (what Vitess matches, e.g. "node
// doesn't exist: <node>") and topod's, or for a status that is no topo
// error the node, the code and topod's message.
func (e *Error) Error() string {
	if e.topo != nil {
		return fmt.Sprintf("%v (topod: %s)", e.topo, e.st.Message())
	}
	return fmt.Sprintf("topod %s: %v: %s", e.Node, e.st.Code(), e.st.Message())
}

// GRPCStatus is the status topod answered (status.Code and
// status.FromError read it).
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Unwrap is the topo error (when there is one) and the error FromError was
// given.
func (e *Error) Unwrap() []error {
	if e.topo == nil {
		return []error{e.cause}
	}
	return []error{e.topo, e.cause}
}
