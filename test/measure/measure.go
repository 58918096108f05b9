// Package measure reads what the tests and benchmarks measure of a running
// process: the samples of a Prometheus metric, and its memory and CPU from
// /proc.
package measure

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// MetricSum is the sum of a metric's samples in a Prometheus text
// exposition whose labels contain every given fragment.
func MetricSum(r io.Reader, name string, labelParts ...string) (float64, error) {
	sum := 0.0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, p := range labelParts {
			ok = ok && strings.Contains(line, p)
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64); ok && err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// Metric scrapes http://addr/metrics and sums a metric as MetricSum does.
func Metric(client *http.Client, addr, name string, labelParts ...string) (float64, error) {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET http://%s/metrics: %s", addr, resp.Status)
	}
	return MetricSum(resp.Body, name, labelParts...)
}

// Memory is a process's resident set (VmRSS) and its anonymous part
// (RssAnon: heap and stacks; the rest is the binary's pages mapped from
// disk), in KiB.
func Memory(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "RssAnon:":
			anon = v
		}
	}
	return rss, anon, nil
}

// CPU is a process's user plus system CPU time, in clock ticks of 10 ms.
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
