package browser

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// The helpers against a page of our own: open it, wait for what its
// script does a moment later, evaluate, read the console, save a
// screenshot where the artifacts go.
func TestBrowser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!doctype html><title>t</title><p id="p">waiting</p><script src="/app.js"></script>`))
		case "/app.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write([]byte(`console.log("hello from the page");
setTimeout(() => { document.getElementById("p").textContent = "done"; document.body.dataset.ready = "yes"; }, 300);`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	t.Setenv(EnvArtifacts, t.TempDir())

	b := New(t, Options{Width: 800, Height: 600})
	b.Open(srv.URL + "/")
	b.WaitFor(`document.body.dataset.ready === "yes"`, 10*time.Second)
	var text string
	b.Eval(`document.getElementById("p").textContent`, &text)
	if text != "done" {
		t.Fatalf("the paragraph says %q", text)
	}
	var sum int
	b.Eval(`Promise.resolve(40 + 2)`, &sum)
	if sum != 42 {
		t.Fatalf("the promise gave %d", sum)
	}
	if err := b.WaitForE(`false`, 200*time.Millisecond); err == nil {
		t.Fatal("waiting for false did not time out")
	}
	path := b.Screenshot("page")
	png, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %v (%d bytes)", path, err, len(png))
	}
	waitConsole := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(b.Console(), "\n"), "hello from the page") {
		if time.Now().After(waitConsole) {
			t.Fatalf("console: %q", b.Console())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
