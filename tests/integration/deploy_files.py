"""The Prometheus side of deploy/ as the tests read it: the PromQL expressions of
deploy/alerts.yml and of the Grafana dashboard, the metric names and label matchers
in them, and a Prometheus text scrape as families with their label names and values.

Stdlib only: alerts.yml is read with a small line parser for the shapes it uses
(`- name:` groups, `- alert:` rules, `expr:` inline or as a `|` block); the tests
cross-check its counts against promtool's and Prometheus's own reading."""

import json
import os
import re

DEPLOY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                       "deploy"))
ALERTS = os.path.join(DEPLOY, "alerts.yml")
ALERTS_TEST = os.path.join(DEPLOY, "alerts_test.yml")
PROMETHEUS_CONFIG = os.path.join(DEPLOY, "prometheus.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana-ringmx.json")

# Labels Prometheus adds to every series of a target (not in ringmx's own output).
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"critical", "warning", "info"}


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def alert_rules(path=ALERTS):
    """[(group, alert name, expr)] in file order."""
    lines = open(path).read().split("\n")
    out, group, alert = [], None, None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*- name:\s*(\S+)\s*$", line)
        if m:
            group = m.group(1)
        m = re.match(r"^\s*- (alert|record):\s*(\S+)\s*$", line)
        if m:
            alert = m.group(2)
        m = re.match(r"^(\s*)expr:\s*(.*?)\s*$", line)
        if m:
            key_indent, value = len(m.group(1)), m.group(2)
            if value in ("|", "|-", "|+", ">", ">-", ">+"):
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > key_indent):
                    body.append(lines[i].strip())
                    i += 1
                expr = "\n".join(body).strip()
                if value.startswith(">"):
                    expr = " ".join(expr.split("\n"))
                out.append((group, alert, expr))
                continue
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out.append((group, alert, value))
        i += 1
    return out


def alert_groups(path=ALERTS):
    """Group names in file order."""
    return [m.group(1) for m in re.finditer(r"(?m)^\s*- name:\s*(\S+)\s*$", open(path).read())]


def _panels(panels):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))   # a collapsed row keeps its panels inside


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels(dash=None):
    return list(_panels((dash or dashboard()).get("panels", [])))


def dashboard_exprs(dash=None):
    """[(where, expr, legend)] for every panel query, annotation query and variable query
    (variables are label_values(...) calls, not PromQL: `where` starts with "variable")."""
    dash = dash or dashboard()
    out = []
    for p in dashboard_panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(("panel %r" % p.get("title"), t["expr"], t.get("legendFormat", "")))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(("annotation %r" % a.get("name"), a["expr"], a.get("textFormat", "")))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            out.append(("variable %r" % v.get("name"), q, ""))
    return out


def grafana_to_promql(expr, job="ringmx", instance=".+", rate_interval="1m"):
    """A dashboard query with its Grafana variables replaced, so that Prometheus can run it."""
    for var, value in (("$__rate_interval", rate_interval), ("$__interval", "15s"),
                       ("$__range", "1h"), ("${job}", job), ("$job", job),
                       ("${instance}", instance), ("$instance", instance)):
        expr = expr.replace(var, value)
    assert "$" not in expr, "a Grafana variable left in %r" % expr
    return expr


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# An identifier that is not part of a longer one, a number with unit (5m) or a $variable.
_IDENT = re.compile(r"(?<![A-Za-z0-9_:$.])[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')
_SELECTOR = re.compile(r'(?<![A-Za-z0-9_:$])([A-Za-z_:][A-Za-z0-9_:]*)\s*'
                       r'\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
PREFIXES = ("ringmx_", "process_")


def metric_names(expr, prefixes=PREFIXES):
    """Metric names in a PromQL expression that start with one of `prefixes`: bare
    identifiers outside string literals (so label values and names after `:` in
    recording-rule names do not count) and {__name__="..."} matchers."""
    names = set()
    for m in _MATCHER.finditer(expr):
        if m.group(1) == "__name__":
            assert m.group(2) == "=", "a __name__ regex cannot be checked: %r" % expr
            names.add(json.loads(m.group(3)))
    code = _STRING.sub('""', expr)
    code = re.sub(r"#[^\n]*", "", code)   # PromQL comments
    for ident in _IDENT.findall(code):
        if ident.startswith(prefixes):
            names.add(ident)
    return {n for n in names if n.startswith(prefixes)}


def selectors(expr):
    """[(metric name, [(label, op, value)])] for every name{...} selector."""
    out = []
    for m in _SELECTOR.finditer(expr):
        matchers = [(l, op, json.loads(v)) for l, op, v in _MATCHER.findall(m.group(2))]
        out.append((m.group(1), matchers))
    return out


def grouping_labels(expr):
    """Label names in by(...), without(...), on(...), ignoring(...), group_left/right(...)."""
    out = set()
    for _, inside in _GROUPING.findall(_STRING.sub('""', expr)):
        out.update(x.strip() for x in inside.split(",") if x.strip())
    return out


def parse_scrape(text):
    """{family: {"type": t, "series": [(sample name, {label: value})]}} of a text scrape;
    a sample belongs to the family it follows (`# TYPE` comes first)."""
    families, current = {}, None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, mtype = line.split(" ", 3)
            families[name] = {"type": mtype.strip(), "series": []}
            current = name
            continue
        if not line or line.startswith("#"):
            continue
        series = line.rsplit(" ", 1)[0]
        name, brace, rest = series.partition("{")
        labels = {}
        if brace:
            for k, v in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', rest):
                labels[k] = v
        assert current and name.startswith(current), "sample %r outside its family" % line
        families[current]["series"].append((name, labels))
    return families


def resolve(name, families):
    """(family, problem): the family a sample name belongs to, or why it has none. A
    histogram is queried by its _bucket/_sum/_count series, never by the bare name."""
    fam = families.get(name)
    if fam:
        if fam["type"] in ("histogram", "summary"):
            return None, "%s is a %s: query %s_bucket/_sum/_count" % (name, fam["type"], name)
        return name, None
    for suffix, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                          ("_count", ("histogram", "summary"))):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") in kinds:
            return base, None
    return None, "%s is not in the scrape" % name


def label_values(families, family, sample=None):
    """{label: set of values} over the samples of `family` (only those named `sample`)."""
    out = {}
    for sname, labels in families[family]["series"]:
        if sample and sname != sample:
            continue
        for k, v in labels.items():
            out.setdefault(k, set()).add(v)
    return out
