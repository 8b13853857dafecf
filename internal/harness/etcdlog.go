package harness

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogBytes caps the log kept for a failing test; older lines are dropped.
const maxLogBytes = 1 << 20

// logSink is where an embedded cluster's etcd logs go: a bounded buffer
// printed if the test fails, the writer of WithLog, or stderr when
// HARNESS_ETCD_LOG_LEVEL is set.
type logSink struct {
	level   zapcore.Level
	logger  *zap.Logger
	closing atomic.Bool // a member is being stopped: its errors are no news

	mu      sync.Mutex
	buf     bytes.Buffer
	dropped bool
}

func newLogSink(w io.Writer) *logSink {
	s := &logSink{level: zapcore.ErrorLevel}
	var out zapcore.WriteSyncer = zapcore.AddSync(s)
	switch lvl := os.Getenv("HARNESS_ETCD_LOG_LEVEL"); {
	case lvl != "":
		if err := s.level.Set(lvl); err != nil {
			s.level = zapcore.InfoLevel
		}
		out = zapcore.Lock(os.Stderr)
	case w != nil:
		out = zapcore.Lock(zapcore.AddSync(w))
	}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	s.logger = zap.New(shutdownFilter{zapcore.NewCore(enc, out, s.level), &s.closing})
	return s
}

// shutdownFilter drops the errors etcd logs whenever a member stops ("mux:
// server closed", "use of closed network connection", "the server has been
// stopped"): stopping members is what fault tests do.
type shutdownFilter struct {
	zapcore.Core
	closing *atomic.Bool
}

func (f shutdownFilter) With(fields []zapcore.Field) zapcore.Core {
	return shutdownFilter{f.Core.With(fields), f.closing}
}

func (f shutdownFilter) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if f.Enabled(ent.Level) && !f.closing.Load() {
		return ce.AddCore(ent, f)
	}
	return ce
}

func (f shutdownFilter) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if ent.Message == "setting up serving from embedded etcd failed." {
		for _, fl := range fields {
			if err, ok := fl.Interface.(error); ok && fl.Type == zapcore.ErrorType && isClosedErr(err) {
				return nil
			}
		}
	}
	return f.Core.Write(ent, fields)
}

func isClosedErr(err error) bool {
	msg := err.Error()
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) ||
		strings.Contains(msg, "server closed") || strings.Contains(msg, "use of closed network connection") ||
		strings.Contains(msg, "server has been stopped")
}

// Write keeps p, dropping the oldest half of the buffer when it is full.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len()+len(p) > maxLogBytes {
		rest := append([]byte(nil), s.buf.Bytes()[s.buf.Len()/2:]...)
		s.buf.Reset()
		s.buf.Write(rest)
		s.dropped = true
	}
	return s.buf.Write(p)
}

// dump prints the kept log through tb.
func (s *logSink) dump(tb testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() == 0 {
		return
	}
	prefix := ""
	if s.dropped {
		prefix = "(older lines dropped)\n"
	}
	tb.Logf("etcd log (level %v and above):\n%s%s", s.level, prefix, s.buf.String())
}
