package harness

import (
	"fmt"
	"time"

	"github.com/prometheus/procfs"
)

// ProcStats is what /proc tells of a process (or a sum of processes).
type ProcStats struct {
	CPU     time.Duration // user + system time
	RSS     int64         // resident set, bytes
	PeakRSS int64         // peak resident set, bytes (VmHWM)
}

// ClockTick is the resolution of ProcStats.CPU: /proc counts CPU time in
// USER_HZ ticks, 100 a second on every Linux platform Go supports.
const ClockTick = 10 * time.Millisecond

// Add returns the sum of s and o.
func (s ProcStats) Add(o ProcStats) ProcStats {
	return ProcStats{CPU: s.CPU + o.CPU, RSS: s.RSS + o.RSS, PeakRSS: s.PeakRSS + o.PeakRSS}
}

// ReadProcStats reads process pid's CPU time and memory from /proc. Linux
// only.
func ReadProcStats(pid int) (ProcStats, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return ProcStats{}, fmt.Errorf("process %d stats: %w", pid, err)
	}
	stat, err := p.Stat()
	if err != nil {
		return ProcStats{}, fmt.Errorf("process %d stats: %w", pid, err)
	}
	status, err := p.NewStatus()
	if err != nil {
		return ProcStats{}, fmt.Errorf("process %d stats: %w", pid, err)
	}
	return ProcStats{
		CPU:     time.Duration(stat.CPUTime() * float64(time.Second)),
		RSS:     int64(stat.ResidentMemory()),
		PeakRSS: int64(status.VmHWM),
	}, nil
}

// LoadAvg returns the system's load averages over 1, 5 and 15 minutes, as
// /proc/loadavg shows them ("unknown" if it cannot be read).
func LoadAvg() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return "unknown"
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", l.Load1, l.Load5, l.Load15)
}
