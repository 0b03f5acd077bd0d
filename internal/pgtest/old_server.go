package pgtest

import (
	"encoding/binary"
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// OldServer starts a stand-in for a PostgreSQL server of the given
// version (server_version_num and server_version, such as 120022 and
// "12.22"), for tests of what refuses one: it accepts connections without
// a password and answers every statement with one row of those two
// values, as PostgreSQL answers the version query. It returns a
// connection string for it and stops when the test ends.
func OldServer(t *testing.T, num int, version string) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: old server: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveOld(conn, num, version)
		}
	}()
	return "postgres://postgres@" + ln.Addr().String() + "/test?sslmode=disable"
}

// serveOld speaks just enough of the protocol for pgx to connect and run
// a query, simple or extended.
func serveOld(conn net.Conn, num int, version string) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.SSLRequest); ok {
			if _, err := conn.Write([]byte("N")); err != nil {
				return
			}
			continue
		}
		break
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: version})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	desc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("num"), DataTypeOID: pgtype.Int4OID, DataTypeSize: 4, TypeModifier: -1},
		{Name: []byte("version"), DataTypeOID: pgtype.TextOID, DataTypeSize: -1, TypeModifier: -1},
	}}
	text := &pgproto3.DataRow{Values: [][]byte{[]byte(strconv.Itoa(num)), []byte(version)}}
	// A prepared statement's results come in binary where the client asks
	// for it (pgx does for int4); text's binary form is its bytes.
	bin := &pgproto3.DataRow{Values: [][]byte{binary.BigEndian.AppendUint32(nil, uint32(num)), []byte(version)}}
	row := text
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			be.Send(desc)
			be.Send(text)
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse:
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Describe:
			if m.ObjectType == 'S' {
				be.Send(&pgproto3.ParameterDescription{})
			}
			be.Send(desc)
		case *pgproto3.Bind:
			row = text
			if len(m.ResultFormatCodes) > 0 && m.ResultFormatCodes[0] == pgproto3.BinaryFormat {
				row = bin
			}
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Execute:
			be.Send(row)
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		case *pgproto3.Sync:
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return
		}
		if be.Flush() != nil {
			return
		}
	}
}
