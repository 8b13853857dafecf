package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPick(t *testing.T) {
	ports, err := Pick(30)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	eph := ephemeralStart()
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
		if eph-1-lowest >= 1000 && (p < lowest || p >= eph) {
			t.Fatalf("port %d outside %d-%d", p, lowest, eph-1)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}

func TestListen(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	if eph := ephemeralStart(); eph-1-lowest >= 1000 && (p < lowest || p >= eph) {
		t.Fatalf("port %d outside %d-%d", p, lowest, eph-1)
	}
}

// TestPickedPortsStayReserved: a port handed out is not handed out again,
// by this process or another, while this process runs, even after the
// server on it stopped (the lock, not the bind, says so).
func TestPickedPortsStayReserved(t *testing.T) {
	ports, err := Pick(20)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if f, ok := reserve(p); ok {
			release(f)
			t.Errorf("port %d was handed out but could be reserved again", p)
		}
	}
	again, err := Pick(200)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range again {
		for _, q := range ports {
			if p == q {
				t.Errorf("port %d handed out twice", p)
			}
		}
	}
}

func TestPickBase(t *testing.T) {
	offsets := []int{100, 101, 1100, 2201}
	a, err := PickBase(offsets...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := PickBase(offsets...)
	if err != nil {
		t.Fatal(err)
	}
	taken := map[int]bool{}
	for _, base := range []int{a, b} {
		for _, o := range offsets {
			p := base + o
			if taken[p] {
				t.Fatalf("port %d handed out twice (bases %d and %d)", p, a, b)
			}
			taken[p] = true
			if _, ok := reserve(p); ok {
				t.Fatalf("port %d (base %d + %d) is not reserved", p, base, o)
			}
			l, ok := listen(p)
			if !ok {
				t.Fatalf("port %d (base %d + %d) is not free", p, base, o)
			}
			l.Close()
		}
	}
}
