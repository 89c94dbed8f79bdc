#!/usr/bin/env bash
# Installs the Debian packages that the Swift (s3api) and DynamoDB Local test lanes need:
#   python3-swift + memcached (Swift lane), Java >= 17 (DynamoDB Local lane; present on this machine kind).
# Idempotent: each step checks first and prints one line. Runs as root with no stdin (CI).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf 'install-system-deps: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    say "not root and no sudo: cannot install system packages"; exit 1; fi
fi

log="$(mktemp -t install-system-deps.XXXXXX.log)"
trap 'rm -f "$log"' EXIT
run_logged() { # run quietly; on failure show the tail of the output
  if ! "$@" >"$log" 2>&1 </dev/null; then
    say "FAILED: $*"; tail -n 30 "$log" | sed 's/^/  /'; exit 1
  fi
}

need=()

# Swift must be importable by Debian's python (a pyenv python3 earlier on PATH cannot see it).
if dpkg -s python3-swift >/dev/null 2>&1 && [ -x /usr/bin/python3 ] \
   && env -u PYTHONPATH -u PYTHONHOME /usr/bin/python3 -c 'import swift.common.ring' >/dev/null 2>&1; then
  say "python3-swift: present ($(dpkg-query -W -f='${Version}' python3-swift))"
else
  say "python3-swift: missing, will install"
  need+=(python3-swift)
fi

memcached_bin() { # prints the path of a runnable memcached, or fails
  local p
  for p in "$(command -v memcached 2>/dev/null || true)" /usr/bin/memcached; do
    if [ -n "$p" ] && [ -f "$p" ] && [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}
if memcached_bin >/dev/null; then
  say "memcached: present"
else
  say "memcached: missing, will install"
  need+=(memcached)
fi

java_ok=0
if java_bin="$(command -v java 2>/dev/null)"; then
  if "$java_bin" -version 2>&1 | head -n1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then java_ok=1; fi
fi
if [ "$java_ok" = 1 ]; then
  say "java: present ($("$java_bin" -version 2>&1 | head -n1))"
else
  say "java >= 17: missing, will install openjdk-17-jre-headless"
  need+=(openjdk-17-jre-headless)
fi

if [ "${#need[@]}" -eq 0 ]; then
  say "nothing to install"
else
  say "apt-get update"
  run_logged $SUDO apt-get update -q
  say "apt-get install ${need[*]}"
  run_logged $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Final checks: what the test harness (test/src/servers) actually runs.
if ver="$(env -u PYTHONPATH -u PYTHONHOME /usr/bin/python3 -c 'import swift.proxy.server, swift.common.middleware.s3api.s3api; print(swift.__version__)' 2>/dev/null)"; then
  say "check: /usr/bin/python3 imports swift $ver with s3api"
else
  say "check FAILED: /usr/bin/python3 cannot import swift"; exit 1
fi
if mc="$(memcached_bin)"; then
  say "check: $("$mc" -V 2>/dev/null)"
else
  say "check FAILED: memcached not found"; exit 1
fi
if java -version >/dev/null 2>&1; then
  say "check: $(java -version 2>&1 | head -n1)"
else
  say "check FAILED: java does not run"; exit 1
fi
say "done"
