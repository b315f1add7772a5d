package ingest_test

// Feature flags: the documented test vectors (docs/edge-agent.md, "Feature flags"), the
// same in every binding and on every agent.

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"shopstream/ingest"
)

// flagsTOML is the test vectors' flags, with checkout_v2's two percentages to fill in.
const flagsTOML = `
[[flags]]
name = "checkout_v2"
variants = [{ name = "control", percent = %d }, { name = "treatment", percent = %d }]

[[flags]]
name = "search_ranking"
variants = [{ name = "bm25", percent = 50 }, { name = "learned", percent = 50 }]
`

func flagsWith(t *testing.T, control, treatment int) *ingest.Flags {
	t.Helper()
	flags, err := ingest.NewFlagsFromTOML(fmt.Sprintf(flagsTOML, control, treatment))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flags.Close() })
	return flags
}

func wantVariant(t *testing.T, flags *ingest.Flags, flag, user, want string) {
	t.Helper()
	got, ok, err := flags.Variant(flag, user)
	if err != nil || !ok || got != want {
		t.Errorf("Variant(%q, %q) = %q, %v, %v; want %q", flag, user, got, ok, err, want)
	}
}

func TestFlagsAssignTheDocumentedVariants(t *testing.T) {
	flags := flagsWith(t, 90, 10)
	if n := flags.Len(); n != 2 {
		t.Errorf("Len() = %d, want 2", n)
	}
	// Buckets: checkout_v2/user-1 6666 and user-2 4270 (control owns 0-8999),
	// search_ranking/user-1 9624 (learned owns 5000-9999).
	wantVariant(t, flags, "checkout_v2", "user-1", "control")
	wantVariant(t, flags, "checkout_v2", "user-2", "control")
	wantVariant(t, flags, "search_ranking", "user-1", "learned")
	if got, ok, err := flags.Variant("no_such_flag", "user-1"); ok || got != "" || err != nil {
		t.Errorf("an unknown flag: %q, %v, %v", got, ok, err)
	}
	assigned, err := flags.Assign("user-1")
	want := map[string]string{"checkout_v2": "control", "search_ranking": "learned"}
	if err != nil || !maps.Equal(assigned, want) {
		t.Errorf("Assign(user-1) = %v, %v; want %v", assigned, err, want)
	}
}

func TestGrowingTreatmentMovesTheUsersOfTheBoundary(t *testing.T) {
	// 90/10 to 60/40: buckets 6000-8999 move to treatment, user-1's 6666 among them.
	flags := flagsWith(t, 60, 40)
	wantVariant(t, flags, "checkout_v2", "user-1", "treatment")
	wantVariant(t, flags, "checkout_v2", "user-2", "control")
}

func TestFlagsFromJSONAssignAsFromTOML(t *testing.T) {
	flags, err := ingest.NewFlagsFromJSON([]byte(`{"flags": [
		{"name": "checkout_v2", "variants": [{"name": "control", "percent": 90}, {"name": "treatment", "percent": 10}]},
		{"name": "search_ranking", "variants": [{"name": "bm25", "percent": 50}, {"name": "learned", "percent": 50}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer flags.Close()
	fromTOML := flagsWith(t, 90, 10)
	for _, user := range []string{"user-1", "user-2", "u-42", ""} {
		a, errA := flags.Assign(user)
		b, errB := fromTOML.Assign(user)
		if errA != nil || errB != nil || !maps.Equal(a, b) {
			t.Errorf("%q: JSON %v (%v), TOML %v (%v)", user, a, errA, b, errB)
		}
	}
}

func TestBadFlagsAreRefusedNamingWhere(t *testing.T) {
	_, err := ingest.NewFlagsFromTOML(fmt.Sprintf(flagsTOML, 80, 10))
	var e *ingest.Error
	if !errors.As(err, &e) || !errors.Is(err, ingest.ErrConfig) {
		t.Fatalf("percentages adding up to 90: %v", err)
	}
	if e.Message != "flags[0].variants: the percentages add up to 90, not 100" {
		t.Errorf("message %q", e.Message)
	}
	_, err = ingest.NewFlagsFromTOML("[[flags]]\nnme = \"f\"\n")
	if !errors.Is(err, ingest.ErrConfig) || !strings.Contains(err.Error(), "line 2 column 1") {
		t.Errorf("an unknown key: %v", err)
	}
	if _, err := ingest.NewFlagsFromJSON(nil); !errors.Is(err, ingest.ErrConfig) {
		t.Errorf("empty JSON: %v", err)
	}
}

func TestFlagsFromFileByExtension(t *testing.T) {
	dir := t.TempDir()
	tomlPath := filepath.Join(dir, "flags.toml")
	if err := os.WriteFile(tomlPath, []byte(fmt.Sprintf(flagsTOML, 90, 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := ingest.NewFlagsFromFile(tomlPath)
	if err != nil {
		t.Fatalf("TOML file: %v", err)
	}
	defer fromFile.Close()
	if v, ok, err := fromFile.Variant("checkout_v2", "user-1"); err != nil || !ok || v != "control" {
		t.Errorf("checkout_v2/user-1: %q %v %v", v, ok, err)
	}
	jsonPath := filepath.Join(dir, "flags.json")
	doc := `{"flags":[{"name":"checkout_v2","variants":[{"name":"control","percent":60},{"name":"treatment","percent":40}]}]}`
	if err := os.WriteFile(jsonPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	fromJSON, err := ingest.NewFlagsFromFile(jsonPath)
	if err != nil {
		t.Fatalf("JSON file: %v", err)
	}
	defer fromJSON.Close()
	if v, _, _ := fromJSON.Variant("checkout_v2", "user-1"); v != "treatment" {
		t.Errorf("JSON 60/40, user-1: %q", v)
	}
	_, err = ingest.NewFlagsFromFile(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.toml: flags file") {
		t.Errorf("a missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(fmt.Sprintf(flagsTOML, 80, 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ingest.NewFlagsFromFile(bad)
	var e *ingest.Error
	if !errors.As(err, &e) || !errors.Is(err, ingest.ErrConfig) || !strings.HasPrefix(err.Error(), bad+": ") {
		t.Errorf("bad flags in a file: %v", err)
	}
}

func TestFlagsMisuseGivesClearErrors(t *testing.T) {
	flags := flagsWith(t, 90, 10)
	if _, err := flags.Assign("u\xff"); !errors.Is(err, ingest.ErrInvalidArgument) {
		t.Errorf("a user that is not UTF-8: %v", err)
	}
	if _, _, err := flags.Variant("checkout_v2\xff", "u"); !errors.Is(err, ingest.ErrInvalidArgument) {
		t.Errorf("a flag that is not UTF-8: %v", err)
	}
	flags.Close()
	flags.Close()
	if _, err := flags.Assign("user-1"); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Assign after Close: %v", err)
	}
	if _, _, err := flags.Variant("checkout_v2", "user-1"); !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Variant after Close: %v", err)
	}
	if flags.Len() != 0 {
		t.Errorf("Len after Close: %d", flags.Len())
	}
}

func TestFlagsAreSharedByGoroutines(t *testing.T) {
	flags := flagsWith(t, 90, 10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				// Until Close, from another goroutine, takes the flags away.
				if _, err := flags.Assign(fmt.Sprintf("user-%d-%d", g, i)); err != nil && !errors.Is(err, ingest.ErrClosed) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); flags.Close() }()
	wg.Wait()
}
