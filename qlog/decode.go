package qlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Trace is a qlog JSON-SEQ file read back: its header record and its
// events in file order.
type Trace struct {
	Header Header
	Events []Event
}

// Header is the fields of a JSON-SEQ file's first record that this
// package writes and reads.
type Header struct {
	Version string `json:"qlog_version"`
	Format  string `json:"qlog_format"`
	Title   string `json:"title"`
	Trace   struct {
		VantagePoint struct {
			Type string `json:"type"`
		} `json:"vantage_point"`
		CommonFields struct {
			GroupID       string  `json:"group_id"`
			TimeFormat    string  `json:"time_format"`
			ReferenceTime float64 `json:"reference_time"`
		} `json:"common_fields"`
	} `json:"trace"`
}

// Event is one event record: its time (milliseconds after the reference
// time), its name ("category:event") and its data, undecoded.
type Event struct {
	Time float64         `json:"time"`
	Name string          `json:"name"`
	Data json.RawMessage `json:"data"`
}

// MaxRecord bounds one record Decode accepts (bytes): a packet of 64
// KiB holds a few thousand frames, each well under 200 bytes of JSON.
const MaxRecord = 4 << 20

// Decode reads a JSON-SEQ qlog trace (RFC 7464): records each starting
// with RecordSeparator, the first the header. A record that is not valid
// JSON, an event without a name or data, or a record over MaxRecord is an
// error naming the record (its index, 0 being the header). A truncated
// last record (a trace whose writer was cut off, as RFC 7464 §2.3 allows)
// is dropped without error.
func Decode(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxRecord)
	sc.Split(splitRecords)
	var t Trace
	for i := 0; sc.Scan(); i++ {
		rec := bytes.TrimSpace(sc.Bytes())
		if i == 0 {
			if err := json.Unmarshal(rec, &t.Header); err != nil {
				return nil, fmt.Errorf("qlog: header record: %w", err)
			}
			if t.Header.Format != "JSON-SEQ" {
				return nil, fmt.Errorf("qlog: header record: qlog_format %q, want JSON-SEQ", t.Header.Format)
			}
			continue
		}
		var e Event
		if err := json.Unmarshal(rec, &e); err != nil {
			if !json.Valid(rec) && !sc.Scan() { // (the last record, cut off)
				break
			}
			return nil, fmt.Errorf("qlog: record %d: %w", i, err)
		}
		if e.Name == "" || len(e.Data) == 0 {
			return nil, fmt.Errorf("qlog: record %d: an event needs a name and data", i)
		}
		t.Events = append(t.Events, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("qlog: %w", err)
	}
	if t.Header.Version == "" {
		return nil, fmt.Errorf("qlog: no header record")
	}
	return &t, nil
}

// splitRecords splits JSON-SEQ input at record separators; what comes
// before the first is skipped.
func splitRecords(data []byte, atEOF bool) (advance int, token []byte, err error) {
	start := bytes.IndexByte(data, RecordSeparator)
	if start < 0 {
		if atEOF {
			return len(data), nil, nil
		}
		return 0, nil, nil
	}
	if end := bytes.IndexByte(data[start+1:], RecordSeparator); end >= 0 {
		return start + 1 + end, data[start+1 : start+1+end], nil
	}
	if atEOF {
		if len(data) == start+1 {
			return len(data), nil, nil
		}
		return len(data), data[start+1:], nil
	}
	return start, nil, nil // (more to read: keep the separator)
}
