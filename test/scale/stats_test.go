package scale

import (
	"sort"
	"time"
)

// spread is p50, p99 and max of a set of durations, in milliseconds.
type spread struct {
	N   int     `json:"samples"`
	P50 float64 `json:"p50Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

func spreadOf(ds []time.Duration) spread {
	if len(ds) == 0 {
		return spread{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		return float64(s[int(p*float64(len(s)-1)+0.5)]) / float64(time.Millisecond)
	}
	return spread{N: len(s), P50: q(0.5), P99: q(0.99), Max: q(1)}
}

// sinceEach is each time minus start.
func sinceEach(start time.Time, ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(start)
	}
	return out
}

func spreadKiB(vs []int64) (p50, maxV float64) {
	if len(vs) == 0 {
		return 0, 0
	}
	s := append([]int64(nil), vs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2]) / 1024, float64(s[len(s)-1]) / 1024
}
