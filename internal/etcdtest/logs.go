package etcdtest

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLogBytes caps the log kept for a failing test; older lines are dropped.
const maxLogBytes = 1 << 20

// logSink is where a cluster's etcd logs go: a bounded buffer printed if the
// test fails, or stderr when ETCDTEST_LOG_LEVEL is set.
type logSink struct {
	level  zapcore.Level
	logger *zap.Logger

	mu      sync.Mutex
	buf     bytes.Buffer
	dropped bool
}

func newLogSink() *logSink {
	s := &logSink{level: zapcore.ErrorLevel}
	var out zapcore.WriteSyncer = zapcore.AddSync(s)
	if lvl := os.Getenv("ETCDTEST_LOG_LEVEL"); lvl != "" {
		if err := s.level.Set(lvl); err != nil {
			s.level = zapcore.InfoLevel
		}
		out = zapcore.Lock(os.Stderr)
	}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	s.logger = zap.New(zapcore.NewCore(enc, out, s.level))
	return s
}

// Write keeps p, dropping the oldest half of the buffer when it is full.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len()+len(p) > maxLogBytes {
		keep := s.buf.Bytes()[s.buf.Len()/2:]
		rest := append([]byte(nil), keep...)
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
