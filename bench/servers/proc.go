package servers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcStats is what /proc tells of a process (or a sum of processes).
type ProcStats struct {
	CPU     time.Duration // user + system time
	RSS     int64         // resident set, bytes (VmRSS)
	PeakRSS int64         // peak resident set, bytes (VmHWM)
}

// Add returns the sum of s and o.
func (s ProcStats) Add(o ProcStats) ProcStats {
	return ProcStats{CPU: s.CPU + o.CPU, RSS: s.RSS + o.RSS, PeakRSS: s.PeakRSS + o.PeakRSS}
}

// ClockTick is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// every Linux platform Go supports).
const ClockTick = 10 * time.Millisecond

// ReadProcStats reads /proc/PID/stat and /proc/PID/status. Linux only.
func ReadProcStats(pid int) (ProcStats, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStats{}, fmt.Errorf("process stats: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcStats{}, fmt.Errorf("process stats: malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return ProcStats{}, fmt.Errorf("process stats: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ProcStats{}, fmt.Errorf("process stats: /proc/%d/stat: %w", pid, err)
	}
	s := ProcStats{CPU: time.Duration(utime+stime) * ClockTick}

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStats{}, fmt.Errorf("process stats: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &s.RSS
		case "VmHWM":
			dst = &s.PeakRSS
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return ProcStats{}, fmt.Errorf("process stats: /proc/%d/status %s: %w", pid, name, err)
		}
		*dst = kb << 10
	}
	return s, nil
}

// RaiseFileLimit raises this process's RLIMIT_NOFILE soft limit to its hard
// limit and returns the new soft limit: a driver holding thousands of
// client connections needs more than the usual 1,024 descriptors.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return lim.Cur, nil
}

// LoadAvg returns /proc/loadavg's first three fields.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}
