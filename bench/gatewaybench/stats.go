package main

// The measurements the report rests on: the command names in
// /proc/PID/stat and machine-wide CPU from /proc/stat (process CPU and
// percentiles are in benchkit). They are pure functions over bytes so that
// the parsing can be tested without starting any process.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keybound/keybound/bench/internal/benchkit"
)

// parseProcComm returns field 2 of /proc/PID/stat, the command name,
// without its parentheses.
func parseProcComm(data []byte) string {
	i, j := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if i < 0 || j < i {
		return "?"
	}
	return string(data[i+1 : j])
}

// procSample is one process's name and CPU time so far.
type procSample struct {
	comm string
	cpu  time.Duration
}

// allProcs reads every process visible in /proc except those in skip. Other
// engineers' builds and tests on this machine show up here (kernel threads
// too); a process that starts and ends between two samples does not, but
// its time is still in /proc/stat.
func allProcs(skip map[int]bool) map[int]procSample {
	out := map[int]procSample{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it has exited
		}
		if t, err := benchkit.ParseProcStat(data); err == nil {
			out[pid] = procSample{comm: parseProcComm(data), cpu: benchkit.Ticks(t)}
		}
	}
	return out
}

// machineCPU is the aggregate "cpu" line of /proc/stat, in clock ticks
// summed over all CPUs. busy is user+nice+system+irq+softirq (guest time is
// already inside user and nice); steal is time the hypervisor gave to
// someone else while we wanted the CPU.
type machineCPU struct {
	busy, steal uint64
}

func (m machineCPU) sub(o machineCPU) machineCPU {
	return machineCPU{busy: m.busy - o.busy, steal: m.steal - o.steal}
}

// parseMachineStat reads the first line of /proc/stat:
//
//	cpu  user nice system idle iowait irq softirq steal guest guest_nice
func parseMachineStat(data []byte) (machineCPU, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, errors.New("/proc/stat: first line is not the aggregate cpu line")
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v[i] = n
	}
	user, nice, system, irq, softirq, steal := v[0], v[1], v[2], v[5], v[6], v[7]
	return machineCPU{busy: user + nice + system + irq + softirq, steal: steal}, nil
}

func readMachineCPU() (machineCPU, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineStat(data)
}
