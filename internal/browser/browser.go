// Package browser drives a headless Chromium from tests (with
// github.com/chromedp/chromedp): open a page, wait for a JavaScript
// condition, evaluate JavaScript, save a screenshot as a test artifact.
//
//	b := browser.New(t) // skips the test when no Chromium is installed
//	b.Open(base + "/ui/")
//	b.WaitFor(`document.body.dataset.rendered`, 30*time.Second)
//	var n int
//	b.Eval(`document.querySelectorAll(".shard-cell").length`, &n)
//	b.Screenshot("stable")
//
// The binary is $WEFT_BROWSER, else the first of chromium,
// chromium-browser, google-chrome and google-chrome-stable on $PATH. None:
// the test is skipped, unless WEFT_REQUIRE_BROWSER=1 (CI, which installs
// Chromium), where it fails. Screenshots go to $WEFT_TEST_ARTIFACTS, else
// test-artifacts/ at the repository's root (git-ignored).
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Environment variables.
const (
	// EnvBinary names the browser binary to run instead of looking for one.
	EnvBinary = "WEFT_BROWSER"
	// EnvRequire set to 1 makes a missing browser fail the test rather
	// than skip it.
	EnvRequire = "WEFT_REQUIRE_BROWSER"
	// EnvArtifacts is the directory screenshots are saved in.
	EnvArtifacts = "WEFT_TEST_ARTIFACTS"
)

// candidates are the binaries looked for on $PATH, in order.
var candidates = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of the browser binary, or "" when there is none.
func Find() string {
	if p := os.Getenv(EnvBinary); p != "" {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
		return ""
	}
	for _, name := range candidates {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// Options shape the browser New starts.
type Options struct {
	// Width and Height are the window's size in CSS pixels (default
	// 1400 × 1000).
	Width, Height int
	// Timeout bounds each Open and Eval (default 30 s); WaitFor has its
	// own.
	Timeout time.Duration
}

// Browser is one headless browser with one tab, for one test. Its methods
// fail the test on error; the E-suffixed ones return it instead.
type Browser struct {
	t       testing.TB
	ctx     context.Context // the tab's
	opts    Options
	mu      sync.Mutex
	console []string
}

// New starts a headless browser for t, stopped when t ends. Without a
// browser binary it skips t (fails it with WEFT_REQUIRE_BROWSER=1).
func New(t testing.TB, opts ...Options) *Browser {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 1400, 1000
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	bin := Find()
	if bin == "" {
		msg := fmt.Sprintf("no Chromium found (looked for $%s, then %s on $PATH): install chromium to run this test", EnvBinary, strings.Join(candidates, ", "))
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s (%s=1 requires it)", msg, EnvRequire)
		}
		t.Skip(msg)
	}
	allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		// Tests often run as root in containers, where Chromium's sandbox
		// cannot start.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), allocOpts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &Browser{t: t, ctx: ctx, opts: o}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, fmt.Sprintf("%s: %s", m.Type, m.Text))
			b.mu.Unlock()
		}
	}()
	t.Logf("browser: %s (headless, %d×%d)", bin, o.Width, o.Height)
	return b
}

// Context is the tab's chromedp context, for actions this package does not
// wrap (derive a timeout from it; do not cancel it).
func (b *Browser) Context() context.Context { return b.ctx }

// Console returns what the page logged so far (console calls, uncaught
// exceptions, the browser's log: a CSP violation shows up there).
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// fail ends the test with err and what the page logged.
func (b *Browser) fail(what string, err error) {
	b.t.Helper()
	if c := b.Console(); len(c) > 0 {
		b.t.Logf("browser console:\n  %s", strings.Join(c, "\n  "))
	}
	b.t.Fatalf("browser: %s: %v", what, err)
}

// OpenE navigates to url and waits for the page to load.
func (b *Browser) OpenE(url string) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	return chromedp.Do(ctx, chromedp.Navigate(url))
}

// Open is OpenE, failing the test on error.
func (b *Browser) Open(url string) {
	b.t.Helper()
	if err := b.OpenE(url); err != nil {
		b.fail("opening "+url, err)
	}
}

// WaitForE waits until the JavaScript expression is truthy (checked every
// 50 ms), for at most timeout.
func (b *Browser) WaitForE(js string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	return err
}

// WaitFor is WaitForE, failing the test on a timeout.
func (b *Browser) WaitFor(js string, timeout time.Duration) {
	b.t.Helper()
	if err := b.WaitForE(js, timeout); err != nil {
		b.fail(fmt.Sprintf("waiting %v for %s", timeout, js), err)
	}
}

// EvalE evaluates the JavaScript expression and decodes its value (as
// JSON) into out (nil: the value is dropped). A promise is awaited.
func (b *Browser) EvalE(js string, out any) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if len(raw) == 0 {
		return errors.New("the expression has no JSON value (undefined?)")
	}
	return json.Unmarshal(raw, out)
}

// Eval is EvalE, failing the test on error.
func (b *Browser) Eval(js string, out any) {
	b.t.Helper()
	if err := b.EvalE(js, out); err != nil {
		b.fail("evaluating "+js, err)
	}
}

// ScreenshotPNG is a PNG of the whole page (beyond the window too).
func (b *Browser) ScreenshotPNG() ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.FullScreenshot(100))
}

// Screenshot saves a PNG of the whole page as a test artifact named after
// the test and name, logs where, and returns the path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	png, err := b.ScreenshotPNG()
	if err != nil {
		b.fail("taking a screenshot", err)
	}
	path := filepath.Join(ArtifactDir(b.t), fileName(b.t.Name()+"-"+name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("saving the screenshot: %v", err)
	}
	b.t.Logf("screenshot %q: %s", name, path)
	return path
}

// ArtifactDir is where tests leave artifacts: $WEFT_TEST_ARTIFACTS, else
// test-artifacts/ at the repository's root (found from the working
// directory by its go.mod; the working directory itself when there is
// none). It is created if missing.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvArtifacts)
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact directory: %v", err)
	}
	return dir
}

// RepoRoot is the nearest directory at or above the working directory
// holding a go.mod (the working directory when there is none).
func RepoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return wd
		}
		dir = parent
	}
}

// fileName makes a test's name a file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
