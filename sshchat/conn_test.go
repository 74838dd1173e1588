package sshchat

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestTrackedConnRead checks that reading ahead for small reads neither
// loses nor reorders bytes, whatever sizes the reads come in, and that the
// end of the stream still shows.
func TestTrackedConnRead(t *testing.T) {
	stream := []byte("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n" + string(bytes.Repeat([]byte("kexinit "), 100)))
	tests := []struct {
		name  string
		sizes []int // read sizes in turn, the last repeated
	}{
		{"byte by byte", []int{1}},
		{"version then packets", []int{1, 1, 1, 1, 4096}},
		{"at the small read limit", []int{smallRead}},
		{"just above it", []int{smallRead + 1}},
		{"mixed", []int{1, 7, 3, 300, 1, 2, 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := net.Pipe()
			go func() {
				client.Write(stream) // net.Pipe: in reads of any size asked
				client.Close()
			}()
			tc := newTrackedConn(server, time.Minute, func(*trackedConn) {}, func(*trackedConn) {})
			defer tc.Close()
			var got []byte
			for i := 0; ; i++ {
				buf := make([]byte, tt.sizes[min(i, len(tt.sizes)-1)])
				n, err := tc.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
			}
			if !bytes.Equal(got, stream) {
				t.Errorf("read %q\nwant %q", got, stream)
			}
		})
	}
}
