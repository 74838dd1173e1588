package main

import (
	"math"
	"math/bits"
)

// histogram counts latencies in microseconds in log-linear buckets, HDR
// style: values below 256 get a bucket each, larger ones keep their top 8
// significant bits, so a bucket spans at most 1/128 of its values (under 1%)
// and a percentile is reported to within half that. Each reader owns one
// and they are merged at the end, so recording is an increment with no
// locking, and memory depends on the largest latency seen (a few KB for
// latencies up to seconds), not on how many deliveries there are: a slice
// of every latency would be 48 MB for 200k deliveries/s over 30 s.
type histogram struct {
	counts   []uint64
	total    uint64
	min, max uint64
}

const (
	subBits    = 8
	subBuckets = 1 << subBits   // exact buckets 0..255
	halfSub    = subBuckets / 2 // buckets per power of two above that
	maxValue   = math.MaxUint64 >> 1
)

// bucketOf returns the index of the bucket holding v.
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	return subBuckets + (shift-1)*halfSub + int(v>>shift) - halfSub
}

// bucketRange returns the smallest and largest values in bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i)
	}
	k := i - subBuckets
	shift := k/halfSub + 1
	m := uint64(k%halfSub + halfSub)
	return m << shift, (m+1)<<shift - 1
}

// record adds one value.
func (h *histogram) record(v uint64) {
	v = min(v, maxValue)
	i := bucketOf(v)
	if i >= len(h.counts) {
		// Grow in steps of a power of two at a time, not per bucket.
		grown := make([]uint64, max(i+1, bucketOf(bucketTop(i))+1))
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.total++
}

// bucketTop returns the largest value sharing bucket i's power of two.
func bucketTop(i int) uint64 {
	_, hi := bucketRange(i)
	if hi < subBuckets {
		return subBuckets - 1
	}
	return 1<<bits.Len64(hi) - 1
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		grown := make([]uint64, len(o.counts))
		copy(grown, h.counts)
		h.counts = grown
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
}

// percentile returns the value at or below which p percent of the recorded
// values lie: the middle of the bucket holding that rank, clamped to the
// exact minimum and maximum. It is 0 for an empty histogram.
func (h *histogram) percentile(p float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return min(max(lo+(hi-lo)/2, h.min), h.max)
		}
	}
	return h.max
}
