#!/bin/sh
# Install Debian's chromium for tests/test_browser.py (Playwright drives /usr/bin/chromium; no
# browser is downloaded). Idempotent and quiet: keeps a chromium that is already there. When it
# cannot install (no apt-get, not root and no password-less sudo, no package) it says why and
# exits 0: the browser test then skips with that reason, except under CI=true, where it fails.
set -u
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "browser: keeping $("$CHROMIUM" --version 2>/dev/null | head -n 1) at $CHROMIUM"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: $CHROMIUM is missing and apt-get is not available here; install Debian's chromium" \
    "(or any Chromium at $CHROMIUM) to run tests/test_browser.py"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo -n"
else
  echo "browser: $CHROMIUM is missing and installing it needs root (no password-less sudo);" \
    "run: sudo apt-get install chromium"
  exit 0
fi
echo "browser: installing Debian's chromium with apt-get"
if $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 \
  && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    >/dev/null 2>&1 \
  && [ -x "$CHROMIUM" ]; then
  echo "browser: installed $("$CHROMIUM" --version 2>/dev/null | head -n 1) at $CHROMIUM"
else
  echo "browser: apt-get could not install chromium (no network or no such package?);" \
    "tests/test_browser.py will skip, and fail under CI=true"
fi
exit 0
