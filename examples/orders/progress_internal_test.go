package orders

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProgressDrawsABarOrPlainLines(t *testing.T) {
	t.Parallel()
	var done atomic.Int64
	done.Store(10)

	var bar strings.Builder
	stop := newProgress(&bar, true, 20).run(&done)
	stop()
	require.Contains(t, bar.String(), "\r  ["+strings.Repeat("#", 20)+strings.Repeat(".", 20)+"] 10/20 orders closed")
	require.True(t, strings.HasSuffix(bar.String(), "\n"))

	var plain strings.Builder
	stop = newProgress(&plain, false, 20).run(&done)
	stop()
	require.Equal(t, "  10/20 orders closed\n", plain.String())
	require.NotContains(t, plain.String(), "\r")
}
