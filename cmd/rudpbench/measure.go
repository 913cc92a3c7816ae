package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// memSnapshot is what the memory and allocation figures are taken from.
type memSnapshot struct {
	inuse   uint64 // HeapInuse + StackInuse
	mallocs uint64
}

// readMem collects garbage first when settle is true, so inuse counts live
// memory: it repeats collections (finalizers of closed sockets free memory
// only at a later one) until the figure stops moving.
func readMem(settle bool) memSnapshot {
	var ms runtime.MemStats
	if settle {
		prev := uint64(0)
		for range 8 {
			runtime.GC()
			time.Sleep(5 * time.Millisecond) // let finalizers run
			runtime.ReadMemStats(&ms)
			cur := ms.HeapInuse + ms.StackInuse
			if prev != 0 && cur <= prev && prev-cur < prev/200 {
				break
			}
			prev = cur
		}
	}
	runtime.ReadMemStats(&ms)
	return memSnapshot{inuse: ms.HeapInuse + ms.StackInuse, mallocs: ms.Mallocs}
}

// percentile returns the nearest-rank q-quantile (0 <= q <= 1) of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// addLatencies sorts samples and adds p50, p90, p99 and max in microseconds.
func addLatencies(r *result, samples []time.Duration) {
	slices.Sort(samples)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	r.add("p50", "µs", us(percentile(samples, 0.50)), "lower")
	r.add("p90", "µs", us(percentile(samples, 0.90)), "lower")
	r.add("p99", "µs", us(percentile(samples, 0.99)), "lower")
	if len(samples) > 0 {
		r.add("max", "µs", us(samples[len(samples)-1]), "lower")
	}
	r.add("samples", "", float64(len(samples)), "")
}

// parseRate reads a bandwidth the way tc writes them: bits per second with
// kbit/mbit/gbit (or bps/kbps/mbps/gbps), or bytes per second with
// B/KB/MB/GB (decimal) or KiB/MiB/GiB (binary). A bare number is bits/s.
func parseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || num <= 0 {
		return 0, fmt.Errorf("bad rate %q: want e.g. 100mbit or 12.5MB", s)
	}
	unit := t[i:]
	bits := map[string]float64{"": 1, "bit": 1, "bps": 1, "kbit": 1e3, "kbps": 1e3, "mbit": 1e6, "mbps": 1e6, "gbit": 1e9, "gbps": 1e9}
	bytes := map[string]float64{"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
	if m, ok := bytes[unit]; ok {
		return int64(num * m), nil
	}
	if m, ok := bits[strings.ToLower(unit)]; ok {
		return int64(num * m / 8), nil
	}
	return 0, fmt.Errorf("bad rate unit %q in %q: want bit, kbit, mbit, gbit, B, KB, MB, GB, KiB, MiB or GiB", unit, s)
}

// formatRate writes bytes/s as tc would read them (bits per second).
func formatRate(bytesPerSec int64) string {
	bits := float64(bytesPerSec) * 8
	switch {
	case bits >= 1e9:
		return strconv.FormatFloat(bits/1e9, 'f', -1, 64) + "gbit"
	case bits >= 1e6:
		return strconv.FormatFloat(bits/1e6, 'f', -1, 64) + "mbit"
	case bits >= 1e3:
		return strconv.FormatFloat(bits/1e3, 'f', -1, 64) + "kbit"
	}
	return strconv.FormatFloat(bits, 'f', -1, 64) + "bit"
}

// mbit converts bytes over a duration to Mbit/s.
func mbit(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds() / 1e6
}

// userHZ is the unit of /proc/stat's times: USER_HZ, 100 on every Linux
// architecture (part of the kernel's ABI, whatever the kernel's own HZ).
const userHZ = 100

// softirqTime is the time all CPUs of the machine have spent in software
// interrupts so far, from /proc/stat (Linux; ok is false where there is no
// such file). On loopback the kernel's receive path (netif_receive_skb, the
// UDP and TCP input) runs there, so getrusage does not see all of it. It is
// machine-wide: other processes' network traffic counts too; and unless the
// kernel has IRQ time accounting it is sampled at the clock tick (10 ms
// units), so it needs runs of a second or more to mean much.
func softirqTime() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	ticks, err := strconv.ParseUint(f[7], 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(ticks) * time.Second / userHZ, true
}

// cpuMark is one end of a CPU measurement: the process's CPU time and the
// machine's softirq time at a moment.
type cpuMark struct {
	at      time.Time
	proc    time.Duration
	softirq time.Duration
	softOK  bool
}

func markCPU() cpuMark {
	m := cpuMark{at: time.Now(), proc: cpuTime()}
	m.softirq, m.softOK = softirqTime()
	return m
}

// addCPUPerGiB adds the process's CPU seconds from m0 to m1 per GiB of n
// bytes moved and, where /proc/stat has it, the machine's softirq seconds
// per GiB and the sum of the two (the "process + softirq" cost). It returns
// the process's CPU time.
func addCPUPerGiB(r *result, m0, m1 cpuMark, n int64) time.Duration {
	cpu := m1.proc - m0.proc
	gib := float64(n) / (1 << 30)
	r.add("CPU/GiB", "s", cpu.Seconds()/gib, "lower")
	if m0.softOK && m1.softOK {
		s := (m1.softirq - m0.softirq).Seconds()
		r.add("softirq/GiB", "s", s/gib, "lower")
		r.add("CPU+softirq/GiB", "s", (cpu.Seconds()+s)/gib, "lower")
	}
	return cpu
}
