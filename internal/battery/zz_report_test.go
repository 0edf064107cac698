package battery_test

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sandpool/sandpool/sandbox"
)

// TestZZBatteryReport prints the outcome of every check per runtime (it
// runs last: top-level tests run one after another in file and source
// order, each once its parallel subtests are done). With
// SANDPOOL_BATTERY_REPORT set, the table also goes to that file.
func TestZZBatteryReport(t *testing.T) {
	outcomesMu.Lock()
	defer outcomesMu.Unlock()
	ids := make([]string, 0, len(outcomes))
	for id := range outcomes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i][0] != ids[j][0] {
			return strings.Index("NFPRXI", ids[i][:1]) < strings.Index("NFPRXI", ids[j][:1])
		}
		return len(ids[i]) < len(ids[j]) || len(ids[i]) == len(ids[j]) && ids[i] < ids[j]
	})
	var b strings.Builder
	fmt.Fprintf(&b, "\n| check | runc | runsc (gVisor %s) | runsc-debian (gVisor 20221219) |\n|---|---|---|---|\n", sandbox.GVisorVersion)
	for _, id := range ids {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", id, outcomes[id]["runc"], outcomes[id]["runsc"], outcomes[id]["runsc-debian"])
	}
	t.Log(b.String())
	if path := os.Getenv("SANDPOOL_BATTERY_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
