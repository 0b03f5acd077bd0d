// Package faultproxy is a TCP proxy for tests that injects network faults
// at chosen moments: it forwards connections to a server (PostgreSQL) and,
// on command, drops a request before the server sees it, or lets the
// server answer and cuts the connection before the answer reaches the
// client. The second is the fault that makes a commit's outcome unknown:
// the server committed, the client cannot tell.
//
// Faults fire on the first client message that matches, so a test aims at
// one statement by its parameters (a unique stream id, say). The client
// must not use TLS, or nothing can be matched:
//
//	p := faultproxy.New(t, "127.0.0.1:5432")
//	fired := p.Inject(faultproxy.Fault{Match: faultproxy.Contains("order-42")})
//	// connect through p.Addr(), run the statement, then:
//	<-fired // the server answered; the client got a cut connection
package faultproxy
