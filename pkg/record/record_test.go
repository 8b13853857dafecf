package record

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/content"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

func TestEncodeDecode(t *testing.T) {
	// Deterministic, as the codec reassembles it.
	srv, err := proto.MarshalOptions{Deterministic: true}.Marshal(jd.JD().Sized(20).SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10)
	for _, tc := range []struct {
		name      string
		path      string
		contents  []byte
		codec     topodv1.Codec // CODEC_UNSPECIFIED: stored in the record
		sameBytes bool          // the value is the contents themselves
	}{
		{"empty", "/a/Keyspace", nil, 0, true},
		{"small", "/a/Keyspace", []byte("x"), 0, true},
		{"at the limit", "/a/Keyspace", big[:DefaultInlineLimit], 0, true},
		{"small with the magic", "/a/Keyspace", []byte(Magic + "rest"), 0, false},
		{"just the magic", "/a/Keyspace", []byte(Magic), 0, false},
		{"large file", "/a/Tablets", big, topodv1.Codec_CODEC_CHUNKS, false},
		{"large SrvVSchema", "/cells/c/SrvVSchema", srv, topodv1.Codec_CODEC_SRVVSCHEMA, false},
		{"large SrvVSchema that is not one", "/cells/c/SrvVSchema", big, topodv1.Codec_CODEC_CHUNKS, false},
		{"SrvVSchema elsewhere", "/cells/c/NotSrvVSchema", srv, topodv1.Codec_CODEC_CHUNKS, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := Encode(tc.path, tc.contents, DefaultInlineLimit)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc.Value) > MaxRecordBytes {
				t.Fatalf("value of %d bytes", len(enc.Value))
			}
			if got := bytes.Equal(enc.Value, tc.contents); got != tc.sameBytes {
				t.Errorf("value is the contents: %v, want %v", got, tc.sameBytes)
			}
			ref, err := Parse(enc.Value)
			if err != nil {
				t.Fatal(err)
			}
			if tc.codec == 0 {
				if ref != nil || enc.Ref != nil || len(enc.Blobs) > 0 {
					t.Fatalf("inline contents got ref %v and %d blobs", ref, len(enc.Blobs))
				}
			} else if ref == nil || ref.Codec != tc.codec || ref.Size != int64(len(tc.contents)) {
				t.Fatalf("ref = %v, want codec %v size %d", ref, tc.codec, len(tc.contents))
			}
			get := func(_ context.Context, h content.Hash) ([]byte, error) {
				b, ok := enc.Blobs[h]
				if !ok {
					return nil, fmt.Errorf("no blob %s", h)
				}
				return b, nil
			}
			got, err := Decode(t.Context(), enc.Value, get)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.contents) {
				t.Fatalf("decoded %d bytes, want %d", len(got), len(tc.contents))
			}
			if ref != nil {
				hashes, err := Blobs(t.Context(), ref, get)
				if err != nil {
					t.Fatal(err)
				}
				if len(hashes) != len(enc.Blobs) {
					t.Errorf("Blobs lists %d, the encoding has %d", len(hashes), len(enc.Blobs))
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	none := func(context.Context, content.Hash) ([]byte, error) { return nil, fmt.Errorf("no blobs here") }
	refTo := func(ref *topodv1.BlobRef) []byte {
		v, err := marshal(&topodv1.Record{Body: &topodv1.Record_Ref{Ref: ref}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	root := content.Sum([]byte("root"))
	for _, tc := range []struct {
		name  string
		value []byte
		want  string
	}{
		{"garbage after the magic", []byte(Magic + "\xff\xff\xff"), "record"},
		{"empty record", []byte(Magic), "empty record"},
		{"short root hash", refTo(&topodv1.BlobRef{Codec: topodv1.Codec_CODEC_CHUNKS, Root: []byte{1, 2}}), "root hash of 2 bytes"},
		{"unknown codec", refTo(&topodv1.BlobRef{Codec: 99, Root: root[:]}), "unknown codec"},
		{"missing blob", refTo(&topodv1.BlobRef{Codec: topodv1.Codec_CODEC_CHUNKS, Root: root[:]}), root.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(t.Context(), tc.value, none)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestEncodeNonCanonicalSrvVSchema: a SrvVSchema file whose contents are
// not the size of their deterministic marshalling, which is what the
// SrvVSchema codec reassembles, or that the codec refuses, is chunked
// rather than split, so that it reads back. Before, Encode split it and the record never decoded
// ("decodes to 6 bytes, record says 2"); FuzzDecode found the first case.
func TestEncodeNonCanonicalSrvVSchema(t *testing.T) {
	canonical, err := proto.MarshalOptions{Deterministic: true}.Marshal(jd.JD().Sized(3).SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		contents []byte
		codec    topodv1.Codec
	}{
		{"canonical", canonical, topodv1.Codec_CODEC_SRVVSCHEMA},
		{"keyspaces entry with no fields", []byte("\x0a\x00"), topodv1.Codec_CODEC_CHUNKS},
		{"keyspace with a default field set", []byte("\x0a\x07\x0a\x01k\x12\x02\x08\x00"), topodv1.Codec_CODEC_CHUNKS},
		// Malformed unknown fields, which the SrvVSchema decoders refuse
		// (found by FuzzDecode).
		{"unknown group ended by another field's marker", []byte("C$"), topodv1.Codec_CODEC_CHUNKS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := Encode("/cells/c/SrvVSchema", tc.contents, 0)
			if err != nil {
				t.Fatal(err)
			}
			if enc.Ref.GetCodec() != tc.codec {
				t.Errorf("codec %v, want %v", enc.Ref.GetCodec(), tc.codec)
			}
			got, err := Decode(t.Context(), enc.Value, func(_ context.Context, h content.Hash) ([]byte, error) { return enc.Blobs[h], nil })
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.contents) {
				t.Fatalf("decoded %q, want %q", got, tc.contents)
			}
		})
	}
}
