package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/vschematest"
)

// TestTimeouts: a client that stalls in the middle of its request (the
// read timeout) or keeps an idle connection open (the idle timeout) has
// its connection closed by the server. Each wait is for the server's
// close, bounded by a deadline far beyond the timeout set.
func TestTimeouts(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce")
	// Each server has one short timeout, the other long (an unset idle
	// timeout would be the read timeout).
	short, long := 300*time.Millisecond, time.Hour
	reading := startServe(t, tp, "--read-timeout", short.String(), "--idle-timeout", long.String())
	idle := startServe(t, tp, "--read-timeout", long.String(), "--idle-timeout", short.String())
	cases := []struct {
		name string
		addr string
		send string // then the client stalls
		want int    // the status answered before the close, 0 for none
	}{
		{"stalled in the headers", reading, "PUT /api/v1/keyspaces/commerce/vschema HTTP/1.1\r\nHost: 127.0.0.1\r\n", 0},
		{"stalled in the body", reading, "PUT /api/v1/keyspaces/commerce/vschema HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tables\":", http.StatusBadRequest},
		{"idle after a request", idle, "GET /api/v1/cells HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, c.send); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			if c.want != 0 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.want {
					t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
				}
			}
			// The server closes the connection: EOF (or a reset), not our deadline.
			_, err = br.ReadByte()
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("connection still open: %v", err)
			}
		})
	}
}
