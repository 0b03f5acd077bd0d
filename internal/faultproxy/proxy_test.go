package faultproxy_test

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo starts a line echo server and counts the lines it received.
func echo(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var got atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					got.Add(1)
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String(), &got
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	return c, bufio.NewReader(c)
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestForwardsUntilAFaultFires(t *testing.T) {
	t.Parallel()
	target, got := echo(t)
	p := faultproxy.New(t, target)
	c, r := dial(t, p)
	reply, err := roundTrip(c, r, "hello")
	require.NoError(t, err)
	require.Equal(t, "hello\n", reply)

	fired := p.Inject(faultproxy.Fault{Match: faultproxy.Contains("commit")})
	reply, err = roundTrip(c, r, "other")
	require.NoError(t, err, "a fault fires only on a matching request")
	require.Equal(t, "other\n", reply)

	_, err = roundTrip(c, r, "commit")
	require.Error(t, err, "the answer is withheld and the connection cut")
	<-fired
	require.EqualValues(t, 3, got.Load(), "the server got the request")
}

func TestDropRequest(t *testing.T) {
	t.Parallel()
	target, got := echo(t)
	p := faultproxy.New(t, target)
	fired := p.Inject(faultproxy.Fault{Match: faultproxy.Contains("commit"), DropRequest: true})
	c, r := dial(t, p)
	_, err := roundTrip(c, r, "commit")
	require.Error(t, err)
	<-fired
	require.Zero(t, got.Load(), "the server never saw the request")

	c, r = dial(t, p)
	reply, err := roundTrip(c, r, "commit")
	require.NoError(t, err, "a fault fires once")
	require.Equal(t, "commit\n", reply)
}

func TestHoldDelaysTheCut(t *testing.T) {
	t.Parallel()
	target, _ := echo(t)
	p := faultproxy.New(t, target)
	release := make(chan struct{})
	fired := p.Inject(faultproxy.Fault{Match: faultproxy.Contains("commit"), Hold: release})
	c, r := dial(t, p)
	_, err := io.WriteString(c, "commit\n")
	require.NoError(t, err)
	<-fired
	require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = r.ReadString('\n')
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "while held, the client sees nothing at all")
	close(release)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = r.ReadString('\n')
	require.Error(t, err)
	require.False(t, errorIsTimeout(err), "after the hold, the connection is cut")
}

func errorIsTimeout(err error) bool {
	ne, ok := err.(net.Error) //nolint:errorlint // the read error is returned unwrapped
	return ok && ne.Timeout()
}

func TestCutAll(t *testing.T) {
	t.Parallel()
	target, _ := echo(t)
	p := faultproxy.New(t, target)
	c, r := dial(t, p)
	_, err := roundTrip(c, r, "hello")
	require.NoError(t, err)
	p.CutAll()
	_, err = r.ReadString('\n')
	require.Error(t, err)
}
