package inspect

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
)

// vitessType returns a new message of the Vitess type of the file at key,
// chosen by its name as Vitess's own topo.DecodeContent chooses (what
// `vtctldclient GetTopologyPath --data-as-json` shows), plus the files
// DecodeContent does not know (cells aliases, shard routing rules, mirror
// rules); nil for a file that is not a Vitess proto (locks, metadata).
func vitessType(key string) proto.Message {
	name, dir := path.Base(key), path.Dir(key)
	switch name {
	case topo.CellInfoFile:
		return new(topodatapb.CellInfo)
	case topo.CellsAliasFile:
		return new(topodatapb.CellsAlias)
	case topo.KeyspaceFile:
		return new(topodatapb.Keyspace)
	case topo.ShardFile:
		return new(topodatapb.Shard)
	case topo.VSchemaFile:
		return new(vschemapb.Keyspace)
	case topo.ShardReplicationFile:
		return new(topodatapb.ShardReplication)
	case topo.TabletFile:
		return new(topodatapb.Tablet)
	case topo.SrvVSchemaFile:
		return new(vschemapb.SrvVSchema)
	case topo.SrvKeyspaceFile:
		return new(topodatapb.SrvKeyspace)
	case topo.RoutingRulesFile:
		return new(vschemapb.RoutingRules)
	case topo.ShardRoutingRulesFile:
		return new(vschemapb.ShardRoutingRules)
	case topo.MirrorRulesFile:
		return new(vschemapb.MirrorRules)
	case topo.CommonRoutingRulesFile:
		if path.Base(dir) == topo.KeyspaceRoutingRulesPath {
			return new(vschemapb.KeyspaceRoutingRules)
		}
	}
	if strings.HasSuffix(dir, "/"+topo.GetExternalVitessClusterDir()) {
		return new(topodatapb.ExternalVitessCluster)
	}
	return nil
}

// TypeName is the Vitess proto type of the file at key ("topodata.Tablet"),
// "" for a file that is not one.
func TypeName(key string) string {
	m := vitessType(key)
	if m == nil {
		return ""
	}
	return string(m.ProtoReflect().Descriptor().FullName())
}

// Decoded is a file's contents as shown.
type Decoded struct {
	// Type is the Vitess proto type, "" if the file is not one.
	Type string `json:"type,omitempty"`
	// Value is the contents as JSON: the proto as Vitess prints it
	// (protojson, proto field names), or for other files a JSON string of
	// the text, or of its base64 if it is not UTF-8 (Encoding says which).
	Value json.RawMessage `json:"value"`
	// Encoding is "json" (a Vitess proto), "text" or "base64".
	Encoding string `json:"encoding"`
	// Error says why contents of a Vitess type did not decode as it; Value
	// then holds them as text or base64.
	Error string `json:"error,omitempty"`
}

// decodeVitess decodes the contents of the file at key. Files of the
// types Vitess's topo.DecodeContent knows are decoded by it, exactly as
// vtctldclient GetTopologyPath --data-as-json shows them.
func decodeVitess(key string, data []byte) Decoded {
	m := vitessType(key)
	if m == nil {
		return raw(data)
	}
	d := Decoded{Type: string(m.ProtoReflect().Descriptor().FullName()), Encoding: "json"}
	out, err := topo.DecodeContent(decodeContentName(key), data, true)
	if err != nil && strings.HasPrefix(err.Error(), "unknown topo protobuf type") {
		// One of the types DecodeContent does not know: decoded the way
		// it decodes the others.
		out, err = "", proto.Unmarshal(data, m)
		if err == nil {
			var b []byte
			b, err = protojson.MarshalOptions{Indent: "  ", UseProtoNames: true}.Marshal(m)
			out = string(b)
		}
	}
	if err != nil {
		r := raw(data)
		r.Type, r.Error = d.Type, fmt.Sprintf("does not decode as %s: %v", d.Type, err)
		return r
	}
	// protojson varies its whitespace from build to build, on purpose;
	// print it the same every time.
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(out), "", "  "); err != nil {
		r := raw(data)
		r.Type, r.Error = d.Type, fmt.Sprintf("decoded as %s to JSON that does not parse: %v", d.Type, err)
		return r
	}
	d.Value = json.RawMessage(b.Bytes())
	return d
}

// decodeContentName is the name topo.DecodeContent picks the type of key
// by: the key itself, but for external clusters, whose directory it
// compares whole (relative to the root it expects).
func decodeContentName(key string) string {
	if dir := path.Dir(key); strings.HasSuffix(dir, "/"+topo.GetExternalVitessClusterDir()) {
		return "/" + topo.GetExternalVitessClusterDir() + "/" + path.Base(key)
	}
	return key
}

// raw is data that is not a Vitess proto, as a JSON string.
func raw(data []byte) Decoded {
	if utf8.Valid(data) {
		b, _ := json.Marshal(string(data))
		return Decoded{Value: b, Encoding: "text"}
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(data))
	return Decoded{Value: b, Encoding: "base64"}
}
