// Package kvtest is the conformance suite every kv.Backend passes, in the
// style of Vitess's vitess.io/vitess/go/vt/topo/test: a backend's own tests
// call Run with a factory, and Run checks the contract documented in package
// kv, one named subtest per part of it.
//
// Each subtest gets a fresh backend from the factory and keeps every key it
// touches under a prefix unique to the process and the subtest
// ("/kvtest-<run>-<n>/"), so a factory may hand back backends sharing one
// store (one etcd cluster for the whole run, say).
package kvtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// NewBackend returns a backend for one subtest. It registers whatever
// cleanup the backend needs with t (t.Cleanup); the suite never calls Close.
type NewBackend func(t *testing.T) kv.Backend

// check is one part of the suite.
type check struct {
	name string
	fn   func(t *testing.T, e *env)
}

// checks is the suite, in the order Run runs it.
var checks = []check{
	{"Get/NotFound", checkGetNotFound},
	{"Create", checkCreate},
	{"Create/RevisionsIncrease", checkRevisionsIncrease},
	{"Update", checkUpdate},
	{"Delete", checkDelete},
	{"Version", checkVersion},
	{"Errors/NameKey", checkErrorsNameKey},
	{"List", checkList},
	{"List/RawPrefix", checkListRawPrefix},
	{"List/Empty", checkListEmpty},
	{"GetRevision", checkGetRevision},
	{"GetRevision/AfterDelete", checkGetRevisionAfterDelete},
	{"History", checkHistory},
	{"History/Stops", checkHistoryStops},
	{"Watch/Key", checkWatchKey},
	{"Watch/Prefix", checkWatchPrefix},
	{"Watch/AfterRev", checkWatchAfterRev},
	{"Watch/FromNow", checkWatchFromNow},
	{"Watch/FromList", checkWatchFromList},
	{"Watch/Delete", checkWatchDelete},
	{"Watch/Order", checkWatchOrder},
	{"Watch/Cancel", checkWatchCancel},
	{"Lease/Grant", checkLeaseGrant},
	{"Lease/Keys", checkLeaseKeys},
	{"Lease/Revoke", checkLeaseRevoke},
	{"Lease/KeepAlive", checkLeaseKeepAlive},
	{"Lease/ContextEnd", checkLeaseContextEnd},
	{"Lease/Unknown", checkLeaseUnknown},
	{"Txn/Compare", checkTxnCompare},
	{"Txn/CompareRange", checkTxnCompareRange},
	{"Txn/Range", checkTxnRange},
	{"Txn/Put", checkTxnPut},
	{"Txn/PutLease", checkTxnPutLease},
	{"Txn/PutIgnore", checkTxnPutIgnore},
	{"Txn/Delete", checkTxnDelete},
	{"Txn/Nested", checkTxnNested},
	{"Txn/ReadsOwnWrites", checkTxnReadsOwnWrites},
	{"Txn/DuplicateKey", checkTxnDuplicateKey},
	{"Txn/Malformed", checkTxnMalformed},
	{"Txn/Revision", checkTxnRevision},
	{"Txn/CurrentRevision", checkCurrentRevision},
	{"Txn/RangeAtRevision", checkTxnRangeAtRevision},
	{"Txn/RangeAtRevision/Compacted", checkTxnRangeCompacted},
	{"Leases/ByID", checkLeasesByID},
	{"Leases/GivenID", checkLeasesGivenID},
	{"Leases/Expiry", checkLeasesExpiry},
	{"Leases/OfGrant", checkLeasesOfGrant},
	{"Leases/TxnKeys", checkTxnLeaseKeys},
	{"CompareAndSet/Concurrent", checkConcurrentCAS},
	{"LargeValue", checkLargeValue},
}

// Run runs the conformance suite against the backends newBackend makes.
func Run(t *testing.T, newBackend NewBackend) {
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			e := &env{
				b:      newBackend(t),
				prefix: newPrefix(),
			}
			c.fn(t, e)
		})
	}
}

// runID tells this process's keys from another's in a shared store.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// prefixSeq numbers the subtests of this process.
var prefixSeq atomic.Int64

// newPrefix returns a key prefix no other subtest uses, ending with "/".
func newPrefix() string {
	return fmt.Sprintf("/kvtest-%s-%d/", runID, prefixSeq.Add(1))
}

// env is what one subtest works with: its backend and its key space.
type env struct {
	b      kv.Backend
	prefix string
}

// key returns name under the subtest's prefix.
func (e *env) key(name string) string { return e.prefix + name }

// ctx returns a context that ends with the test.
func ctx(t *testing.T) context.Context { return t.Context() }
