#!/usr/bin/env bash
# test.sh: THE test command of rtcrelay. Runs vet, build and every Go test (unit, fuzz seeds, browser e2e)
# with the race detector. Extra arguments go to `go test` (e.g. ./test.sh -run TestIssue3 ./e2e/).
#
# The browser tests need Debian's chromium and e2e/browser/node_modules; this script installs them when it can
# (chromium only as root with apt-get). When `unshare -n` works, the tests run inside a private network
# namespace that has only the loopback interface, so no test traffic can leave the machine.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium (apt-get)" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "test.sh: chromium is missing; browser e2e tests will skip (or fail under CI=true)" >&2
  fi
fi
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing redis-server (apt-get; the cluster tests start their own on a free loopback port)" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
  else
    echo "test.sh: redis-server is missing; the cluster tests will skip (or fail under CI=true)" >&2
  fi
fi
if [ ! -d e2e/browser/node_modules ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "test.sh: npm ci --prefix e2e/browser" >&2
    npm ci --prefix e2e/browser --no-audit --no-fund
  else
    echo "test.sh: npm is missing; browser e2e tests will skip (or fail under CI=true)" >&2
  fi
fi

# Fetch and build everything BEFORE entering the network namespace: there is no network inside it.
go mod download
go vet ./...
lint="$(command -v golangci-lint || true)"
[ -n "$lint" ] || { [ -x "$(go env GOPATH)/bin/golangci-lint" ] && lint="$(go env GOPATH)/bin/golangci-lint"; } || true
if [ -n "$lint" ]; then
  "$lint" run ./... # .golangci.yml: the linters the project agrees with
else
  echo "test.sh: golangci-lint not installed; skipping lint (go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0)" >&2
fi
go build ./...
go test -race -count=1 -run '^$' ./... >/dev/null # compiles every test binary (and the race runtime) up front

# Fuzzing for a bounded time (RTCRELAY_FUZZTIME per target, e.g. 10s; .ci/run sets it): every Fuzz* target of
# every package, one after the other, before the tests. Their seed corpora run with the tests anyway.
fuzztime="${RTCRELAY_FUZZTIME:-0}"
if [ "$fuzztime" != 0 ] && [ $# -eq 0 ]; then
  for pkg in $(go list ./...); do
    for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
      echo "test.sh: fuzzing $pkg $target for $fuzztime" >&2
      # A failing input is printed (and saved under the package's testdata/fuzz for a regression seed). A run
      # that failed without one (the fuzzing engine itself: a worker killed on a loaded machine) is retried once.
      for attempt in 1 2; do
        if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1); then
          break
        fi
        printf '%s\n' "$out" | tail -n 60 >&2
        if [ "$attempt" = 2 ] || printf '%s' "$out" | grep -q 'Failing input written'; then
          echo "test.sh: fuzzing $pkg $target failed" >&2
          exit 1
        fi
        echo "test.sh: fuzzing $pkg $target failed without a failing input; retrying once" >&2
      done
    done
  done
fi

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(./...)
fi
# -timeout bounds the whole run well inside CI's 90 minutes.
gotest=(go test -race -count=1 -timeout 25m "${args[@]}")

if unshare -n true 2>/dev/null && command -v ip >/dev/null 2>&1; then
  echo "test.sh: running tests in a private network namespace (loopback only)" >&2
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${gotest[@]}"
fi
echo "test.sh: unshare -n unavailable; running tests in the host network namespace (loopback-only flags still apply)" >&2
exec "${gotest[@]}"
