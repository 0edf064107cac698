package image

import (
	"regexp"
	"slices"
	"testing"
)

func TestPackages(t *testing.T) {
	pkgs := Packages()
	for _, want := range []string{"python3", "python3-ipython", "python3-numpy", "python3-pandas", "python3-matplotlib",
		"python3-scipy", "python3-sympy", "python3-sklearn", "python3-seaborn", "python3-pil", "python3-openpyxl",
		"python3-bs4", "python3-lxml", "python3-yaml", "python3-tabulate", "python3-requests"} {
		if !slices.Contains(pkgs, want) {
			t.Errorf("packages.txt lacks %s", want)
		}
	}
	for _, p := range pkgs {
		if !regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`).MatchString(p) {
			t.Errorf("not a Debian package name: %q", p)
		}
	}
}

func TestTagIsAHashOfInputs(t *testing.T) {
	if !regexp.MustCompile(`^localhost/sandpool-python:[0-9a-f]{16}$`).MatchString(Tag()) {
		t.Errorf("tag %q", Tag())
	}
	if InputsHash() != Tag()[len(Repository)+1:] {
		t.Errorf("tag %q does not end with the inputs hash %q", Tag(), InputsHash())
	}
}
