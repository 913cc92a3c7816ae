package rudp

import (
	"crypto/tls"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rudp-go/rudp/core"
)

// TestCoreKnobsComplete: every Config field named as a core.Config field
// is in coreKnobs (the one list that maps the two), and each entry copies
// the Config's value to the core.Config field of its name and back.
func TestCoreKnobsComplete(t *testing.T) {
	var c Config
	var cc core.Config
	listed := map[string]knob{}
	for _, k := range coreKnobs(&c, &cc) {
		require.NotContains(t, listed, k.name, "listed twice")
		listed[k.name] = k
	}
	rt, ct := reflect.TypeFor[Config](), reflect.TypeFor[core.Config]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		cf, ok := ct.FieldByName(f.Name)
		if !ok || cf.Type != f.Type {
			require.NotContains(t, listed, f.Name, "listed, but not a core knob")
			continue
		}
		k, ok := listed[f.Name]
		require.True(t, ok, "Config.%s shares core.Config.%s but coreKnobs does not map it", f.Name, f.Name)

		rv := reflect.ValueOf(&c).Elem().FieldByName(f.Name)
		cv := reflect.ValueOf(&cc).Elem().FieldByName(f.Name)
		require.False(t, k.set(), f.Name)
		switch p := rv.Addr().Interface().(type) {
		case *int:
			*p = 1234
		case *time.Duration:
			*p = 1234 * time.Millisecond
		case **slog.Logger:
			*p = slog.Default()
		case *func(core.TraceInfo) *core.Tracer:
			*p = func(core.TraceInfo) *core.Tracer { return nil }
		case **tls.Config:
			*p = &tls.Config{ServerName: "knob"}
		case *[]byte:
			*p = make([]byte, 32)
		case *bool:
			*p = true
		default:
			t.Fatalf("Config.%s: a %v knob the test does not know", f.Name, f.Type)
		}
		require.True(t, k.set(), f.Name)
		k.toCore()
		if f.Type.Kind() == reflect.Func { // (funcs compare only by their code)
			require.Equal(t, rv.Pointer(), cv.Pointer(), "%s copied to the core", f.Name)
		} else {
			require.Equal(t, rv.Interface(), cv.Interface(), "%s copied to the core", f.Name)
		}
		if k.fromCore != nil {
			cv.Set(reflect.Zero(cf.Type))
			k.fromCore()
			require.True(t, rv.IsZero(), "%s copied back", f.Name)
		}
	}
}
