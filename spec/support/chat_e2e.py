#!/usr/bin/python3
"""The browser half of spec/chat_e2e_spec.lua: headless Chromium, driven
through chromedriver's WebDriver HTTP API with nothing but the standard
library (urllib), opens the chat page, joins as NICK, types SAY, waits
until a line containing EXPECT is on the page, checks that the room's
text was shown as text (no element made from it), and saves a screenshot.

    chat_e2e.py URL NICK SAY EXPECT SCREENSHOT

Prints one line per step on stdout; exit status 0 only if every step
passed. Every wait is bounded, the whole run is bounded (DEADLINE), and
chromedriver and every browser process are killed on the way out, on
success, on failure, on SIGTERM or at the deadline.
"""
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
DEADLINE = 90  # seconds for the whole run
STEP = 30      # seconds for one wait (the page, a line)
ENTER = "\ue007"


class Failed(Exception):
    pass


def say(text):
    print(text, flush=True)


def on_signal(signum, _frame):
    raise Failed("stopped by signal %d" % signum)


def start_driver(profile):
    """chromedriver on a port of the system's choice (--port=0), in a
    session of its own so that it and the browser it starts can be killed
    as a group. Returns the process and its port."""
    proc = subprocess.Popen(
        [CHROMEDRIVER, "--port=0", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=profile)
    end = time.monotonic() + STEP
    seen = b""
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        marker = b"started successfully on port "
        if marker in line:
            port = int(line.split(marker)[1].split(b".")[0])
            return proc, port
    raise Failed("chromedriver did not start: %r" % seen[-500:])


class WebDriver:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port
        self.session = None

    def call(self, method, path, body=None, timeout=STEP):
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = e.read()[:500]
            raise Failed("WebDriver %s %s: %d %s" % (method, path, e.code,
                                                      detail.decode(errors="replace")))
        return answer.get("value")

    def s(self, path):
        return "/session/%s%s" % (self.session, path)

    def open(self, profile):
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         "--no-default-browser-check", "--disable-extensions",
                         "--disable-background-networking", "--disable-sync",
                         "--window-size=900,600",
                         "--user-data-dir=" + os.path.join(profile, "chromium")],
            }}}}, timeout=60)
        self.session = value["sessionId"]

    def go(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def script(self, source, *args):
        return self.call("POST", self.s("/execute/sync"),
                         {"script": source, "args": list(args)})

    def element(self, css):
        value = self.call("POST", self.s("/element"),
                          {"using": "css selector", "value": css})
        return next(iter(value.values()))

    def type(self, css, text):
        self.call("POST", self.s("/element/%s/value" % self.element(css)),
                  {"text": text})

    def console_errors(self):
        """The page's console errors so far (a script error, a resource
        that failed to load, a Content-Security-Policy violation)."""
        entries = self.call("POST", self.s("/se/log"), {"type": "browser"})
        return [e.get("message", "") for e in entries or []
                if e.get("level") == "SEVERE"]

    def screenshot(self):
        return base64.b64decode(self.call("GET", self.s("/screenshot")))

    def close(self):
        if self.session:
            try:
                self.call("DELETE", self.s(""), timeout=10)
            except Exception:  # the browser may be gone already
                pass
            self.session = None


# The page's lines, read from the DOM: each item's text, and how many
# elements the items hold (the room's text must never become elements).
READ_LOG = """
const items = Array.from(document.querySelectorAll('#log li'));
return { lines: items.map(li => li.textContent),
         children: items.reduce((n, li) => n + li.children.length, 0),
         inputEnabled: !document.getElementById('line').disabled };
"""


def wait_for(driver, what, test):
    end = time.monotonic() + STEP
    state = None
    while time.monotonic() < end:
        state = driver.script(READ_LOG)
        if test(state):
            return state
        time.sleep(0.1)
    raise Failed("timed out waiting for %s; the page shows %r" % (what, state))


def has_line(text):
    return lambda state: any(text in line for line in state["lines"])


def kill_browser(driver_proc, profile):
    """chromedriver's process group, then any process still using our
    profile directory (a browser that left the group)."""
    if driver_proc is not None and driver_proc.poll() is None:
        try:
            os.killpg(driver_proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if driver_proc is not None:
        try:
            driver_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    marker = profile.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def run(url, nick, line, expect, shot):
    profile = tempfile.mkdtemp(prefix="loom-chat-e2e-")
    driver_proc = None
    driver = None
    try:
        driver_proc, port = start_driver(profile)
        say("chromedriver on 127.0.0.1:%d" % port)
        driver = WebDriver(port)
        driver.open(profile)
        say("browser started")
        driver.go(url)
        wait_for(driver, "the nickname prompt",
                 lambda s: s["inputEnabled"] and
                 has_line("What is your nickname?")(s))
        say("page open: " + url)
        driver.type("#line", nick + ENTER)
        wait_for(driver, "the greeting", has_line("* hello %s!" % nick))
        say("joined as " + nick)
        driver.type("#line", line + ENTER)
        wait_for(driver, "our own line", has_line("> " + line))
        say("sent: " + line)
        state = wait_for(driver, "the reply", has_line(expect))
        say("reply shown: " + expect)
        if state["children"] != 0:
            raise Failed("the room's text made %d elements in the page"
                         % state["children"])
        if expect not in state["lines"]:
            raise Failed("the reply is not a line of its own: %r"
                         % state["lines"])
        errors = driver.console_errors()
        if errors:
            raise Failed("the page logged errors: %r" % errors)
        say("no console errors")
        png = driver.screenshot()
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise Failed("the screenshot is not a PNG")
        os.makedirs(os.path.dirname(shot) or ".", exist_ok=True)
        with open(shot, "wb") as f:
            f.write(png)
        say("screenshot: %s (%d bytes)" % (shot, len(png)))
    finally:
        signal.alarm(0)  # the deadline does not cut the cleaning short
        if driver is not None:
            driver.close()
        kill_browser(driver_proc, profile)
        shutil.rmtree(profile, ignore_errors=True)


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(DEADLINE)
    try:
        run(*argv[1:])
    except Failed as e:
        print("FAILED: %s" % e, flush=True)
        return 1
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
