package otlp

import (
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// generated decodes b with the generated types, the reference the
// protowire decoder is held to.
func generated(b []byte) (exportResponse, error) {
	var m collogspb.ExportLogsServiceResponse
	if err := proto.Unmarshal(b, &m); err != nil {
		return exportResponse{}, err
	}
	ps := m.GetPartialSuccess()
	return exportResponse{Rejected: ps.GetRejectedLogRecords(), Message: ps.GetErrorMessage()}, nil
}

func TestExportResponseMatchesGeneratedTypes(t *testing.T) {
	marshal := func(m *collogspb.ExportLogsServiceResponse) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ps := func(n int64, msg string) *collogspb.ExportLogsServiceResponse {
		return &collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: n, ErrorMessage: msg}}
	}
	// unknown fields a newer server may send, at both levels
	unknown := protowire.AppendTag(nil, 7, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("future"))
	unknown = protowire.AppendTag(unknown, 9, protowire.Fixed64Type)
	unknown = protowire.AppendFixed64(unknown, 42)
	inner := append(marshal(ps(5, "x"))[2:], unknown...) // the partial_success body, then unknown fields
	withUnknown := append(protowire.AppendBytes(protowire.AppendTag(unknown, 1, protowire.BytesType), inner), unknown...)
	// a second partial_success is merged into the first
	merged := append(marshal(ps(3, "")), marshal(ps(0, "later"))...)
	// rejected_log_records sent with the wrong wire type is an unknown field
	wrongType := protowire.AppendTag(nil, 1, protowire.BytesType)
	wrongType = protowire.AppendBytes(wrongType, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("7")))

	tests := []struct {
		name string
		in   []byte
		want exportResponse
	}{
		{"empty", nil, exportResponse{}},
		{"empty partial_success", marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{}}), exportResponse{}},
		{"rejected", marshal(ps(310, "bad timestamp")), exportResponse{Rejected: 310, Message: "bad timestamp"}},
		{"warning only", marshal(ps(0, "deprecated field")), exportResponse{Message: "deprecated field"}},
		{"negative count", marshal(ps(-1, "")), exportResponse{Rejected: -1}},
		{"unknown fields", withUnknown, exportResponse{Rejected: 5, Message: "x"}},
		{"merged", merged, exportResponse{Rejected: 3, Message: "later"}},
		{"wrong wire type", wrongType, exportResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := generated(tt.in)
			if err != nil {
				t.Fatalf("generated types reject the input: %v", err)
			}
			if ref != tt.want {
				t.Fatalf("generated types decode %+v, the test wants %+v", ref, tt.want)
			}
			var got exportResponse
			if err := got.unmarshal(tt.in); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExportResponseRejectsTruncatedInput(t *testing.T) {
	b, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 300, ErrorMessage: "too old"}})
	for n := 1; n < len(b); n++ {
		var r exportResponse
		if err := r.unmarshal(b[:n]); err == nil {
			t.Errorf("%d of %d bytes: decoded %+v, want an error", n, len(b), r)
		}
	}
}

// FuzzExportResponse holds the protowire decoder to the generated types:
// whatever they decode, it decodes to the same values.
func FuzzExportResponse(f *testing.F) {
	for _, m := range []*collogspb.ExportLogsServiceResponse{
		{},
		{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 12, ErrorMessage: "bad"}},
		{PartialSuccess: &collogspb.ExportLogsPartialSuccess{ErrorMessage: "warn"}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, err := generated(b)
		if err != nil {
			return // the decoder may accept more (invalid UTF-8 in a message), never less
		}
		var got exportResponse
		if err := got.unmarshal(b); err != nil {
			t.Fatalf("generated types decode %+v, unmarshal fails: %v", want, err)
		}
		if got != want {
			t.Fatalf("got %+v, generated types decode %+v", got, want)
		}
	})
}
