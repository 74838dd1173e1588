package sshchat

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/sshchat-dev/sshchat/store"
)

// BenchmarkEndToEndHistory is BenchmarkEndToEnd with every public message
// stored in a real store before it is fanned out. Storing must not make
// fan-out slower: run both together (-bench EndToEnd) to compare.
func BenchmarkEndToEndHistory(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			db, err := store.Open(b.TempDir(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close() // after the server, which benchEndToEnd shuts down
			benchEndToEnd(b, n, func(c *Config) { c.Store = db })
		})
	}
}
