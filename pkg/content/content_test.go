package content

import (
	"strings"
	"testing"
)

func TestSum(t *testing.T) {
	tests := []struct {
		data string
		want string
	}{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"hello", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},
	}
	for _, tt := range tests {
		if got := Sum([]byte(tt.data)).String(); got != tt.want {
			t.Errorf("Sum(%q) = %s, want %s", tt.data, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	const hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	tests := []struct {
		name    string
		in      string
		want    Hash
		wantErr bool
	}{
		{name: "lower", in: hello, want: Sum([]byte("hello"))},
		{name: "upper", in: strings.ToUpper(hello), want: Sum([]byte("hello"))},
		{name: "empty", in: "", wantErr: true},
		{name: "short", in: "abc", wantErr: true},
		{name: "not hex", in: hello[:62] + "zz", wantErr: true},
		{name: "long", in: hello + "00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestIsZero(t *testing.T) {
	if !(Hash{}).IsZero() {
		t.Error("zero Hash: IsZero = false")
	}
	if Sum(nil).IsZero() {
		t.Error("Sum(nil): IsZero = true")
	}
}
