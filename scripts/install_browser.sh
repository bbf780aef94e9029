#!/usr/bin/env bash
# Install Debian's headless Chromium (and ChromeDriver) for the browser checks in tests/test_browser.py.
# Idempotent: returns at once when /usr/bin/chromium already runs. Never downloads a browser from a test
# tool (playwright / puppeteer downloads fail offline); only Debian's packages, through apt.
# Exit status 0 when chromium is usable afterwards, 1 otherwise (the tests then skip with a reason).
set -u

chromium_works() {
    command -v chromium >/dev/null 2>&1 && chromium --version >/dev/null 2>&1
}

if chromium_works; then
    echo "install_browser: $(chromium --version) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser: not root and no passwordless sudo; cannot install chromium (browser tests will skip)" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get on this machine; install chromium yourself (browser tests will skip)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_browser: apt-get install chromium chromium-driver (about 2 minutes)"
$SUDO apt-get update -qq || echo "install_browser: apt-get update failed; trying the install anyway" >&2
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null; then
    echo "install_browser: apt-get install chromium failed (browser tests will skip)" >&2
    exit 1
fi
if chromium_works; then
    echo "install_browser: $(chromium --version) installed"
    exit 0
fi
echo "install_browser: chromium installed but does not start (browser tests will skip)" >&2
exit 1
