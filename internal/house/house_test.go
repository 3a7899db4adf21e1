// Package house checks the house rules of CONTRIBUTING.md that a reader
// would otherwise have to count by hand: idem's exported surface, the
// length of functions, and doc comments on everything exported.
package house

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// root is the module's root, from this package's folder.
const root = "../.."

// maxIdemSurface bounds package idem's exported identifiers, methods
// included: the application-facing API stays small enough to learn whole.
const maxIdemSurface = 60

// maxFuncLines bounds a function, from its func line to its closing brace.
const maxFuncLines = 60

// sourceFiles returns the non-test Go files of the module below dirs (all of
// it without dirs), parsed with comments, by path.
func sourceFiles(t *testing.T, dirs ...string) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if name := d.Name(); path != filepath.Join(root, dir) && (strings.HasPrefix(name, ".") || name == "testdata") {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
					return filepath.SkipDir // a module of its own (testenv/docker)
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files[path] = f
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		t.Fatalf("no Go files below %v", dirs)
	}
	return fset, files
}

// exported lists the exported identifiers a file declares: functions,
// methods of exported types, types, constants and variables, each with
// whether it has a doc comment.
func exported(f *ast.File) map[string]bool {
	names := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() {
				continue
			}
			name := d.Name.Name
			if d.Recv != nil {
				recv := receiver(d.Recv.List[0].Type)
				if !ast.IsExported(recv) {
					continue
				}
				name = recv + "." + name
			}
			names[name] = d.Doc != nil
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() {
						names[s.Name.Name] = s.Doc != nil || d.Doc != nil
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() {
							names[n.Name] = s.Doc != nil || d.Doc != nil || s.Comment != nil
						}
					}
				}
			}
		}
	}
	return names
}

// receiver names a method's receiver type.
func receiver(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return receiver(e.X)
	case *ast.IndexExpr:
		return receiver(e.X)
	case *ast.IndexListExpr:
		return receiver(e.X)
	case *ast.Ident:
		return e.Name
	}
	return ""
}

// TestIdemSurface: package idem exports at most maxIdemSurface
// identifiers, methods included, each documented.
func TestIdemSurface(t *testing.T) {
	var all []string
	_, files := sourceFiles(t, "idem")
	for path, f := range files {
		if filepath.Dir(path) != filepath.Join(root, "idem") {
			continue
		}
		for name, documented := range exported(f) {
			all = append(all, name)
			if !documented {
				t.Errorf("idem.%s (%s) has no doc comment", name, path)
			}
		}
	}
	if len(all) > maxIdemSurface {
		t.Errorf("package idem exports %d identifiers, methods included; the bound is %d (move what only backend authors or tools need to idem/kernel, what adapters share to idem/internal): %v",
			len(all), maxIdemSurface, all)
	}
	t.Logf("package idem exports %d identifiers", len(all))
}

// TestDocComments: every exported identifier of a library package (not a
// command, an example or the project's internal test plumbing) has a doc
// comment, so that go doc reads as the package's spec.
func TestDocComments(t *testing.T) {
	_, files := sourceFiles(t, "idem", "dynamo", "cassandra")
	for path, f := range files {
		if f.Name.Name == "main" || strings.Contains(path, string(filepath.Separator)+"internal"+string(filepath.Separator)) {
			continue
		}
		for name, documented := range exported(f) {
			if !documented {
				t.Errorf("%s: %s.%s has no doc comment", path, f.Name.Name, name)
			}
		}
	}
}

// TestFunctionLength: no function of the module, examples and commands
// included, is longer than maxFuncLines lines; tests are free.
func TestFunctionLength(t *testing.T) {
	fset, files := sourceFiles(t)
	for path, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := end.Line - start.Line + 1; n > maxFuncLines {
				t.Errorf("%s:%d: %s is %d lines, over %d: split it into the steps it takes", path, start.Line, fn.Name.Name, n, maxFuncLines)
			}
		}
	}
}
