// Package e2e holds rtcrelay's end-to-end tests: real server processes on loopback, headless Chromium driven by
// e2e/browser/driver.mjs (playwright-core) with the official Flashphoner Web SDK and with rtcrelay's own pages.
//
// Run them with ./test.sh (which enters a private network namespace when it can), or directly with
// go test ./e2e/. They skip when Chromium or e2e/browser/node_modules are missing, except under CI=true.
package e2e
