package keys

import (
	"testing"

	"go.uber.org/goleak"
)

// Run starts goroutines (its own and fsnotify's); every test must end them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
