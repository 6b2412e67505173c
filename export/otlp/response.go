package otlp

import (
	"errors"
	"log/slog"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/logpump/logpump/export"
)

// exportResponse is what an ExportLogsServiceResponse tells the client:
// its partial_success. It is decoded with protowire; the generated types
// would run protobuf's reflection on every acknowledgement, which costs
// CPU per request and keeps that code and its tables in memory.
type exportResponse struct {
	Rejected int64  // partial_success.rejected_log_records
	Message  string // partial_success.error_message
}

// Field numbers of ExportLogsServiceResponse and ExportLogsPartialSuccess.
const (
	fieldPartialSuccess = 1
	fieldRejected       = 1
	fieldErrorMessage   = 2
)

var errBadResponse = errors.New("malformed ExportLogsServiceResponse")

// unmarshal decodes b into r. Unknown fields are skipped; a field that
// appears more than once keeps its last value, and a repeated
// partial_success is merged, as protobuf decoders do.
func (r *exportResponse) unmarshal(b []byte) error {
	*r = exportResponse{}
	for len(b) > 0 {
		num, typ, val, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if num == fieldPartialSuccess && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(val)
			if err := r.unmarshalPartial(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *exportResponse) unmarshalPartial(b []byte) error {
	for len(b) > 0 {
		num, typ, val, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == fieldRejected && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(val)
			r.Rejected = int64(v)
		case num == fieldErrorMessage && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(val)
			r.Message = string(v)
		}
	}
	return nil
}

// nextField splits the first field off b: its number, wire type, value
// (checked to be whole, so that it decodes without error) and what follows.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, val, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, nil, errBadResponse
	}
	m := protowire.ConsumeFieldValue(num, typ, b[n:])
	if m < 0 {
		return 0, 0, nil, nil, errBadResponse
	}
	return num, typ, b[n : n+m], b[n+m:], nil
}

// outcome turns the response into a *export.PartialError when records
// were rejected; a message without rejected records is only logged, as
// the specification asks.
func (r *exportResponse) outcome(log *slog.Logger) error {
	if r.Rejected > 0 {
		return &export.PartialError{Rejected: r.Rejected, Message: r.Message}
	}
	if r.Message != "" {
		log.Warn("otlp endpoint accepted the request with a warning", "message", r.Message)
	}
	return nil
}
