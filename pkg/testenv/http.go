package testenv

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// HTTP sends body to url with the header pairs given (name, value, ...;
// a name given twice sends both values)
// and returns the status and the body of the answer.
func HTTP(t testing.TB, method, url, body string, header ...string) (int, string) {
	t.Helper()
	code, _, b := HTTPWithHeader(t, method, url, body, header...)
	return code, b
}

// HTTPWithHeader is HTTP that also returns the answer's header.
func HTTPWithHeader(t testing.TB, method, url, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

// HTTPJSON is HTTP for an answer that is a JSON object, decoded.
func HTTPJSON(t testing.TB, method, url, body string, header ...string) (int, map[string]any) {
	t.Helper()
	code, b := HTTP(t, method, url, body, header...)
	var out map[string]any
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		t.Fatalf("%s %s: %d %q does not decode: %v", method, url, code, b, err)
	}
	return code, out
}

// HTTPLines is HTTP for an answer of one JSON object a line (a streamed
// call's results), decoded.
func HTTPLines(t testing.TB, method, url, body string, header ...string) (int, []map[string]any) {
	t.Helper()
	code, b := HTTP(t, method, url, body, header...)
	var out []map[string]any
	for l := range strings.Lines(b) {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%s %s: line %q does not decode: %v", method, url, l, err)
		}
		out = append(out, line)
	}
	return code, out
}

// JSONField follows a path of object keys through decoded JSON; nil when
// one is missing.
func JSONField(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
