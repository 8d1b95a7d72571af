// chart-render renders a Helm chart's templates the way `helm template` does, for the chart
// test: Go's text/template (Helm's engine) with the Sprig functions (Helm's function library,
// from Debian's golang-github-masterminds-sprig-dev) and Helm's own include, tpl, required,
// toYaml, fromYaml and fail. Helm itself is not packaged for Debian; this covers what a chart
// without subcharts, hooks or lookup uses.
//
// Usage: chart-render [-f values.yaml]... [-name release] [-namespace ns] CHART_DIR
// Prints every rendered manifest as a YAML document preceded by "# Source: <template>".
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func readYaml(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// merge copies src over dst, recursing into maps (later values files win, as in Helm).
func merge(dst, src map[string]interface{}) {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file (repeatable; later ones win)")
	release := flag.String("name", "kiln", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chart-render [-f values.yaml]... CHART_DIR")
		os.Exit(2)
	}
	if err := render(flag.Arg(0), files, *release, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "chart-render:", err)
		os.Exit(1)
	}
}

func render(dir string, files []string, release, namespace string) error {
	chart, err := readYaml(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYaml(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		extra, err := readYaml(f)
		if err != nil {
			return err
		}
		merge(values, extra)
	}
	name, _ := chart["name"].(string)
	data := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"],
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.29.0", "Major": "1", "Minor": "29"},
		},
	}

	root := template.New(name)
	funcs := sprig.TxtFuncMap()
	// Helm drops these two (a chart must not read the renderer's environment).
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYaml
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		out := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &out); err != nil {
			out["Error"] = err.Error()
		}
		return out
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	funcs["include"] = func(tname string, d interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, tname, d)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, d interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, d)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	paths, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	var manifests []string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".tpl") {
			continue
		}
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tname := filepath.Join(name, "templates", filepath.Base(p))
		if _, err := root.New(tname).Parse(string(text)); err != nil {
			return err
		}
		if !strings.HasPrefix(filepath.Base(p), "_") && strings.HasSuffix(p, ".yaml") {
			manifests = append(manifests, tname)
		}
	}
	var out strings.Builder
	for _, tname := range manifests {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return err
		}
		// As Helm does: a missing value prints nothing.
		rendered := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, doc := range strings.Split(rendered, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", tname, strings.Trim(doc, "\n"))
		}
	}
	_, err = os.Stdout.WriteString(out.String())
	return err
}
