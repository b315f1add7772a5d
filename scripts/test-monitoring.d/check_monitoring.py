#!/usr/bin/env python3
"""Checks deploy/monitoring against the metrics the agent and the processor really export.

  check_monitoring.py static DIR OUT          dashboards well formed; every panel query and
                                              rule expression written to OUT/queries.yml
                                              (a rules file, for promtool check rules)
  check_monitoring.py series DIR PROM_URL PGURL  every series each panel and rule selects
                                              exists in Prometheus, every rule evaluates
                                              without error, every SQL panel returns rows

DIR is deploy/monitoring. Standard library only.
"""
import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

# Grafana's template variables, replaced by values PromQL accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}
# The processor's rollups are read back over the last hour in the SQL panels.
SQL_TIME_FILTER = "{col} between extract(epoch from now())::bigint - 3600 and extract(epoch from now())::bigint + 60"
DATASOURCE_UIDS = {"prometheus", "ingest-postgres"}

# Series that only exist once what they count has happened (a Kafka failure, a full or
# damaged disk buffer, an OpenSearch outage...). The test cannot make those happen
# against a healthy stack; it requires their names in the code that exports them instead.
ONLY_ON_FAILURE = {
    "ingest_events_failed_total", "ingest_dead_letters_dropped_total", "ingest_buffer_dropped_total",
    "ingest_buffer_quarantined_total", "ingest_delivery_retries_total",
    "processor_checkpoint_failures_total", "processor_dead_letter_failures_total",
    "processor_kafka_errors_total", "processor_live_write_failures_total",
    "processor_pair_fold_failures_total", "processor_pairs_refused_total",
    "processor_pair_log_rows_dropped_total", "processor_dedup_window_truncated_total",
    "processor_recommendations_dropped_total", "processor_search_documents_failed_total",
    "processor_search_records_skipped_total", "processor_search_failures_total",
    "processor_pruned_rows_total",
}
# Selectors of exported series whose label values only a failure produces: the series
# must exist with other values.
FAILURE_LABEL_VALUES = {'edge_http_requests_total{status=~"5.."}'}
# Series of the search sink (search.enabled), which the test runs without.
SEARCH_SINK = {"processor_search_documents_indexed_total", "processor_search_bulk_seconds",
               "processor_search_lag_documents", "processor_search_lag_seconds",
               "processor_search_documents_existing_total"}

PROMQL_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"} | PROMQL_GROUPING


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def closing(text, i, open_char, close_char):
    """Index of the bracket closing the one at text[i], skipping quoted strings."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = text.index(c, i + 1) if c == "`" else skip_string(text, i) - 1
        elif c == open_char:
            depth += 1
        elif c == close_char:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced {open_char} in {text!r}")


def skip_string(text, i):
    quote = text[i]
    i += 1
    while text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def selectors(expr):
    """The vector selectors of a PromQL expression, as `name{matchers}` strings."""
    out, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            i = skip_string(expr, i)
        elif c == "[":
            i = closing(expr, i, "[", "]") + 1
        elif c == "{":
            j = closing(expr, i, "{", "}")
            out.append(expr[i:j + 1])
            i = j + 1
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            m = re.match(r"[0-9.]+(?:[eE][+-]?[0-9]+)?[a-z]*", expr[i:])
            i += len(m.group(0))
        elif c.isalpha() or c in "_:":
            name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", expr[i:]).group(0)
            i += len(name)
            j = i
            while j < n and expr[j].isspace():
                j += 1
            if name.lower() in PROMQL_WORDS:
                if name in PROMQL_GROUPING and j < n and expr[j] == "(":
                    i = closing(expr, j, "(", ")") + 1
                continue
            if j < n and expr[j] == "(" or re.match(r"(by|without)\s*\(", expr[j:]):
                continue  # a function or an aggregation (`sum by (x) (...)`)
            if j < n and expr[j] == "{":
                k = closing(expr, j, "{", "}")
                out.append(name + expr[j:k + 1])
                i = k + 1
            else:
                out.append(name)
        else:
            i += 1
    return out


def metric_name(selector):
    m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", selector)
    return m.group(0) if m else ""


def substitute(expr):
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboards(directory):
    for path in sorted(glob.glob(os.path.join(directory, "grafana", "dashboards", "*.json"))):
        with open(path) as f:
            try:
                yield os.path.basename(path), json.load(f)
            except json.JSONDecodeError as e:
                fail(f"{path}: not JSON: {e}")


def panel_queries(directory):
    """(where, kind, query) of every dashboard query: kind is promql or sql."""
    for name, board in dashboards(directory):
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            m = re.match(r"label_values\((.*),\s*\w+\)$", query or "")
            if m:
                yield f"{name}: variable {variable['name']}", "promql", m.group(1)
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                where = f"{name}: panel \"{panel.get('title')}\" ({target.get('refId')})"
                if "expr" in target:
                    yield where, "promql", substitute(target["expr"])
                elif "rawSql" in target:
                    yield where, "sql", target["rawSql"]


def rules(directory):
    """(where, expr, record) of every alert and recording rule, read with a tiny parser of
    the rules files' own layout (the YAML module is not in the standard library)."""
    for path in sorted(glob.glob(os.path.join(directory, "rules", "*.yml"))):
        lines = open(path).read().split("\n")
        current, i = None, 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"\s*- (alert|record): (\S+)", line)
            if m:
                current = (m.group(1), m.group(2))
            m = re.match(r"(\s*)expr: ?(.*)$", line)
            if m and current:
                indent, rest = len(m.group(1)), m.group(2)
                if rest in ("|", ">", "|-", ">-"):
                    body = []
                    i += 1
                    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                        body.append(lines[i].strip())
                        i += 1
                    expr = " ".join(body).strip()
                    i -= 1
                else:
                    expr = rest.strip()
                yield f"{os.path.basename(path)}: {current[0]} {current[1]}", expr, current[1] if current[0] == "record" else None
            i += 1


def check_static(directory, out):
    uids, problems = set(), []
    for name, board in dashboards(directory):
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in board:
                problems.append(f"{name}: no {key}")
        if board.get("uid") in uids:
            problems.append(f"{name}: uid {board.get('uid')} used twice")
        uids.add(board.get("uid"))
        ids = [p.get("id") for p in board.get("panels", [])]
        if len(ids) != len(set(ids)):
            problems.append(f"{name}: panel ids are not unique")
        for panel in board.get("panels", []):
            title = panel.get("title")
            grid = panel.get("gridPos", {})
            if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or grid.get("x", 0) + grid.get("w", 0) > 24:
                problems.append(f"{name}: panel \"{title}\": bad gridPos {grid}")
            if panel.get("type") == "row":
                continue
            uid = panel.get("datasource", {}).get("uid")
            if uid not in DATASOURCE_UIDS:
                problems.append(f"{name}: panel \"{title}\": data source {uid!r} is not provisioned")
            if not panel.get("targets"):
                problems.append(f"{name}: panel \"{title}\": no query")
            for target in panel.get("targets", []):
                if not target.get("expr") and not target.get("rawSql"):
                    problems.append(f"{name}: panel \"{title}\": a target without expr or rawSql")
    provisioned = open(os.path.join(directory, "grafana", "provisioning", "datasources", "ingest.yml")).read()
    for uid in DATASOURCE_UIDS:
        if f"uid: {uid}" not in provisioned:
            problems.append(f"data source uid {uid} is not in grafana/provisioning/datasources/ingest.yml")
    if problems:
        fail("dashboards:\n  " + "\n  ".join(problems))
    # Every PromQL query as a recording rule, so that promtool parses it.
    count = 0
    with open(os.path.join(out, "queries.yml"), "w") as f:
        f.write("groups:\n  - name: dashboard-queries\n    rules:\n")
        for where, kind, query in panel_queries(directory):
            if kind == "promql":
                count += 1
                f.write(f"      - record: dashboard:query_{count}\n        expr: {json.dumps(query)}\n")
    print(f"{len(uids)} dashboards well formed; {count} PromQL queries written to {out}/queries.yml")


def prometheus(url, path, **params):
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        fail(f"Prometheus {path} {params}: {body}")
    return body["data"]


def exported_names(root):
    """Metric names quoted in the Rust sources (the exporters' own strings)."""
    names = set()
    for base in ("ingest-core/src", "edge-agent/src", "processor/src"):
        for path in glob.glob(os.path.join(root, base, "**", "*.rs"), recursive=True):
            names.update(re.findall(r'"((?:ingest|edge|processor)_[a-z0-9_]+)"', open(path).read()))
    return names


def check_series(directory, url, postgres_url):
    root = os.path.dirname(os.path.dirname(os.path.abspath(directory)))
    source_names = exported_names(root)
    recorded = {record for _, _, record in rules(directory) if record}
    uses = []  # (where, selector)
    for where, kind, query in panel_queries(directory):
        if kind == "promql":
            uses += [(where, s) for s in selectors(query)]
    rule_count = 0
    for where, expr, _ in rules(directory):
        rule_count += 1
        uses += [(where, s) for s in selectors(expr)]
    if not uses:
        fail("no selectors found in the dashboards and rules")

    missing, source_only, found = [], set(), set()
    start = time.time() - 3600
    for where, selector in uses:
        name = metric_name(selector)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if prometheus(url, "/api/v1/series", **{"match[]": selector, "start": start}):
            found.add(selector)
            continue
        if selector in FAILURE_LABEL_VALUES:
            if not prometheus(url, "/api/v1/series", **{"match[]": name, "start": start}):
                missing.append(f"{name} (used by {where}): no such series in Prometheus")
            source_only.add(selector)
            continue
        if base in ONLY_ON_FAILURE | SEARCH_SINK and name not in recorded:
            if base not in source_names:
                missing.append(f"{selector} (used by {where}): not exported, and no such metric in the code")
            source_only.add(base)
            continue
        missing.append(f"{selector} (used by {where}): no such series in Prometheus")
    if missing:
        fail(f"{len(missing)} selectors match no series:\n  " + "\n  ".join(sorted(set(missing))))

    # Every rule evaluates without error (label matching, types).
    bad = []
    loaded = prometheus(url, "/api/v1/rules")["groups"]
    if sum(len(group["rules"]) for group in loaded) != rule_count:
        fail(f"Prometheus loaded {sum(len(g['rules']) for g in loaded)} rules, the files were read as {rule_count}: "
             "the rules files have a layout this script does not read")
    for group in loaded:
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                bad.append(f"{group['name']}/{rule['name']}: {rule.get('health')} {rule.get('lastError', '')}")
    if bad:
        fail("rules that do not evaluate:\n  " + "\n  ".join(bad))

    # SQL panels against the processor's database.
    sql_count = 0
    for where, kind, query in panel_queries(directory):
        if kind != "sql":
            continue
        sql_count += 1
        sql = re.sub(r"\$__unixEpochFilter\((\w+)\)", lambda m: SQL_TIME_FILTER.format(col=m.group(1)), query)
        if "$" in sql:
            fail(f"{where}: a Grafana macro the test does not know: {sql}")
        result = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", postgres_url, "-c", sql],
                                capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"{where}: the query fails: {result.stderr.strip()}\n  {sql}")
        rows = [r for r in result.stdout.split("\n") if r.strip()]
        if not rows or all(set(c) <= {"0", "|", ""} for c in rows):
            fail(f"{where}: the query returns no data after the test's events:\n  {sql}")
    print(f"{len(found)} distinct selectors of the dashboards and the {rule_count} rules match exported series; "
          f"{sql_count} SQL panels return data; checked against the code only (failures this test does "
          f"not cause, or the search sink, which it leaves off): {', '.join(sorted(source_only)) or 'none'}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "static":
        check_static(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "series":
        check_series(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 3 and sys.argv[1] == "selectors":
        print("\n".join(selectors(sys.argv[2])))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
