"""The man pages in docs/man: clean roff, and complete.

groff (man macros, every warning on) formats each page without a word on
stderr. ringmx.toml(5) documents every key of deploy/ringmx.toml (documented
as complete, commented-out examples included) in its own section, every key
name the loader (core/config_load.cc) accepts, and nothing else. ringmx(8)
and ringmx-bench(1) document every option their --help lists; ringmxctl(8)
every option and queue operation."""

import os
import re
import shutil
import subprocess
import unittest

from harness import BINARY, main

SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MAN = os.path.join(SOURCE, "docs", "man")
PAGES = ["ringmx.8", "ringmx.toml.5", "ringmx-bench.1", "ringmxctl.8"]
BENCH = os.path.normpath(os.path.join(os.path.dirname(BINARY), "..", "bench", "ringmx-bench"))


def read(path):
    with open(path) as f:
        return f.read()


def example_keys(text):
    """{(section, key)} of a TOML file, commented-out "# key = value" examples included.
    Sections: "" (top level), "server", ..., "listener", "route", "tls.sni"."""
    keys = set()
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        commented = line.startswith("#")
        body = line.lstrip("#").strip()
        m = re.match(r"^\[\[?([a-z_.]+)\]\]?(\s|#|$)", body)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^([a-z_][a-z_0-9]*)\s*=", body)
        if m and not (commented and " " in body.split("=")[0].strip()):
            keys.add((section, m.group(1)))
    return keys


def loader_keys(text):
    """Key names core/config_load.cc accepts: the field tables and the name comparisons."""
    names = set(re.findall(r'\{"([a-z_0-9]+)",\s*(?:nullptr,\s*)?&', text))
    names |= set(re.findall(r'(?:name|k\.str\(\)) == "([a-z_0-9]+)"', text))
    return names


def man_sections(text):
    """{section title: text} of a page, by .SH."""
    out, title, buf = {}, None, []
    for line in text.splitlines():
        m = re.match(r'^\.SH\s+"?([^"]*)"?\s*$', line)
        if m:
            if title is not None:
                out[title] = "\n".join(buf)
            title, buf = m.group(1), []
        else:
            buf.append(line)
    if title is not None:
        out[title] = "\n".join(buf)
    return out


def items(section_text):
    """The bold words that start a .TP item (the keys or options it documents)."""
    out = []
    lines = section_text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith(".TP"):
            m = re.match(r"^\.B[IR]?\s+(\S+)", lines[i + 1])
            if m:
                out.append(m.group(1).strip('"').replace("\\-", "-"))
    return out


def bold_words(section_text):
    return {m.group(1).replace("\\-", "-").strip('"') for m in
            re.finditer(r"^\.B[IR]?\s+(\S+)", section_text, re.M)}


def help_options(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


class ManPages(unittest.TestCase):
    def test_groff_has_no_warnings(self):
        if not shutil.which("groff"):
            self.fail("groff is not installed (tools/dev.sh installs groff-base)")
        for page in PAGES:
            r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(MAN, page)],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)

    def test_groff_check_catches_a_broken_page(self):
        # The check above can fail: an unknown macro and a bad escape are reported.
        broken = read(os.path.join(MAN, "ringmx.8")).replace(".SH OPTIONS", ".SHH OPTIONS\n\\[nosuch]")
        r = subprocess.run(["groff", "-man", "-ww", "-z"], input=broken, capture_output=True,
                           text=True, timeout=60)
        self.assertNotEqual(r.stderr, "")

    def test_config_page_documents_every_key(self):
        page = man_sections(read(os.path.join(MAN, "ringmx.toml.5")))
        documented = {}
        for title, text in page.items():
            m = re.match(r"^\[\[?([a-z_.]+)\]\]?$", title)
            section = m.group(1) if m else ("" if title == "TOP LEVEL" else None)
            if section is not None:
                documented[section] = items(text)
        example = example_keys(read(os.path.join(SOURCE, "deploy", "ringmx.toml")))
        self.assertGreater(len(example), 70)
        missing = []
        for section, key in sorted(example):
            if section == "tls.sni":   # described inside the [tls] sni item
                if key not in bold_words(page["[tls]"]):
                    missing.append("tls.sni." + key)
            elif key not in documented.get(section, []):
                missing.append((section + "." if section else "") + key)
        self.assertEqual(missing, [], "keys of deploy/ringmx.toml not in ringmx.toml(5)")
        # No key documented that the example file does not have (stale documentation).
        tables = {s for s, _ in example}   # [[tls.sni]] is the key sni of [tls]
        extra = [(s, k) for s, ks in documented.items() for k in ks
                 if (s, k) not in example and (s + "." + k) not in tables]
        self.assertEqual(extra, [], "documented in ringmx.toml(5), not in deploy/ringmx.toml")
        # Every key name the loader accepts is documented somewhere.
        accepted = set()
        for name in sorted(os.listdir(os.path.join(SOURCE, "core"))):
            if name.startswith("config_load") and name.endswith(".cc"):
                accepted |= loader_keys(read(os.path.join(SOURCE, "core", name)))
        self.assertGreater(len(accepted), 60)
        all_documented = {k for ks in documented.values() for k in ks} | \
            bold_words(page["[tls]"]) | {p for s in documented for p in s.split(".")}
        self.assertEqual(sorted(accepted - all_documented), [],
                         "accepted by core/config_load.cc, not in ringmx.toml(5)")

    def test_key_check_can_fail(self):
        text = read(os.path.join(MAN, "ringmx.toml.5"))
        cut = text.replace(".TP\n.B ring_entries\n", "")
        self.assertNotEqual(cut, text)
        self.assertNotIn("ring_entries", items(man_sections(cut)["[server]"]))
        self.assertIn(("server", "ring_entries"),
                      example_keys(read(os.path.join(SOURCE, "deploy", "ringmx.toml"))))

    def check_options(self, program, page, args=("--help",), at_least=4):
        r = subprocess.run([program] + list(args), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        options = help_options(r.stdout)
        self.assertGreaterEqual(len(options), at_least, r.stdout)
        text = read(os.path.join(MAN, page))
        listed = set()
        for title, body in man_sections(text).items():
            listed |= {w for w in items(body) if w.startswith("--")}
            listed |= {w.split(",")[0] for w in items(body) if w.startswith("--")}
        # ".BR \-h ", " \-\-help" items: every long option in an item line.
        for m in re.finditer(r"^\.TP\n(\.B[IR]?\s.*)$", text, re.M):
            listed |= help_options(m.group(1).replace("\\-", "-"))
        self.assertEqual(sorted(options - listed), [], "options of %s --help not in %s" %
                         (os.path.basename(program), page))

    def test_ringmx_page_has_every_option(self):
        self.check_options(BINARY, "ringmx.8")
        page = man_sections(read(os.path.join(MAN, "ringmx.8")))
        for title in ("SIGNALS", "FILES", "EXIT STATUS", "SERVICE MANAGER"):
            self.assertIn(title, page)
        for sig in ("SIGHUP", "SIGTERM", "SIGINT"):
            self.assertIn(sig, page["SIGNALS"])

    def test_bench_page_has_every_option(self):
        self.assertTrue(os.access(BENCH, os.X_OK), BENCH)
        self.check_options(BENCH, "ringmx-bench.1")

    def test_ringmxctl_page(self):
        ctl = os.path.join(SOURCE, "tools", "ringmxctl")
        self.check_options(ctl, "ringmxctl.8")
        self.check_options(ctl, "ringmxctl.8", ("queue", "--help"), at_least=3)
        r = subprocess.run([ctl, "queue", "--help"], capture_output=True, text=True, timeout=30)
        ops = re.search(r"\{([a-z,]+)\}", r.stdout).group(1).split(",")
        commands = man_sections(read(os.path.join(MAN, "ringmxctl.8")))["COMMANDS"]
        for op in ops:
            self.assertRegex(commands, r"\.BI?\s+\"?queue %s\b" % op)


if __name__ == "__main__":
    main()
