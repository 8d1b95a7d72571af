// hcl-fmt checks Terraform files the way `terraform fmt -check -recursive` does, with the
// formatter terraform fmt itself runs: HCL's hclwrite.Format (from Debian's
// golang-github-hashicorp-hcl-v2-dev). Terraform is on no package registry these machines reach;
// the deploy test uses this when `terraform` is not on PATH. It does not apply terraform fmt's
// few rewrites of legacy syntax (e.g. quoted type constraints), only the layout.
//
// Usage: hcl-fmt DIR...
// Prints every .tf/.tfvars file that is not formatted, with the lines that would change, and
// exits 3 if there was one (2 on a syntax error).
package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hcl-fmt DIR...")
		os.Exit(2)
	}
	unformatted := 0
	for _, root := range os.Args[1:] {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !(strings.HasSuffix(path, ".tf") || strings.HasSuffix(path, ".tfvars")) {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if _, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos); diags.HasErrors() {
				fmt.Fprintf(os.Stderr, "%s: %s\n", path, diags.Error())
				os.Exit(2)
			}
			formatted := hclwrite.Format(src)
			if !bytes.Equal(src, formatted) {
				unformatted++
				fmt.Println(path)
				printChangedLines(string(src), string(formatted))
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if unformatted > 0 {
		os.Exit(3)
	}
}

// printChangedLines shows the lines that differ, position by position (formatting changes
// whitespace within lines, so the line count stays the same in practice).
func printChangedLines(before, after string) {
	a := strings.Split(before, "\n")
	b := strings.Split(after, "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			fmt.Printf("  line %d:\n  - %q\n  + %q\n", i+1, x, y)
		}
	}
}
